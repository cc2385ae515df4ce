"""A worker's stop with a grpc.health.v1 Watch stream open, as a load balancer or a client
with health checking keeps one: the stream is told NOT_SERVING and then ends, so a worker
with nothing else in flight stops at once instead of after its whole grace period."""

from __future__ import annotations

import contextlib
import signal
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from .served import STOP_SECONDS, ServedBank, serve_bank

# Long, so that a stop held by the stream cannot pass for a quick one.
GRACE_SECONDS = 30.0
# A stop with nothing in flight takes well under a second; a loaded CI machine, more.
QUICK_STOP_SECONDS = 10.0
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def _health(bank: ServedBank) -> health_pb2_grpc.HealthStub:
    """The Health service on the PaymentGateway port, over mutual TLS as merchants dial."""
    tls = bank.directory / "tls"
    credentials = grpc.ssl_channel_credentials(
        root_certificates=(tls / "root.pem").read_bytes(),
        private_key=(tls / "merchant-client.key").read_bytes(),
        certificate_chain=(tls / "merchant-client.pem").read_bytes(),
    )
    channel = grpc.secure_channel(f"127.0.0.1:{bank.port}", credentials)
    bank._channels.append(channel)  # closed with the bank
    return health_pb2_grpc.HealthStub(channel)  # type: ignore[no-untyped-call]


def test_an_open_watch_is_told_not_serving_then_ends_and_holds_no_stop(tmp_path: Path) -> None:
    env = {"SETPAY_GRACE_SECONDS": str(GRACE_SECONDS)}
    with contextlib.closing(serve_bank(tmp_path, workers=1, metrics=False, extra_env=env)) as bank:
        watch = _health(bank).Watch(health_pb2.HealthCheckRequest(service=""), timeout=120)
        assert next(watch).status == SERVING
        sent = time.monotonic()
        bank.process.send_signal(signal.SIGTERM)
        # The monitor re-sends SERVING each probe until the stop; then NOT_SERVING, then
        # the end of the stream, with status OK (a client retries, and finds no server).
        statuses = [response.status for response in watch]
        ended = time.monotonic() - sent
        assert statuses[-1:] == [NOT_SERVING] and set(statuses) <= {SERVING, NOT_SERVING}
        assert watch.code() == grpc.StatusCode.OK
        assert bank.process.wait(timeout=STOP_SECONDS) == 0, bank.log()
        stopped = time.monotonic() - sent
    assert ended < QUICK_STOP_SECONDS and stopped < QUICK_STOP_SECONDS, (ended, stopped)
    assert "cut" not in bank.log()
