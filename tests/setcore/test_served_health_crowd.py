"""A Watch stream whose peer reads (a load balancer's) is told every status change
promptly beside as many Watch streams as the server holds whose peers read nothing, while
their peer keeps opening them again as they are cancelled; and a stop waits for none of
them past their stall.

Before, the servicer's 32 senders took streams in the order their sends were queued, and
each stalled stream held one for ``SEND_STALL_SECONDS`` (2 s) and a look of the stall
watch more, before its call was cancelled: a status change for the balancer, queued
behind some 220 such sends, waited about 7 of those rounds (a review saw 2 of 30 changes
told in 30 s), and a stop, whose NOT_SERVING and ends were queued behind them too, ran as
long (a merchant's grace is 5 s). A real gRPC server on port 0, raw HTTP/2 clients that
read nothing or one status (``zero_window_support``), and a client that reads; the
module's own bounds."""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from setcore import watch_sends
from setcore.served_health import MAX_WATCHES, OVERALL_HEALTH
from tests.setcore.zero_window_support import ZeroWindowClient, health_grpc_server, until

SERVICE = "setpay.v1.PaymentGateway"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
# Every stream the server holds but the balancer's.
CROWD = MAX_WATCHES - 1
# A change told within a second is prompt for a load balancer; here one takes some tens of
# ms beside the crowd. Before, the first change came after more than 10 s.
PROMPT_SECONDS = 1.0
# Changes set, one every ``CHANGE_EVERY_SECONDS``: over 2 s, so that the crowd's streams
# are cancelled and opened again meanwhile.
CHANGES = 8
CHANGE_EVERY_SECONDS = 0.4
# A change not told after this long counts as lost, and the test says how late it is.
WAIT_SECONDS = 10.0
# A stop waits for the crowd's stalled sends until they are cancelled (2 s, the module's),
# and those of its streams taken back in their places until theirs are (2 s more), and
# for nothing else; before, it waited for some 7 rounds of them (17 s).
PROMPT_STOP_SECONDS = 7.0
LONG_GRACE_SECONDS = 60.0
# Senders held by one connection's stalled streams, however many it opens: 4 for each
# 0.25 s a stream taken back for a stall holds its place, over the 2 s stall limit (the
# module's, 32), and a few for the other streams.
ONE_PEERS_SENDERS = (
    watch_sends.PEER_SENDERS
    * round(watch_sends.SEND_STALL_SECONDS / watch_sends.STALLED_PLACE_SECONDS)
    + watch_sends.PEER_SENDERS
)


@dataclass(frozen=True)
class Crowd:
    """Peers that read nothing: ``connections`` of them, each an HTTP/2 ``window``."""

    connections: int
    window: int


CROWDS = {
    "one connection that reads nothing": Crowd(1, 0),
    "31 connections that read nothing": Crowd(31, 0),
    "8 connections that read one status each": Crowd(8, 7),
}


class _Peers:
    """``crowd``'s connections, holding ``CROWD`` Watch streams for "" among them, and
    opening one again for each the server cancels while ``refill`` runs."""

    def __init__(self, port: int, crowd: Crowd) -> None:
        self.clients = [ZeroWindowClient(port, crowd.window) for _ in range(crowd.connections)]
        self.opened = [0] * crowd.connections
        for index in range(CROWD):
            self._open(index % crowd.connections)
        self._stop = threading.Event()
        self._refill = threading.Thread(target=self._refill_loop, daemon=True)

    def _open(self, index: int) -> None:
        self.clients[index].watch(OVERALL_HEALTH)
        self.opened[index] += 1

    def _refill_loop(self) -> None:
        # Each stream the server cancelled is opened again (a peer that goes on).
        while not self._stop.wait(0.05):
            for index, client in enumerate(self.clients):
                for _ in range(self._share(index) - (self.opened[index] - client.resets)):
                    self._open(index)

    def _share(self, index: int) -> int:
        # The streams connection ``index`` holds of the ``CROWD`` (opened round the ring).
        return CROWD // len(self.clients) + (index < CROWD % len(self.clients))

    def refill(self) -> None:
        self._refill.start()

    @property
    def data_seen(self) -> int:
        return sum(client.data_seen for client in self.clients)

    @property
    def resets(self) -> int:
        return sum(client.resets for client in self.clients)

    def close(self) -> None:
        self._stop.set()
        if self._refill.is_alive():
            self._refill.join(WAIT_SECONDS)
        for client in self.clients:
            client.close()


class _Balancer:
    """A Watch for ``SERVICE`` that reads: each status with when it came."""

    def __init__(self, port: int) -> None:
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        self.call = health_pb2_grpc.HealthStub(self.channel).Watch(
            health_pb2.HealthCheckRequest(service=SERVICE), timeout=20 * WAIT_SECONDS
        )
        self.told: list[tuple[float, int]] = []
        self.over = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        with contextlib.suppress(grpc.RpcError):  # cancelled at the end
            for answer in self.call:
                self.told.append((time.monotonic(), answer.status))
        self.over.set()

    def told_after(self, count: int, began: float) -> float:
        """How long after ``began`` the ``count``-th status came (at most ``WAIT_SECONDS``
        waited: more, if it never came)."""
        deadline = began + WAIT_SECONDS
        while len(self.told) < count and time.monotonic() < deadline:
            time.sleep(0.005)
        if len(self.told) < count:
            return float("inf")
        return self.told[count - 1][0] - began

    def close(self) -> None:
        self.call.cancel()
        self.channel.close()


