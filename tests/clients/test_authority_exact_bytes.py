"""The CA receives the very bytes a registration's first request was hashed over.

CardCInitReq and Me-AqCInitReq are their calls' frames: the digest a CA's Error must
name is of those bytes, so they are serialized once, by the builder, and sent as they
are (SET-PROTOCOL.md 11.1). A real gRPC server on port 0 records what arrives.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest

from clients.authority import AuthorityClient
from clients.transport import Caller, ChannelConfig, open_channel
from setcore.error_message import request_digest
from setcore.registration_cardholder import build_card_c_init_request
from setcore.registration_merchant import MerchantIdentity, build_me_aq_c_init_request
from setpay.v1 import registration_pb2, services_pb2

_SERVICE = services_pb2.DESCRIPTOR.services_by_name["CertificateAuthorityService"].full_name


@pytest.fixture
def received() -> Iterator[tuple[dict[str, bytes], AuthorityClient]]:
    """A CA stand-in that records each request's bytes and answers with an empty message."""
    seen: dict[str, bytes] = {}

    def recorder(name: str):  # type: ignore[no-untyped-def]
        def handle(request: bytes, context: grpc.ServicerContext) -> bytes:
            seen[name] = request
            return b""

        return grpc.unary_unary_rpc_method_handler(handle)

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    handlers = {name: recorder(name) for name in ("CardCInit", "MeAqCInit")}
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(_SERVICE, handlers)])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = open_channel(ChannelConfig(f"127.0.0.1:{port}", insecure=True), "CA")
    yield seen, AuthorityClient(Caller(channel, "CA"))
    channel.close()
    server.stop(grace=None)


def test_card_c_init_sends_the_bytes_it_was_hashed_over(
    received: tuple[dict[str, bytes], AuthorityClient],
) -> None:
    seen, authority = received
    request, state = build_card_c_init_request("testbrand", b"lid-ee")
    authority.card_c_init(request, sent=state.sent)
    assert seen["CardCInit"] == state.sent
    name = registration_pb2.CardCInitRequest.DESCRIPTOR.full_name
    assert request_digest(name, seen["CardCInit"]) == state.request_digest


def test_me_aq_c_init_sends_the_bytes_it_was_hashed_over(
    received: tuple[dict[str, bytes], AuthorityClient],
) -> None:
    seen, authority = received
    request, state = build_me_aq_c_init_request(
        registration_pb2.REQUEST_TYPE_MER_INITIAL_BOTH,
        MerchantIdentity("m-bytes", "Byte Shop"), "testbrand", b"lid-ee",
    )  # fmt: skip
    authority.me_aq_c_init(request, sent=state.sent)
    assert seen["MeAqCInit"] == state.sent
    name = registration_pb2.MeAqCInitRequest.DESCRIPTOR.full_name
    assert request_digest(name, seen["MeAqCInit"]) == state.request_digest
