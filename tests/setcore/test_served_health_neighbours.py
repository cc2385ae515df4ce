"""A Watch stream whose peer reads is told its statuses, and is never cancelled, however
many streams of its own connection read nothing: HTTP/2's flow control is per stream, so
a neighbour's stall never kept its statuses from going out.

Before, one connection had at most 4 sends under way (``PEER_SENDERS``), its other
streams waited aside, and those aside were cancelled with the connection's stalled ones:
a connection carrying 10 reading Watches (a load balancer multiplexing them, or gRPC's
client-side health checking on an application's connection) and 4 that read nothing had
all 10 reset after 2 s, told 1 of 13 statuses, and at a stop none told NOT_SERVING. Now a
stream is cancelled for its own stall only; one taken back from aside in place of a
stalled send holds its place for a short while only (``STALLED_PLACE_SECONDS``), so that
a connection whose streams all stall still drains within seconds. A real gRPC server on
port 0, raw HTTP/2 clients multiplexing streams with windows of their own
(``mux_window_support``), a grpcio client; the module's own stall limits."""

from __future__ import annotations

import threading
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from setcore import watch_sends
from setcore.served_health import OVERALL_HEALTH, ServedHealth
from tests.setcore.mux_window_support import MuxClient
from tests.setcore.zero_window_support import WAIT_SECONDS, health_grpc_server, until

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
READERS = 10
# As many streams that read nothing as one connection has sends under way: every later
# status of the connection's readers waits aside behind them.
STALLERS = watch_sends.PEER_SENDERS
# For the stallers' first sends to be under way (a sender each within
# ``PROMPT_SEND_SECONDS``), well inside their stall limit (2 s).
UNDER_WAY_SECONDS = 0.5
# No stream stalls once the stallers are cancelled: a status takes milliseconds, a loaded
# machine far more.
PROMPT_SECONDS = 1.0
# A stop waits for the stalled sends (2 s), then for the streams aside, taken back 4 at a
# time (0.25 s each), and for the last of those that stall (2 s); before, for the first
# only.
PROMPT_STOP_SECONDS = 8.0
LONG_GRACE_SECONDS = 60.0
# One connection whose streams all read nothing but its last few.
CROWDED_STALLERS = 36
CROWDED_READERS = 4


def _neighbours(servicer: ServedHealth, client: MuxClient) -> tuple[list[int], list[int]]:
    """``READERS`` streams told their first status, then ``STALLERS`` with their sends
    under way: the readers' and the stallers' stream ids."""
    readers = [client.watch(OVERALL_HEALTH, reader=True) for _ in range(READERS)]
    until(
        lambda: all(client.told(sid) == [SERVING] for sid in readers),
        "every reader was told its first status",
    )
    stallers = [client.watch(OVERALL_HEALTH, reader=False) for _ in range(STALLERS)]
    until(lambda: servicer.open_watches == READERS + STALLERS, "every Watch was held")
    time.sleep(UNDER_WAY_SECONDS)
    assert not client.reset, "a stream was cancelled before any stalled for long"
    return readers, stallers


def test_readers_beside_stalled_streams_of_their_connection_are_told_and_never_cancelled() -> None:
    with health_grpc_server() as (servicer, _, port):
        client = MuxClient(port)
        try:
            readers, stallers = _neighbours(servicer, client)
            servicer.set(OVERALL_HEALTH, NOT_SERVING)  # the readers' wait aside
            until(
                lambda: all(client.told(sid)[-1:] == [NOT_SERVING] for sid in readers),
                "every reader was told NOT_SERVING",
            )
            until(lambda: set(client.reset) == set(stallers), "every staller was cancelled")
            assert [client.told(sid) for sid in readers] == [[SERVING, NOT_SERVING]] * READERS
            assert servicer.open_watches == READERS

            for status in (SERVING, NOT_SERVING, SERVING):
                began = time.monotonic()
                servicer.set(OVERALL_HEALTH, status)
                until(
                    lambda status=status: all(client.told(sid)[-1] == status for sid in readers),
                    "every reader was told the next status",
                )
                took = time.monotonic() - began
                assert took < PROMPT_SECONDS, f"the readers were told after {took:.1f} s"
            told = [SERVING, NOT_SERVING, SERVING, NOT_SERVING, SERVING]
            assert [client.told(sid) for sid in readers] == [told] * READERS
            assert set(client.reset) == set(stallers), "a reader was cancelled"
            assert servicer.open_watches == READERS
        finally:
            client.close()