def _health_senders(before: set[threading.Thread]) -> int:
    """This test's senders: not those of an earlier test's server, which end only once
    idle for ``SENDER_IDLE_SECONDS`` (5 s), meanwhile counted by their name too."""
    return sum(1 for thread in set(threading.enumerate()) - before if thread.name == "health-sends")


@pytest.mark.parametrize("crowd", list(CROWDS.values()), ids=list(CROWDS))
def test_a_reading_watch_is_told_every_change_promptly_beside_a_crowd_that_reads_nothing(
    crowd: Crowd,
) -> None:
    before = set(threading.enumerate())
    with health_grpc_server((SERVICE,)) as (servicer, _, port):
        servicer.set(SERVICE, SERVING)
        balancer = _Balancer(port)
        peers: _Peers | None = None
        try:
            assert balancer.told_after(1, time.monotonic()) < WAIT_SECONDS
            peers = _Peers(port, crowd)
            until(lambda: servicer.open_watches == MAX_WATCHES, "the crowd's Watches were held")
            if crowd.window:
                until(lambda: peers.data_seen == CROWD, "each took its first status")
            peers.refill()
            lateness: list[float] = []
            status = SERVING
            for change in range(CHANGES):
                status = NOT_SERVING if status == SERVING else SERVING
                began = time.monotonic()
                # As a bank worker's monitor sets them: "" first, whose streams stall.
                servicer.set(OVERALL_HEALTH, status)
                servicer.set(SERVICE, status)
                lateness.append(balancer.told_after(change + 2, began))
                assert lateness[-1] < PROMPT_SECONDS, (
                    f"change {change + 1} was told after {lateness[-1]:.1f} s (inf: not "
                    f"within {WAIT_SECONDS:.0f} s); the changes before after {lateness[:-1]}"
                )
                assert balancer.told[-1][1] == status
                if crowd.connections == 1:
                    assert _health_senders(before) <= ONE_PEERS_SENDERS
                time.sleep(max(0.0, began + CHANGE_EVERY_SECONDS - time.monotonic()))
            alternating = [NOT_SERVING, SERVING] * (CHANGES // 2)
            assert [status for _, status in balancer.told] == [SERVING, *alternating]
            # Each connection's stalled sends were cancelled, and those of its streams
            # taken back from aside after them, for their own stall; the balancer's stream,
            # which reads, never was. (Once, streams aside were cancelled with their
            # connection's stalled ones, a reading stream's too: all ``CROWD`` at once.)
            # Those taken back are cancelled 2 s after their sends began, after the
            # balancer's last change if need be.
            stalled_twice = crowd.connections * 2 * watch_sends.PEER_SENDERS
            until(
                lambda: peers.resets >= stalled_twice, "the crowd's stalled streams were cancelled"
            )
            assert not balancer.over.is_set(), "the balancer's Watch was ended"
        finally:
            if peers is not None:
                peers.close()
            balancer.close()


def test_a_stop_waits_for_a_crowd_that_reads_nothing_no_longer_than_its_stall() -> None:
    """As the merchant's stop: gRPC's ``stop`` with a long grace, then NOT_SERVING and
    the end of every Watch stream; the balancer is told NOT_SERVING promptly and its
    stream ended, and the stop is over once the crowd's stalled sends are cancelled."""
    with health_grpc_server((SERVICE,)) as (servicer, server, port):
        servicer.set(SERVICE, SERVING)
        balancer = _Balancer(port)
        assert balancer.told_after(1, time.monotonic()) < WAIT_SECONDS
        peers = _Peers(port, CROWDS["31 connections that read nothing"])
        try:
            until(lambda: servicer.open_watches == MAX_WATCHES, "the crowd's Watches were held")
            began = time.monotonic()
            stopped = server.stop(LONG_GRACE_SECONDS)
            servicer.enter_graceful_shutdown()
            servicer.end_watches()
            assert stopped.wait(PROMPT_STOP_SECONDS), (
                f"the stop waited over {PROMPT_STOP_SECONDS:.0f} s for the crowd's stalled sends"
            )
            assert servicer.open_watches == 0
            assert balancer.over.wait(WAIT_SECONDS), "the balancer's Watch was ended"
            assert balancer.call.code() == grpc.StatusCode.OK
            assert [status for _, status in balancer.told] == [SERVING, NOT_SERVING]
            told = balancer.told[-1][0] - began
            assert told < PROMPT_SECONDS, f"the balancer was told NOT_SERVING after {told:.1f} s"
        finally:
            peers.close()
            balancer.close()
