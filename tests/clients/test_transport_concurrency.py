"""A call a gRPC server refused past its ``maximum_concurrent_rpcs`` is sent again.

The backstop of every server of ours (above the admission of ``setcore.admission``)
sheds so, with RESOURCE_EXHAUSTED and no RetryInfo, before any handler reads the request:
a wallet's PReq refused so used to end the purchase though the merchant never saw it.
Refused so at every attempt, the call is ``NotRead``. Real gRPC servers on port 0,
limited to one call at a time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest

from clients.errors import NotRead, TransportError
from clients.transport import (
    MAX_MESSAGE_BYTES,
    Caller,
    ChannelConfig,
    RetryPolicy,
    open_channel,
)
from setcore.admission import GRPC_CONCURRENCY_REFUSAL
from setpay.v1 import common_pb2

METHOD = "/setpay.test.Busy/Call"
# Room for the retries to meet the server free: the first retry may still find the first
# call counted (gRPC frees its place as it finishes the call, a moment after the answer
# left), so a few more attempts, a few milliseconds apart.
PATIENT = RetryPolicy(attempts=8, first_backoff=0.005, max_backoff=0.02)
# How long a test waits for a thread or a call of its own before failing: the calls
# answer in milliseconds; the bound only keeps a hung server from hanging the run.
WAIT_SECONDS = 10


class Busy:
    """Answers each call; the first waits for ``release`` first, holding the only place."""

    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.holding = threading.Event()
        self.release = threading.Event()
        self.answer = common_pb2.Header(sw_ident="ok").SerializeToString()

    def __call__(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        self.received.append(request)
        if len(self.received) == 1:
            self.holding.set()
            assert self.release.wait(WAIT_SECONDS)
        return self.answer


@pytest.fixture
def busy() -> Iterator[tuple[Busy, grpc.Channel]]:
    """A server that takes one call at a time, as the merchant's does at its limit."""
    behaviour = Busy()
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=2),
        maximum_concurrent_rpcs=1,
        options=[("grpc.max_send_message_length", 4 * MAX_MESSAGE_BYTES)],
    )
    handler = grpc.method_handlers_generic_handler(
        "setpay.test.Busy", {"Call": grpc.unary_unary_rpc_method_handler(behaviour)}
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = open_channel(ChannelConfig(f"127.0.0.1:{port}", insecure=True), "test")
    yield behaviour, channel
    behaviour.release.set()
    channel.close()
    server.stop(grace=None)


def _first_call(caller: Caller, behaviour: Busy) -> futures.Future[common_pb2.Header]:
    """The first call, started and holding the server's only place."""
    pool = futures.ThreadPoolExecutor(max_workers=1)
    first = pool.submit(caller.call, METHOD, b"first", common_pb2.Header, deadline=WAIT_SECONDS)
    pool.shutdown(wait=False)
    assert behaviour.holding.wait(WAIT_SECONDS)
    return first


def test_grpc_words_its_concurrency_refusal_as_the_transport_expects(
    busy: tuple[Busy, grpc.Channel],
) -> None:
    """Pins grpcio's words: a grpcio that changes them fails here, not in production."""
    behaviour, channel = busy
    first = _first_call(Caller(channel, "test"), behaviour)
    stub = channel.unary_unary(METHOD, request_serializer=None, response_deserializer=None)
    with pytest.raises(grpc.RpcError) as refused:
        stub(b"second", timeout=WAIT_SECONDS)
    call = refused.value
    assert isinstance(call, grpc.Call)
    assert call.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert call.details() == GRPC_CONCURRENCY_REFUSAL
    assert behaviour.received == [b"first"]  # refused before any handler ran
    behaviour.release.set()
    assert first.result(WAIT_SECONDS).sw_ident == "ok"


def test_a_call_refused_past_the_concurrency_limit_is_sent_again(
    busy: tuple[Busy, grpc.Channel],
) -> None:
    behaviour, channel = busy
    first = _first_call(Caller(channel, "test"), behaviour)
    pauses: list[float] = []

    def pause(seconds: float) -> None:
        # The first refusal frees the first call and waits for its answer, so that a retry
        # can find the place free; later pauses are real waits.
        pauses.append(seconds)
        if len(pauses) == 1:
            behaviour.release.set()
            first.result(WAIT_SECONDS)
        time.sleep(seconds)

    caller = Caller(channel, "test", PATIENT, sleep=pause)
    reply = caller.call(METHOD, b"second", common_pb2.Header, deadline=WAIT_SECONDS)
    assert reply.sw_ident == "ok"
    assert pauses  # it was refused first
    assert behaviour.received == [b"first", b"second"]  # the refusals reached no handler


def test_a_call_refused_past_the_limit_every_time_ends_as_resource_exhausted(
    busy: tuple[Busy, grpc.Channel],
) -> None:
    behaviour, channel = busy
    first = _first_call(Caller(channel, "test"), behaviour)
    pauses: list[float] = []
    caller = Caller(channel, "test", PATIENT, sleep=pauses.append)
    with pytest.raises(NotRead) as refused:
        caller.call(METHOD, b"second", common_pb2.Header, deadline=WAIT_SECONDS)
    assert refused.value.status == "RESOURCE_EXHAUSTED"
    assert len(pauses) == PATIENT.attempts - 1
    behaviour.release.set()
    first.result(WAIT_SECONDS)
    assert behaviour.received == [b"first"]


def test_an_answer_too_large_is_not_sent_again(busy: tuple[Busy, grpc.Channel]) -> None:
    """gRPC's client-side refusal of an answer over the bound: the peer did the work."""
    behaviour, channel = busy
    behaviour.release.set()
    behaviour.answer = common_pb2.Header(
        sw_ident="x" * (MAX_MESSAGE_BYTES + 10)
    ).SerializeToString()
    pauses: list[float] = []
    with pytest.raises(TransportError) as refused:
        Caller(channel, "test", PATIENT, sleep=pauses.append).call(
            METHOD, b"work", common_pb2.Header, deadline=WAIT_SECONDS
        )
    assert refused.value.status == "RESOURCE_EXHAUSTED"
    assert not isinstance(refused.value, NotRead)  # the peer did the work
    assert "not retried" in str(refused.value)
    assert pauses == [] and behaviour.received == [b"work"]