def _stop(server: grpc.Server, servicer: ServedHealth) -> float:
    """As the merchant's stop (gRPC's ``stop`` with a long grace, NOT_SERVING, every
    stream ended): how long until it was over (fails past ``PROMPT_STOP_SECONDS``)."""
    began = time.monotonic()
    stopped = server.stop(LONG_GRACE_SECONDS)
    servicer.enter_graceful_shutdown()
    servicer.end_watches()
    assert stopped.wait(PROMPT_STOP_SECONDS), (
        f"the stop waited over {PROMPT_STOP_SECONDS:.0f} s for stalled streams"
    )
    return time.monotonic() - began


def test_a_stop_tells_readers_beside_stalled_streams_not_serving_and_ends_them() -> None:
    with health_grpc_server() as (servicer, server, port):
        client = MuxClient(port)
        try:
            readers, stallers = _neighbours(servicer, client)
            # The stallers' calls are over with the stop, reset or not: a stopping
            # server may leave a reset unsent.
            _stop(server, servicer)
            until(lambda: set(readers) <= client.ended, "every reader's call was ended")
            assert [client.told(sid) for sid in readers] == [[SERVING, NOT_SERVING]] * READERS
            assert not any(client.told(sid) for sid in stallers)
            assert not set(readers) & set(client.reset), "a reader was cancelled, not ended"
            assert servicer.open_watches == 0
        finally:
            client.close()


def test_a_connection_whose_streams_all_stall_but_its_last_still_drains_at_a_stop() -> None:
    """36 streams that read nothing, then 4 that read, on one connection: the readers
    wait aside behind them all, and are still told NOT_SERVING and ended, once the
    stallers are cancelled 4 at a time; the stop waits seconds, not its grace."""
    with health_grpc_server() as (servicer, server, port):
        client = MuxClient(port)
        try:
            stallers = [client.watch(OVERALL_HEALTH, reader=False) for _ in range(CROWDED_STALLERS)]
            readers = [client.watch(OVERALL_HEALTH, reader=True) for _ in range(CROWDED_READERS)]
            total = CROWDED_STALLERS + CROWDED_READERS
            until(lambda: servicer.open_watches == total, "every Watch was held")
            # The stallers' calls are over with the stop, reset or not: a stopping
            # server may leave a reset unsent.
            _stop(server, servicer)
            until(lambda: set(readers) <= client.ended, "every reader's call was ended")
            assert [client.told(sid)[-1:] for sid in readers] == [[NOT_SERVING]] * CROWDED_READERS
            assert not any(client.told(sid) for sid in stallers)
            assert not set(readers) & set(client.reset), "a reader was cancelled, not ended"
        finally:
            client.close()


def test_a_grpc_client_watch_beside_unread_watches_of_its_channel_is_never_cancelled() -> None:
    """A grpcio channel (one HTTP/2 connection) with one Watch it reads and 4 it never
    reads (forgotten by an application, or a proxy's downstream gone quiet): once the
    unread ones' windows are full their sends stall and they are cancelled; the read one
    goes on being told every status."""
    with health_grpc_server() as (servicer, _, port):
        channel = grpc.insecure_channel(
            f"127.0.0.1:{port}",
            options=[("grpc.http2.lookahead_bytes", 1024), ("grpc.http2.bdp_probe", 0)],
        )
        try:
            stub = health_pb2_grpc.HealthStub(channel)
            request = health_pb2.HealthCheckRequest(service=OVERALL_HEALTH)
            reader = stub.Watch(request, timeout=6 * WAIT_SECONDS)
            told: list[int] = []
            outcome: list[grpc.StatusCode] = []

            def read() -> None:
                try:
                    for answer in reader:
                        told.append(answer.status)
                except grpc.RpcError as error:
                    outcome.append(error.code())

            threading.Thread(target=read, daemon=True).start()
            unread = [stub.Watch(request, timeout=6 * WAIT_SECONDS) for _ in range(STALLERS)]
            until(lambda: servicer.open_watches == 1 + STALLERS, "every Watch was held")
            status = SERVING
            deadline = time.monotonic() + 3 * WAIT_SECONDS
            # Quick sets until the unread streams' windows are full and their stalled
            # sends cancelled.
            while servicer.open_watches > 1 and not outcome:
                assert time.monotonic() < deadline, "the unread Watches were never cancelled"
                status = NOT_SERVING if status == SERVING else SERVING
                servicer.set(OVERALL_HEALTH, status)
                time.sleep(0.004)
            assert not outcome, f"the read Watch was ended: {outcome}"
            for status in (NOT_SERVING, SERVING):
                began = time.monotonic()
                servicer.set(OVERALL_HEALTH, status)
                until(lambda status=status: told[-1:] == [status], "the reader was told")
                took = time.monotonic() - began
                assert took < PROMPT_SECONDS, f"the reader was told after {took:.1f} s"
            assert not outcome and servicer.open_watches == 1
            for call in unread:
                call.cancel()
            reader.cancel()
        finally:
            channel.close()
