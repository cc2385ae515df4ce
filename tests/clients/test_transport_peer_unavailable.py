"""UNAVAILABLE from a peer that answered it (the merchant while its gateway is down, the
gateway or CA in a ledger or key outage) quotes the peer's reason; UNAVAILABLE that gRPC
made (nothing answered at the address) asks whether the peer runs there. Asking "is the
merchant running?" of a merchant that just answered, and dropping why it could not serve,
sent the user to look in the wrong place."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest

from clients.errors import TransportError
from clients.transport import Caller, ChannelConfig, RetryPolicy, open_channel
from setpay.v1 import common_pb2

SERVICE = "setpay.test.Down"
METHOD = f"/{SERVICE}/Call"
ORIGIN = "merchant.target in wallet.toml"
REASON = "payment gateway unavailable"
# Tight backoff: the peer answers UNAVAILABLE at every attempt.
FAST = RetryPolicy(attempts=2, first_backoff=0.001, max_backoff=0.002)


def _abort(request: bytes, context: grpc.ServicerContext) -> bytes:
    context.abort(grpc.StatusCode.UNAVAILABLE, REASON)
    raise AssertionError("abort returned")


@pytest.fixture
def down_peer() -> Iterator[str]:
    """A running server that answers every call UNAVAILABLE with its own reason."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    handler = grpc.unary_unary_rpc_method_handler(_abort, lambda b: b, lambda b: b)
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler(SERVICE, {"Call": handler})]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(0)


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port of 127.0.0.1 bound and not listening: a connection there is refused."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield held.getsockname()[1]


def _failure(config: ChannelConfig) -> TransportError:
    with open_channel(config, "merchant") as channel, pytest.raises(TransportError) as caught:
        Caller(channel, "merchant", FAST).call(METHOD, b"x", common_pb2.Header, deadline=5)
    return caught.value


def test_a_peer_that_answered_unavailable_is_quoted_not_asked_whether_it_runs(
    down_peer: str,
) -> None:
    failure = _failure(ChannelConfig(down_peer, insecure=True, origin=ORIGIN))
    assert failure.status == "UNAVAILABLE"
    assert str(failure) == (
        f"merchant Call: UNAVAILABLE at {down_peer} ({ORIGIN}): the merchant answered: {REASON!r}"
    )


def test_a_channel_of_unknown_origin_still_quotes_the_peer(down_peer: str) -> None:
    failure = _failure(ChannelConfig(down_peer, insecure=True))
    assert str(failure) == (
        f"merchant Call: UNAVAILABLE at {down_peer}: the merchant answered: {REASON!r}"
    )


def test_a_refused_connection_still_asks_whether_the_peer_runs(closed_port: int) -> None:
    target = f"127.0.0.1:{closed_port}"
    failure = _failure(ChannelConfig(target, insecure=True, origin=ORIGIN))
    assert str(failure) == (
        f"merchant Call: UNAVAILABLE at {target} ({ORIGIN}): is the merchant running,"
        " and reachable there?"
    )


def test_an_unresolvable_name_still_asks_whether_the_peer_runs() -> None:
    target = "no-such-host.invalid:7444"  # .invalid never resolves (RFC 2606)
    failure = _failure(ChannelConfig(target, insecure=True, origin=ORIGIN))
    assert str(failure).endswith(": is the merchant running, and reachable there?"), failure
