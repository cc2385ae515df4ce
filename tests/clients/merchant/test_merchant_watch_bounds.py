"""The Merchant service's health Watch streams on a real gRPC server (port 0,
``start_server``, over a checkout never called): a peer holds no more than
``MAX_WATCHES`` open, the one past them refused RESOURCE_EXHAUSTED while Check still
answers; and a stop tells each open stream NOT_SERVING and ends it, instead of waiting
its whole grace period for them (``GRACE_SECONDS``) as it did before, a stream whose
peer takes nothing included (its stalled send is cancelled, ended or not)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any, cast

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from clients.merchant.checkout import Checkout
from clients.merchant.servicer import (
    GRACE_SECONDS,
    SERVICE_NAME,
    MerchantServer,
    MerchantServicer,
    ServerSettings,
    start_server,
)
from setcore import served_health
from setcore.credentials import Credentials
from tests.setcore.zero_window_support import ZeroWindowClient

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
BOUND = 4
# Every wait is bounded; a prompt answer takes milliseconds, a loaded CI machine far more.
WAIT_SECONDS = 10.0
# A stop with nothing to wait for ends in milliseconds; the grace period is 5 s.
PROMPT_STOP_SECONDS = GRACE_SECONDS / 2
# A grace far longer than a stalled send lasts before the stall watch cancels it (2 s,
# and 0.5 s more to see it), so that a stop that waited its grace shows.
LONG_GRACE_SECONDS = 30.0


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[MerchantServer, grpc.Channel]]:
    # Not raising where the module has no bound: the tests then fail on what is answered.
    monkeypatch.setattr(served_health, "MAX_WATCHES", BOUND, raising=False)
    servicer = MerchantServicer(cast(Checkout, None), cast(Credentials, None))
    settings = ServerSettings(listen="127.0.0.1:0", threads=4, max_concurrent_rpcs=64, tls=None)
    server, port = start_server(servicer, settings)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield server, channel
    channel.close()
    server.stop(None).wait()


def _watch(channel: grpc.Channel, name: str) -> Any:
    """A Watch call for ``name``: an iterator of its answers, and a call to cancel."""
    stub = health_pb2_grpc.HealthStub(channel)
    return stub.Watch(health_pb2.HealthCheckRequest(service=name), timeout=3 * WAIT_SECONDS)


def _until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def test_watches_past_the_bound_are_refused_and_check_still_answers(
    served: tuple[MerchantServer, grpc.Channel],
) -> None:
    server, channel = served
    held = [_watch(channel, name) for name in ("", SERVICE_NAME, "not.served", SERVICE_NAME)]
    assert [next(stream).status for stream in held[:2]] == [SERVING, SERVING]
    next(held[2])  # SERVICE_UNKNOWN, and held open
    next(held[3])

    with pytest.raises(grpc.RpcError) as refused:
        next(_watch(channel, SERVICE_NAME))
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert refused.value.details() == served_health.WATCHES_REFUSAL
    assert server.health.open_watches == BOUND
    check = health_pb2_grpc.HealthStub(channel).Check
    request = health_pb2.HealthCheckRequest(service=SERVICE_NAME)
    assert check(request, timeout=WAIT_SECONDS).status == SERVING

    held[2].cancel()
    admitted: list[Any] = []
    _until(lambda: _admitted(channel, admitted), "a cancelled Watch left its place")
    assert server.health.open_watches == BOUND
    for stream in (*held, *admitted):
        stream.cancel()


def _admitted(channel: grpc.Channel, admitted: list[Any]) -> bool:
    """Whether a Watch for "" is admitted now (kept in ``admitted`` if so)."""
    stream = _watch(channel, "")
    try:
        assert next(stream).status == SERVING
    except grpc.RpcError as refused:
        assert refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        return False
    admitted.append(stream)
    return True


def test_a_stop_ends_open_watches_after_not_serving_instead_of_waiting_its_grace(
    served: tuple[MerchantServer, grpc.Channel],
) -> None:
    server, channel = served
    streams = [_watch(channel, name) for name in ("", SERVICE_NAME)]
    unknown = _watch(channel, "not.served")
    assert [next(stream).status for stream in streams] == [SERVING, SERVING]
    next(unknown)

    started = time.monotonic()
    stopped = server.stop(GRACE_SECONDS)
    assert stopped.wait(WAIT_SECONDS)
    took = time.monotonic() - started
    assert took < PROMPT_STOP_SECONDS, f"the stop waited {took:.1f} s for the open Watches"
    for stream in streams:
        assert [answer.status for answer in stream] == [NOT_SERVING]  # then ended, OK
    assert list(unknown) == []  # ended, OK
    assert unknown.code() == grpc.StatusCode.OK


def test_a_stop_ends_well_within_its_grace_with_a_watch_whose_peer_takes_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A Watch whose peer's window is 0 has its first status's send under way as the stop
    begins: ended or not, the stream stays under the stall watch, whose cancelling ends
    it. Before, ``end_watches`` forgot every open stream, the stall watch ended with them,
    and gRPC's stop waited its whole grace for the stalled one."""
    monkeypatch.setattr(served_health, "MAX_WATCHES", BOUND, raising=False)
    servicer = MerchantServicer(cast(Checkout, None), cast(Credentials, None))
    settings = ServerSettings(listen="127.0.0.1:0", threads=4, max_concurrent_rpcs=64, tls=None)
    server, port = start_server(servicer, settings)
    peer = ZeroWindowClient(port)
    try:
        peer.watch(SERVICE_NAME)
        _until(lambda: peer.headers_seen == 1, "the Watch was answered its headers")
        assert peer.data_seen == 0  # its status is stuck behind its window

        started = time.monotonic()
        stopped = server.stop(LONG_GRACE_SECONDS)
        took = time.monotonic() - started
        assert took < PROMPT_STOP_SECONDS, f"stop itself waited {took:.1f} s for the peer"
        assert stopped.wait(WAIT_SECONDS), "the stop waited its grace for the stalled Watch"
        assert server.health.open_watches == 0  # its call is over
    finally:
        peer.close()
        server.stop(None).wait()
