"""Result codes of a later release: named, parsed and refused as this build can.

A peer of a later release may answer with a result code this build does not define
(``CAP_REV_OR_CRED_CODE_INSUFFICIENT_FUNDS`` was one). Its signed answer parses, its
code has a bounded name that is no real value's, and a SET Error carrying one is still
the peer's refusal. (An enum a request asks with still refuses a value it does not
define: ``test_encoding``.)
"""

from __future__ import annotations

from google.protobuf.message import Message

from setcore.encoding import parse_strict
from setcore.enum_names import RESULT_CODES, code_name, is_known
from setcore.error_message import build_error, error_text, open_error, request_digest
from setcore.errors import ErrorCode, PeerError, ProtocolError
from setcore.freshness import new_id
from setcore.pki.roles import PAYMENT_GATEWAY
from setpay.v1 import (
    authorization_pb2,
    capture_pb2,
    error_pb2,
    gateway_admin_pb2,
    purchase_pb2,
    registration_pb2,
)

from .certified import Certified

# A value no enum of this build defines: what a peer of a later release might send.
LATER = 99
SENT = request_digest("setpay.v1.CaptureRequest", b"request")


def test_a_defined_value_has_its_own_name_and_an_undefined_one_a_bounded_stable_one() -> None:
    codes = capture_pb2.CapRevOrCredCode
    assert code_name(codes, capture_pb2.CAP_REV_OR_CRED_CODE_SUCCESS) == (
        "CAP_REV_OR_CRED_CODE_SUCCESS"
    )
    assert is_known(codes, capture_pb2.CAP_REV_OR_CRED_CODE_SUCCESS)
    assert not is_known(codes, LATER)
    assert code_name(codes, LATER) == "CapRevOrCredCode 99"
    assert code_name(codes, -LATER) == "CapRevOrCredCode -99"
    # The widest an open enum's value gets: a 32-bit integer.
    assert code_name(codes, -(2**31)) == "CapRevOrCredCode -2147483648"


def test_the_name_of_an_undefined_value_is_never_a_real_one() -> None:
    # A record or a log line must never show a code of some release that the peer did
    # not send: every real name is an UPPER_SNAKE identifier, the other form has a space.
    enums = [
        authorization_pb2.AuthCode, authorization_pb2.RespReason, authorization_pb2.AuthRevCode,
        authorization_pb2.CapCode, capture_pb2.CapRevOrCredCode, error_pb2.ErrorCode,
        gateway_admin_pb2.PCertCode, gateway_admin_pb2.BatchAdminStatus,
        purchase_pb2.CompletionCode, registration_pb2.CertStatusCode,
    ]  # fmt: skip
    assert {enum.DESCRIPTOR.full_name for enum in enums} == RESULT_CODES
    for enum in enums:
        assert all(" " not in name for name in enum.DESCRIPTOR.values_by_name)
        assert code_name(enum, LATER) == f"{enum.DESCRIPTOR.name} {LATER}"


def _answers_with_later_codes() -> list[tuple[type[Message], Message]]:
    """One answer of each kind, each result code of it undefined in this build."""
    auth = authorization_pb2.AuthResData(content_type="setpay.v1.AuthResData")
    header = auth.auth_res_payload.auth_header
    header.auth_code = LATER  # type: ignore[assignment]
    header.response_data.resp_reason = LATER  # type: ignore[assignment]
    auth.auth_res_payload.cap_res_payload.cap_code = LATER  # type: ignore[assignment]
    rev = authorization_pb2.AuthRevResData(content_type="setpay.v1.AuthRevResData")
    rev.auth_rev_code = LATER  # type: ignore[assignment]
    cap = capture_pb2.CapResData(content_type="setpay.v1.CapResData")
    cap.cap_res_items.add().cap_res_payload.cap_code = LATER  # type: ignore[assignment]
    credit = capture_pb2.CapRevOrCredResData(content_type="setpay.v1.CapRevOrCredResData")
    credit.items.add(code=LATER)
    error = error_pb2.ErrorTBS(content_type="setpay.v1.ErrorTBS", error_code=LATER)  # type: ignore[arg-type]
    pcert = gateway_admin_pb2.PCertResTBS(content_type="setpay.v1.PCertResTBS")
    pcert.items.add(p_cert_code=LATER)
    batch = gateway_admin_pb2.BatchAdminResData(content_type="setpay.v1.BatchAdminResData")
    batch.status = LATER  # type: ignore[assignment]
    pres = purchase_pb2.PResData(content_type="setpay.v1.PResData")
    pres.payloads.add(completion_code=LATER, auth_code=LATER)
    cert = registration_pb2.CertResData(content_type="setpay.v1.CertResData")
    cert.cert_status.cert_status_code = LATER  # type: ignore[assignment]
    messages: list[Message] = [auth, rev, cap, credit, error, pcert, batch, pres, cert]
    return [(type(message), message) for message in messages]


def test_an_answer_carrying_result_codes_of_a_later_release_parses() -> None:
    for message_class, message in _answers_with_later_codes():
        parsed = parse_strict(message_class, message.SerializeToString())
        assert parsed == message, message_class.__name__


def test_a_signed_error_of_a_later_code_is_the_peers_refusal(certified: Certified) -> None:
    rrpid = new_id()
    error = build_error(certified.gateway, LATER, rrpid=rrpid, request=SENT)
    opened = open_error(error, certified.trust(), PAYMENT_GATEWAY, rrpid=rrpid, request=SENT)
    assert isinstance(opened, PeerError)
    assert opened.code == LATER
    assert opened.code_name == "ErrorCode 99"
    assert str(opened) == "peer refused the request: ErrorCode 99 'errorcode 99'"


def test_errors_name_a_code_they_do_not_define() -> None:
    assert PeerError(LATER).code_name == "ErrorCode 99"
    assert str(PeerError(LATER, "x")) == "peer refused the request: ErrorCode 99 'x'"
    refused = ProtocolError(LATER, "a reason")
    assert (refused.code_name, str(refused)) == (
        "ErrorCode 99",
        "ErrorCode 99: a reason",
    )
    assert error_text(LATER) == "errorcode 99"
    assert error_text(ErrorCode.ERROR_CODE_DIGEST_MISMATCH) == "digest mismatch"
