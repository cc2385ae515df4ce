"""The CA receives the very bytes a registration's first request was hashed over.

CardCInitReq and Me-AqCInitReq are their calls' frames: the digest a CA's Error must
name is of those bytes, so they are serialized once, by the builder, and sent as they
are (SET-PROTOCOL.md 11.1). A real gRPC server on port 0 records what arrives.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from clients.authority import AuthorityClient
from clients.transport import Caller
from setcore.error_message import request_digest
from setcore.registration_cardholder import build_card_c_init_request
from setcore.registration_merchant import MerchantIdentity, build_me_aq_c_init_request
from setpay.v1 import registration_pb2
from tests.clients.transport_support import recording_ca


@pytest.fixture
def received() -> Iterator[tuple[dict[str, bytes], AuthorityClient]]:
    """A CA stand-in that records each request's bytes and answers with an empty message."""
    with recording_ca() as (seen, channel):
        yield seen, AuthorityClient(Caller(channel, "CA"))


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
