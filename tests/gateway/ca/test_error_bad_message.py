"""The CA's Errors name the request as it was received.

CardCInitReq and Me-AqCInitReq are their call's frame itself, not a SET message in a
bytes field of it as RegFormReq, CertReq and CertInqReq are. Their Error's digest used to
be of the request parsed and serialized again, which is not what was sent when the sender
wrote its fields in another order: the requester could not match the Error to its
request. Served as the bank serves it (``gateway.server.create_server``), on port 0.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from google.protobuf.message import Message

from setcore.error_message import ERROR_CT, request_digest
from setcore.errors import ErrorCode
from setcore.freshness import new_id
from setcore.purchase import header
from setcore.registration import ca_error
from setcore.registration_cardholder import build_card_c_init_request
from setcore.registration_merchant import MerchantIdentity, build_me_aq_c_init_request
from setcore.signed import open_signed, parse_signed
from setcore.signers import signer
from setpay.v1 import error_pb2, registration_pb2

from .conftest import Bank, serving_channel
from .flows import new_trust

S = registration_pb2
SERVICE = "/setpay.v1.CertificateAuthorityService"
# A local call answers in milliseconds; the deadline only keeps a hung server from
# hanging the test run.
CALL_TIMEOUT_S = 10

Call = Callable[[str, bytes, type[Message]], Any]


@pytest.fixture
def call(ec_bank: Bank) -> Iterator[Call]:
    """Sends bytes as they are to a method of the EC bank's CA, served on a server of its own."""
    with serving_channel(ec_bank.ca) as channel:

        def send(method: str, sent: bytes, response_cls: type[Message]) -> Any:
            unary = channel.unary_unary(
                f"{SERVICE}/{method}",
                request_serializer=None,
                response_deserializer=response_cls.FromString,
            )
            return unary(sent, timeout=CALL_TIMEOUT_S)

        yield send


def _brand_first(request: Message) -> bytes:
    """``request``'s bytes with its brand written first, before fields numbered lower:
    a valid encoding of the same message that a serializer never writes."""
    rest = type(request)()
    rest.CopyFrom(request)
    rest.ClearField("brand_id")
    brand = type(request)(brand_id=request.brand_id)  # type: ignore[attr-defined]
    sent = brand.SerializeToString() + rest.SerializeToString()
    parsed = type(request).FromString(sent)
    assert parsed == request and parsed.SerializeToString() != sent
    return sent


def _named(
    error: error_pb2.SetError, bank: Bank, ca_type: int, rrpid: bytes, sent: bytes
) -> tuple[int, bytes]:
    """The code of the CA's signed Error, opened as the requester of ``sent`` opens it,
    and the digest it names the bad message by."""
    trust = new_trust(bank)
    code = ca_error(error, trust, ca_type, rrpid, request=sent).code  # installs the BCI
    tbs = open_signed(parse_signed(error.signed_error), ERROR_CT, signer(trust, ca_type)).tbs
    return code, error_pb2.ErrorTBS.FromString(tbs).bad_message_digest


def _digest(frame: type[Message], sent: bytes) -> bytes:
    return request_digest(frame.DESCRIPTOR.full_name, sent)


def test_a_card_c_init_error_names_the_bytes_sent(call: Call, ec_bank: Bank) -> None:
    request, _ = build_card_c_init_request("another-brand", b"lid-ee")
    sent = _brand_first(request)
    response = call("CardCInit", sent, S.CardCInitResponse)
    assert response.WhichOneof("result") == "error"
    digest = _digest(S.CardCInitRequest, sent)
    ca_type = S.CERTIFICATE_TYPE_CARDHOLDER_CA
    code, named = _named(response.error, ec_bank, ca_type, request.rrpid, digest)
    assert code == ErrorCode.ERROR_CODE_MESSAGE_NOT_SUPPORTED
    assert named == digest


def test_a_me_aq_c_init_error_names_the_bytes_sent(call: Call, ec_bank: Bank) -> None:
    identity = MerchantIdentity(f"m-as-sent-{new_id().hex()[:8]}", "as sent shop", "400000")
    request, _ = build_me_aq_c_init_request(
        S.REQUEST_TYPE_MER_INITIAL_BOTH, identity, "another-brand", b"lid-ee"
    )
    sent = _brand_first(request)
    response = call("MeAqCInit", sent, S.MeAqCInitResponse)
    assert response.WhichOneof("result") == "error"
    digest = _digest(S.MeAqCInitRequest, sent)
    ca_type = S.CERTIFICATE_TYPE_MERCHANT_CA
    code, named = _named(response.error, ec_bank, ca_type, request.rrpid, digest)
    assert code == ErrorCode.ERROR_CODE_MESSAGE_NOT_SUPPORTED
    assert named == digest


def test_a_request_in_a_bytes_field_is_named_as_sent(call: Call, ec_bank: Bank) -> None:
    # CertReq travels as bytes inside its frame: the Error names those bytes, not the frame.
    rrpid = new_id()
    inner = b"\x0a\x03not a certificate request"
    frame = S.CertRequest(header=header(rrpid=rrpid), cert_req=inner).SerializeToString()
    response = call("Cert", frame, S.CertResponse)
    assert response.WhichOneof("result") == "error"
    digest = _digest(S.CertRequest, inner)
    _, named = _named(response.error, ec_bank, S.CERTIFICATE_TYPE_CARDHOLDER_CA, rrpid, digest)
    assert named == digest


def test_a_card_c_init_as_sent_is_answered(call: Call, ec_bank: Bank) -> None:
    # The same path with nothing to refuse: the bytes kept do not get in the answer's way.
    request, _ = build_card_c_init_request(ec_bank.brand_id, b"lid-ee")
    response = call("CardCInit", _brand_first(request), S.CardCInitResponse)
    assert response.WhichOneof("result") == "card_c_init_res"
