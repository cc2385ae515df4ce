"""A worker's stop with a stream open that is no call to finish: a grpc.health.v1 Watch, as
a load balancer or a client with health checking keeps one (told NOT_SERVING, then ended),
or a server reflection stream, as a GUI client keeps one idle (ended). Either way a worker
with nothing else in flight stops at once and cleanly, instead of after its whole grace
period with the stream counted as a call cut. And a health Check, as a load balancer
polls, during the notice a stopping worker gives (``not_serving_seconds``)."""

from __future__ import annotations

import contextlib
import queue
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from .served import STOP_SECONDS, ServedBank, serve_bank

# Long, so that a stop held by the stream cannot pass for a quick one.
GRACE_SECONDS = 30.0
# A stop with nothing in flight takes well under a second; a loaded CI machine, more.
QUICK_STOP_SECONDS = 10.0
# The stop notice of the test that polls health Check in it: ample time for a few polls,
# and longer than the supervisor's margin in ``slow_start_serve``.
NOTICE_SECONDS = 3.0
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
# How a client sees its reflection stream ended by a stopping server.
ENDED = {grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE}


def _channel(bank: ServedBank, *, ca: bool = False) -> grpc.Channel:
    """A channel to the PaymentGateway port, over mutual TLS as merchants dial, or to the
    CA's port, over TLS as wallets dial; closed with the bank."""
    tls = bank.directory / "tls"
    root = (tls / "root.pem").read_bytes()
    credentials = (
        grpc.ssl_channel_credentials(root)
        if ca
        else grpc.ssl_channel_credentials(
            root_certificates=root,
            private_key=(tls / "merchant-client.key").read_bytes(),
            certificate_chain=(tls / "merchant-client.pem").read_bytes(),
        )
    )
    channel = grpc.secure_channel(f"127.0.0.1:{bank.ca_port if ca else bank.port}", credentials)
    bank._channels.append(channel)
    return channel


def _health(bank: ServedBank) -> health_pb2_grpc.HealthStub:
    """The Health service on the PaymentGateway port."""
    return health_pb2_grpc.HealthStub(_channel(bank))  # type: ignore[no-untyped-call]


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


class _Requests:
    """A reflection stream's requests: sent as the test puts them, until ``close``."""

    def __init__(self) -> None:
        self._queue: queue.Queue[reflection_pb2.ServerReflectionRequest | None] = queue.Queue()

    def send(self, request: reflection_pb2.ServerReflectionRequest) -> None:
        self._queue.put(request)

    def close(self) -> None:
        self._queue.put(None)

    def __iter__(self) -> Iterator[reflection_pb2.ServerReflectionRequest]:
        while (request := self._queue.get()) is not None:
            yield request


def test_an_open_reflection_stream_is_ended_and_holds_no_stop(tmp_path: Path) -> None:
    """One idle reflection stream on each port, as a GUI client keeps one: each is ended
    at the stop, which is prompt, and not counted as a call cut (exit 0). Before, gRPC
    waited for them the whole grace period, then cut them: exit 3."""
    env = {"SETPAY_GRACE_SECONDS": str(GRACE_SECONDS)}
    requests = [_Requests(), _Requests()]
    try:
        with contextlib.closing(
            serve_bank(tmp_path, workers=1, metrics=False, extra_env=env)
        ) as bank:
            streams = []
            for ca, sent in zip((False, True), requests, strict=True):
                stub = reflection_pb2_grpc.ServerReflectionStub(_channel(bank, ca=ca))
                stream = stub.ServerReflectionInfo(iter(sent), timeout=120)
                sent.send(reflection_pb2.ServerReflectionRequest(list_services=""))
                listed = next(stream).list_services_response.service
                assert "grpc.health.v1.Health" in {service.name for service in listed}
                streams.append(stream)  # open and idle: the client sends nothing more
            sent_at = time.monotonic()
            bank.process.send_signal(signal.SIGTERM)
            for stream in streams:
                with pytest.raises(grpc.RpcError) as ended:
                    next(stream)
                # The server's cancellation, or its shutdown if that reaches the client first.
                assert ended.value.code() in ENDED, ended.value
            ended_in = time.monotonic() - sent_at
            assert bank.process.wait(timeout=STOP_SECONDS) == 0, bank.log()
            stopped_in = time.monotonic() - sent_at
    finally:
        for sent in requests:
            sent.close()
    assert ended_in < QUICK_STOP_SECONDS and stopped_in < QUICK_STOP_SECONDS, (ended_in, stopped_in)
    assert "cut" not in bank.log()


def test_a_health_check_in_the_stop_notice_answers_not_serving(tmp_path: Path) -> None:
    """A load balancer that polls Check on new connections sees NOT_SERVING while the
    worker still serves. Before, health went NOT_SERVING as the server stopped, which
    refuses new connections: such a balancer saw SERVING, then "connection refused". The
    supervisor's short closing margin (``slow_start_serve``) would kill a worker whose
    notice it did not allow for."""
    env = {"SETPAY_GRACE_SECONDS": "1", "SETPAY_NOT_SERVING_SECONDS": str(NOTICE_SECONDS)}
    command = ("tests.gateway.slow_start_serve", str(tmp_path / "never"))
    request = health_pb2.HealthCheckRequest(service="")
    with contextlib.closing(
        serve_bank(tmp_path, workers=1, metrics=False, extra_env=env, command=command)
    ) as bank:
        assert _health(bank).Check(request, timeout=10).status == SERVING
        sent = time.monotonic()
        bank.process.send_signal(signal.SIGTERM)
        seen: list[object] = []
        while bank.process.poll() is None and time.monotonic() - sent < QUICK_STOP_SECONDS:
            try:  # a new connection each time, as a balancer's probe makes
                seen.append(_health(bank).Check(request, timeout=2).status)
            except grpc.RpcError as refused:
                seen.append(refused.code())
            if seen[-1] == NOT_SERVING:
                break
            time.sleep(0.05)
        assert NOT_SERVING in seen, seen
        assert bank.process.wait(timeout=STOP_SECONDS) == 0, bank.log()
        stopped = time.monotonic() - sent
    assert stopped >= NOTICE_SECONDS, stopped
    assert "did not stop" not in bank.log()
