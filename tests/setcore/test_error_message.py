"""The SET Error as its receiver opens it: the peer's word on our request, or nothing.

An Error counts as the peer's refusal (``PeerError``) only when it verifies as signed by
the expected role and names both the RRPID of the request it answers and that request's
digest over the bytes sent; anything else is an answer the requester could not check
(``ProtocolError``), never a refusal.
"""

from __future__ import annotations

import pytest

from setcore.error_message import build_error, error_text, open_error, request_digest
from setcore.errors import ErrorCode, PeerError, ProtocolError
from setcore.freshness import new_id
from setcore.pki.roles import MERCHANT, PAYMENT_GATEWAY
from setpay.v1 import crypto_pb2, error_pb2

from .certified import Certified

REFUSED = ErrorCode.ERROR_CODE_PI_PREVIOUSLY_USED
FRAME = "setpay.v1.CaptureRequest"
SENT = request_digest(FRAME, b"request")


def test_an_error_naming_our_request_is_the_peers_refusal(certified: Certified) -> None:
    rrpid = new_id()
    error = build_error(certified.gateway, REFUSED, rrpid=rrpid, request=SENT)
    opened = open_error(error, certified.trust(), PAYMENT_GATEWAY, rrpid=rrpid, request=SENT)
    assert isinstance(opened, PeerError)
    assert opened.code == REFUSED


def test_an_error_naming_another_request_is_not_a_refusal(certified: Certified) -> None:
    # A genuine, signed Error of the gateway's, but about another exchange: replayed, it
    # must not fail ours.
    error = build_error(certified.gateway, REFUSED, rrpid=new_id(), request=SENT)
    opened = open_error(error, certified.trust(), PAYMENT_GATEWAY, rrpid=new_id(), request=SENT)
    assert isinstance(opened, ProtocolError)
    assert opened.code == ErrorCode.ERROR_CODE_UNKNOWN_RRPID


def test_an_error_naming_no_request_does_not_answer_one_that_had_an_rrpid(
    certified: Certified,
) -> None:
    error = build_error(certified.gateway, REFUSED, request=SENT)
    opened = open_error(error, certified.trust(), PAYMENT_GATEWAY, rrpid=new_id(), request=SENT)
    assert isinstance(opened, ProtocolError)
    assert opened.code == ErrorCode.ERROR_CODE_UNKNOWN_RRPID


def test_an_unsigned_error_is_not_a_refusal(certified: Certified) -> None:
    rrpid = new_id()
    error = build_error(None, REFUSED, rrpid=rrpid, request=SENT)
    assert error.WhichOneof("error") == "unsigned_error"
    opened = open_error(error, certified.trust(), PAYMENT_GATEWAY, rrpid=rrpid, request=SENT)
    assert isinstance(opened, ProtocolError)
    assert opened.code == ErrorCode.ERROR_CODE_SIGNATURE_REQUIRED


def test_an_error_whose_signature_fails_is_not_a_refusal(certified: Certified) -> None:
    rrpid = new_id()
    error = build_error(certified.gateway, REFUSED, rrpid=rrpid, request=SENT)
    signed = crypto_pb2.Signed.FromString(error.signed_error)
    tbs = error_pb2.ErrorTBS.FromString(signed.tbs)
    tbs.error_code = ErrorCode.ERROR_CODE_UNSPECIFIED_FAILURE  # another word put in its mouth
    signed.tbs = tbs.SerializeToString()
    forged = error_pb2.SetError(signed_error=signed.SerializeToString())
    opened = open_error(forged, certified.trust(), PAYMENT_GATEWAY, rrpid=rrpid, request=SENT)
    assert isinstance(opened, ProtocolError)
    assert opened.code == ErrorCode.ERROR_CODE_SIGNATURE_FAILURE


def test_an_error_signed_by_another_role_is_not_a_refusal(certified: Certified) -> None:
    # A merchant's signed Error where the gateway's is expected.
    rrpid = new_id()
    error = build_error(certified.merchant, REFUSED, rrpid=rrpid, request=SENT)
    opened = open_error(error, certified.trust(), PAYMENT_GATEWAY, rrpid=rrpid, request=SENT)
    assert isinstance(opened, ProtocolError)
    assert open_error(error, certified.trust(), MERCHANT, rrpid=rrpid, request=SENT).code == REFUSED


@pytest.mark.parametrize("code", [ErrorCode.ERROR_CODE_UNSPECIFIED_FAILURE, REFUSED])
def test_the_error_carries_its_code_and_a_fixed_text(certified: Certified, code: int) -> None:
    rrpid = new_id()
    error = build_error(certified.gateway, code, rrpid=rrpid, request=SENT)
    opened = open_error(error, certified.trust(), PAYMENT_GATEWAY, rrpid=rrpid, request=SENT)
    assert isinstance(opened, PeerError)
    assert opened.code == code
    # The code and its fixed text, nothing else: never which check failed.
    assert str(opened) == f"peer refused the request: {ErrorCode.Name(code)} {error_text(code)!r}"


# --- the request an Error names (SET-PROTOCOL.md 7.6) ----------------------------------


@pytest.mark.parametrize(
    ("frame", "sent"),
    [
        (FRAME, b"other bytes"),  # garbage sent under our RRPID
        ("setpay.v1.CaptureReversalRequest", b"request"),  # our bytes, to another method
    ],
)
def test_an_error_naming_our_rrpid_but_other_bytes_is_not_a_refusal(
    certified: Certified, frame: str, sent: bytes
) -> None:
    # The RRPID comes from a plaintext header: anyone on the path can send something else
    # under ours and have the peer sign a genuine Error about it.
    rrpid = new_id()
    error = build_error(
        certified.gateway, REFUSED, rrpid=rrpid, request=request_digest(frame, sent)
    )
    opened = open_error(error, certified.trust(), PAYMENT_GATEWAY, rrpid=rrpid, request=SENT)
    assert isinstance(opened, ProtocolError)
    assert opened.code == ErrorCode.ERROR_CODE_DIGEST_MISMATCH
    assert "other bytes under our RRPID" in opened.reason


def test_an_error_naming_no_bytes_answers_no_request(certified: Certified) -> None:
    # Neither side naming a request is no match: an Error that names nothing answers nothing.
    rrpid = new_id()
    error = build_error(certified.gateway, REFUSED, rrpid=rrpid)
    opened = open_error(error, certified.trust(), PAYMENT_GATEWAY, rrpid=rrpid, request=b"")
    assert isinstance(opened, ProtocolError)
    assert opened.code == ErrorCode.ERROR_CODE_DIGEST_MISMATCH
