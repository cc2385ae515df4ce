"""No ``set`` waits for a peer: statuses are sent by the servicer's own threads.

Before, a ``set`` sent on each idle stream itself, and a peer whose HTTP/2 window let a
stream's first status through and nothing after (a window of 7 bytes: a 5-byte prefix
and 2 of status) held it there until the stall watch cancelled that stream, about 2 s,
and then at the next such stream as long: 20 of them made one ``set`` take 41 s, and the
bank's drain (whose first step sets NOT_SERVING) waited with it. A real gRPC server on
port 0, a raw HTTP/2 client with such a window (``zero_window_support``), and a client
that reads, watching the same name; the module's own stall bounds (2 s), so that a
status stuck behind a stalled send would come late by as much."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from setcore import watch_sends
from setcore.served_health import ServedHealth
from tests.setcore.zero_window_support import WAIT_SECONDS, ZeroWindowClient, health_server, until

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
# Streams whose peer takes their first status only: enough that sends made one after
# another would take over 10 s.
STALLING = 6
# A window that takes one status (5-byte prefix, 2 bytes of status) and nothing after.
ONE_STATUS_WINDOW = 7
# A set that records and hands over takes milliseconds; on a loaded 2-core machine,
# starting a sender thread or two may take tens. Well under one stalled send (2 s).
PROMPT_SET_SECONDS = 0.5
# A status that waited behind one stalled send would come after 2 s (SEND_STALL_SECONDS);
# one sent on its own sender comes in milliseconds, far more on a loaded machine.
PROMPT_STATUS_SECONDS = 1.5


@pytest.fixture
def served() -> Iterator[tuple[ServedHealth, int]]:
    assert PROMPT_STATUS_SECONDS < watch_sends.SEND_STALL_SECONDS
    with health_server(4) as served:
        yield served


def test_a_set_waits_for_no_peer_and_a_reading_watch_is_told_promptly(
    served: tuple[ServedHealth, int],
) -> None:
    servicer, port = served
    peer = ZeroWindowClient(port, window=ONE_STATUS_WINDOW)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        for _ in range(STALLING):
            peer.watch("")
        until(lambda: peer.data_seen == STALLING, "each stalling stream took its first status")
        reader = health_pb2_grpc.HealthStub(channel).Watch(
            health_pb2.HealthCheckRequest(service=""), timeout=3 * WAIT_SECONDS
        )
        assert next(reader).status == SERVING
        told: list[tuple[float, int]] = []

        def read() -> None:
            with contextlib.suppress(grpc.RpcError):  # cancelled at the end
                for answer in reader:
                    told.append((time.monotonic(), answer.status))

        threading.Thread(target=read, daemon=True).start()

        began = time.monotonic()
        servicer.set("", NOT_SERVING)
        took = time.monotonic() - began
        assert took < PROMPT_SET_SECONDS, f"set waited {took:.1f} s for peers that take nothing"
        until(lambda: bool(told), "the reading Watch was told the new status")
        when, status = told[0]
        assert status == NOT_SERVING
        assert when - began < PROMPT_STATUS_SECONDS, (
            f"the reading Watch was told after {when - began:.1f} s, behind stalled sends"
        )

        began = time.monotonic()
        servicer.set("", SERVING)  # again, with the stalled sends still under way
        took = time.monotonic() - began
        assert took < PROMPT_SET_SECONDS, f"the next set waited {took:.1f} s"
        until(lambda: len(told) == 2, "the reading Watch was told the next status")
        assert told[1][1] == SERVING and told[1][0] - began < PROMPT_STATUS_SECONDS

        # And the stalled streams are still cancelled, each once.
        until(lambda: peer.resets == STALLING, "every stalled stream was cancelled")
        reader.cancel()
        until(lambda: servicer.open_watches == 0, "every stream left")
    finally:
        channel.close()
        peer.close()
