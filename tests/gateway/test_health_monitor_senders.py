"""The bank's ``HealthMonitor.stop`` (a drain's first step) waits for no peer: it sets
NOT_SERVING and ends the Watch streams, and the servicer's own threads send both.

Before, the stop sent NOT_SERVING on each idle stream itself, and a peer whose HTTP/2
window let a stream's first status through and nothing after (7 bytes: a 5-byte prefix
and 2 of status) held it about 2 s per such stream and name, one after another, until
the stall watch cancelled each; ``WatchEndingHealth`` then ended the streams on the same
thread, under a lock held across each send. A real gRPC server on port 0, a raw HTTP/2
client with such a window (``zero_window_support``), and a client that reads."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from concurrent import futures

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.health_monitor import HealthMonitor, WatchEndingHealth
from tests.setcore.zero_window_support import ZeroWindowClient

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICE = "setpay.v1.PaymentGateway"
# Streams whose peer takes their first status only: sent one after another, over 8 s.
STALLING = 4
ONE_STATUS_WINDOW = 7
# The stop records and hands over: milliseconds, tens on a loaded 2-core machine; well
# under one stalled send (2 s).
PROMPT_STOP_SECONDS = 0.5
# Every wait is bounded; a prompt answer takes milliseconds, a loaded CI machine far more.
WAIT_SECONDS = 10.0


def _until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def test_the_monitors_stop_waits_for_no_peer_and_ends_every_watch() -> None:
    health = WatchEndingHealth()
    monitor = HealthMonitor(health, (SERVICE,), [lambda: None], interval=1.0)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    monitor.start()
    peer = ZeroWindowClient(port, window=ONE_STATUS_WINDOW)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        for _ in range(STALLING):
            peer.watch("")
        _until(lambda: peer.data_seen == STALLING, "each stalling stream took its first status")
        reader = health_pb2_grpc.HealthStub(channel).Watch(
            health_pb2.HealthCheckRequest(service=SERVICE), timeout=3 * WAIT_SECONDS
        )
        assert next(reader).status == SERVING
        told: list[int] = []
        over = threading.Event()

        def read() -> None:
            with contextlib.suppress(grpc.RpcError):
                for answer in reader:
                    told.append(answer.status)
            over.set()

        threading.Thread(target=read, daemon=True).start()

        began = time.monotonic()
        monitor.stop()
        took = time.monotonic() - began
        assert took < PROMPT_STOP_SECONDS, f"the monitor's stop waited {took:.1f} s for peers"
        assert over.wait(WAIT_SECONDS), "the reading Watch was ended"
        assert told[-1:] == [NOT_SERVING]  # last: a probe's SERVING may come before it
        assert reader.code() == grpc.StatusCode.OK
        _until(lambda: health.open_watches == 0, "every stream's call is over, the stalled too")
    finally:
        channel.close()
        peer.close()
        server.stop(None).wait()
