"""RESOURCE_EXHAUSTED is retried only as the peer's own word (its RetryInfo), never when
gRPC raised it on the client: an answer larger than the client takes means the peer did
the work, and sending the request again would make it do the work again. A call shed at
every attempt is ``NotRead``; one whose any attempt may have been read is not."""

from __future__ import annotations

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
from setpay.v1 import common_pb2
from tests.clients.transport_support import shed_status

METHOD = "/setpay.test.Heavy/Call"
# Tight backoff: a retry, if any, is taken at once (the jitter adds at most 2 ms).
FAST = RetryPolicy(attempts=4, first_backoff=0.001, max_backoff=0.002)
# What a shed call asks to wait in these tests: long enough to tell from the jitter.
ASKED_SECONDS = 0.05


class Heavy:
    """Answers each call with ``answer``, or refuses the first ``shed`` calls as given."""

    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.answer = common_pb2.Header(sw_ident="ok").SerializeToString()
        self.shed = 0
        self.refusal: grpc.Status | None = None
        # Refusals for the first calls, in order, before ``refusal`` for the rest.
        self.first_refusals: list[grpc.Status] = []

    def __call__(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        self.received.append(request)
        if len(self.received) <= self.shed:
            if self.first_refusals:
                context.abort_with_status(self.first_refusals.pop(0))
            if self.refusal is not None:
                context.abort_with_status(self.refusal)
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "busy")
        return self.answer


@pytest.fixture
def heavy() -> Iterator[tuple[Heavy, grpc.Channel]]:
    behaviour = Heavy()
    # The server may send more than the client takes: the client's bound is under test.
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=2),
        options=[("grpc.max_send_message_length", 4 * MAX_MESSAGE_BYTES)],
    )
    handler = grpc.method_handlers_generic_handler(
        "setpay.test.Heavy", {"Call": grpc.unary_unary_rpc_method_handler(behaviour)}
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = open_channel(ChannelConfig(f"127.0.0.1:{port}", insecure=True), "test")
    yield behaviour, channel
    channel.close()
    server.stop(grace=None)


def test_an_answer_too_large_is_not_asked_for_again(heavy: tuple[Heavy, grpc.Channel]) -> None:
    behaviour, channel = heavy
    oversized = common_pb2.Header(sw_ident="x" * (MAX_MESSAGE_BYTES + 10))
    behaviour.answer = oversized.SerializeToString()
    with pytest.raises(TransportError) as caught:
        Caller(channel, "test", FAST).call(METHOD, b"work", common_pb2.Header, deadline=5)
    assert behaviour.received == [b"work"]  # handled once
    assert caught.value.status == "RESOURCE_EXHAUSTED"
    assert "not retried" in str(caught.value) and "larger than max" in str(caught.value)


def test_a_refusal_without_retry_info_is_not_retried(heavy: tuple[Heavy, grpc.Channel]) -> None:
    behaviour, channel = heavy
    behaviour.shed = 1
    with pytest.raises(TransportError) as caught:
        Caller(channel, "test", FAST).call(METHOD, b"work", common_pb2.Header, deadline=5)
    assert caught.value.status == "RESOURCE_EXHAUSTED"
    assert behaviour.received == [b"work"]


def test_a_shed_call_waits_the_delay_the_peer_asked(heavy: tuple[Heavy, grpc.Channel]) -> None:
    behaviour, channel = heavy
    behaviour.shed = 2
    behaviour.refusal = shed_status(grpc.StatusCode.RESOURCE_EXHAUSTED, ASKED_SECONDS)
    pauses: list[float] = []
    caller = Caller(channel, "test", FAST, sleep=pauses.append)
    reply = caller.call(METHOD, b"work", common_pb2.Header, deadline=5)
    assert reply.sw_ident == "ok"
    assert behaviour.received == [b"work"] * 3
    assert len(pauses) == 2
    assert all(ASKED_SECONDS <= pause <= ASKED_SECONDS + FAST.max_backoff for pause in pauses)


def test_a_call_shed_at_every_attempt_is_not_read(heavy: tuple[Heavy, grpc.Channel]) -> None:
    # Told apart from other failures, as the peer's unsigned word only: a wallet keeps a
    # PReq shed so as SHED, for an inquiry to settle (the peer may have read it all the same).
    behaviour, channel = heavy
    behaviour.shed = FAST.attempts
    behaviour.refusal = shed_status(grpc.StatusCode.RESOURCE_EXHAUSTED, 0.001)
    with pytest.raises(NotRead) as caught:
        Caller(channel, "test", FAST).call(METHOD, b"work", common_pb2.Header, deadline=5)
    assert caught.value.status == "RESOURCE_EXHAUSTED"
    assert len(behaviour.received) == FAST.attempts


def test_a_call_one_attempt_of_which_may_have_been_read_is_not_not_read(
    heavy: tuple[Heavy, grpc.Channel],
) -> None:
    # UNAVAILABLE may come after the peer read the request (a connection cut mid-call).
    behaviour, channel = heavy
    behaviour.shed = FAST.attempts
    behaviour.first_refusals = [shed_status(grpc.StatusCode.UNAVAILABLE, 0.001)]
    behaviour.refusal = shed_status(grpc.StatusCode.RESOURCE_EXHAUSTED, 0.001)
    with pytest.raises(TransportError) as caught:
        Caller(channel, "test", FAST).call(METHOD, b"work", common_pb2.Header, deadline=5)
    assert caught.value.status == "RESOURCE_EXHAUSTED"
    assert not isinstance(caught.value, NotRead)
