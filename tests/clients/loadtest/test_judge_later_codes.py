"""The bench's judge of AuthRes answers with codes of a later release: a decline or a
refusal named by its bounded name, never a crash that loses the request from the tally."""

from __future__ import annotations

from typing import Any, cast

from clients.loadtest.tally import Verdict, auth_judge
from setcore.authorization import AuthResult
from setcore.errors import PeerError
from setcore.pki.verified import VerifiedCertificate
from setpay.v1 import authorization_pb2

# A value no result-code enum of this build defines: a later release's code.
LATER = 99


def _answered(auth_code: int, resp_reason: int) -> AuthResult:
    data = authorization_pb2.AuthResData()
    header = data.auth_res_payload.auth_header
    header.auth_code = auth_code  # type: ignore[assignment]
    header.response_data.resp_reason = resp_reason  # type: ignore[assignment]
    # The judge reads the decision only; no certificate is looked at.
    gateway = cast(VerifiedCertificate, None)
    return AuthResult(data, authorization_pb2.AuthResBaggage(), gateway)


def test_an_auth_code_of_a_later_release_is_a_decline_by_its_bounded_name() -> None:
    judge = auth_judge(lambda index, response: _answered(LATER, LATER))
    assert judge(0, b"") == Verdict(outcome="declined: AuthCode 99 / RespReason 99")
    judge = auth_judge(
        lambda index, response: _answered(authorization_pb2.AUTH_CODE_APPROVED, LATER)
    )
    assert judge(0, b"") == Verdict(outcome="approved")


def test_a_signed_error_of_a_later_code_is_counted_by_its_bounded_name() -> None:
    def refused(index: int, response: Any) -> AuthResult:
        raise PeerError(LATER)

    assert auth_judge(refused)(0, b"") == Verdict(set_error="ErrorCode 99")
