"""Authorization reversal: the merchant lowers or cancels an authorization (SET-PROTOCOL.md 6.5).

    AuthRevReq = EncB(M, P, AuthRevReqData, the capture token)
    AuthRevRes = EncB(P, M, AuthRevResData, AuthRevResBaggage{cap_token_new})

The gateway's opener checks what ``setcore.capture`` checks for a CapReq (envelope,
merchant, RRTags, the token is this merchant's and this authorization's, for the
TransIDs authorized, the amount in the token's currency and exponent); the request
carries one token, and its new amount may be zero (a full reversal). Whether the amount
is possible and whether the request was seen before is the ledger's decision, answered
with AuthRevCode. The response carries a capture token reissued for the new amount. Its
AuthNewAmt is what stands authorized after the decision: the new amount when approved;
when refused, what the authorization still stands at, which an earlier reversal may have
made smaller than the token's amount.

Errors are setcore's, as listed in ``setcore.capture``, plus DECODING_FAILURE for a
negative new amount.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import datetime

from setcore.amount import check_amount, same_unit
from setcore.authorization import CAP_TOKEN_CT, open_cap_token, seal_cap_token
from setcore.capture import (
    check_envelope_xid,
    check_token_is_for,
    merchant_rr_tags,
)
from setcore.credentials import Credentials
from setcore.encoding import content_type_of, parse_strict
from setcore.envelope import Recipient
from setcore.error_message import open_gateway_error
from setcore.errors import ErrorCode, fail
from setcore.freshness import check_id, check_rrpid, new_id
from setcore.gateway_exchange import (
    check_names_us,
    check_rr_tags,
    open_gateway_response,
    open_merchant_request,
    request_digest,
)
from setcore.link import seal_with_baggage
from setcore.pki.truststore import TrustStore
from setcore.pki.verified import VerifiedCertificate
from setcore.purchase import check_header, header
from setcore.signers import GatewayIdentity
from setcore.token_seal import TokenKey
from setpay.v1 import authorization_pb2, common_pb2

AUTH_REV_REQ_CT = content_type_of(authorization_pb2.AuthRevReqData)
AUTH_REV_RES_CT = content_type_of(authorization_pb2.AuthRevResData)
AUTH_REV_RES_BAGGAGE_CT = content_type_of(authorization_pb2.AuthRevResBaggage)
AUTH_REVERSAL_REQUEST_CT = content_type_of(authorization_pb2.AuthReversalRequest)


# --- merchant side: AuthRevReq -----------------------------------------------------


@dataclass(frozen=True)
class AuthRevRequestState:
    """What the merchant remembers to check the AuthRevRes against."""

    rrpid: bytes
    xid: bytes
    request_digest: bytes


def build_auth_reversal_request(
    credentials: Credentials,
    gateway: Recipient,
    trans_ids: common_pb2.TransIDs,
    auth_rrpid: bytes,
    cap_token: bytes,
    auth_new_amt: common_pb2.CurrencyAmount,
    merchant_id: str,
    *,
    rrpid: bytes | None = None,
) -> tuple[authorization_pb2.AuthReversalRequest, AuthRevRequestState]:
    """AuthRevReq: the amount that stays authorized (0: all of it is released), token as baggage."""
    rrpid = rrpid or new_id()
    data = authorization_pb2.AuthRevReqData(
        content_type=AUTH_REV_REQ_CT,
        auth_rev_rr_tags=merchant_rr_tags(credentials, merchant_id, rrpid, gateway),
        trans_ids=trans_ids, auth_rrpid=auth_rrpid, auth_new_amt=auth_new_amt,
    ).SerializeToString()  # fmt: skip
    envelope = seal_with_baggage(
        credentials.backend, credentials.signature_key, credentials.signature_thumb,
        AUTH_REV_REQ_CT, data, CAP_TOKEN_CT, cap_token, gateway,
        xid=trans_ids.xid, rrpid=rrpid, bundle=credentials.bundle(),
    ).SerializeToString()  # fmt: skip
    request = authorization_pb2.AuthReversalRequest(
        header=header(rrpid=rrpid, xid=trans_ids.xid, lid_m=trans_ids.lid_m),
        auth_rev_req=envelope,
    )
    digest = request_digest(AUTH_REVERSAL_REQUEST_CT, envelope)
    return request, AuthRevRequestState(rrpid, trans_ids.xid, digest)


# --- gateway side: AuthRevReq and AuthRevRes ---------------------------------------


@dataclass(frozen=True)
class VerifiedAuthRevRequest:
    """An AuthRevReq whose envelope, merchant, ids and capture token have been verified."""

    data: authorization_pb2.AuthRevReqData
    merchant: VerifiedCertificate
    merchant_id: str
    merchant_kex: Recipient
    request_digest: bytes
    cap_token: authorization_pb2.CapTokenData

    @property
    def rrpid(self) -> bytes:
        """The RRPID of this request: the idempotency key."""
        return self.data.auth_rev_rr_tags.rrpid

    @property
    def xid(self) -> bytes:
        """The transaction whose authorization is reversed."""
        return self.data.trans_ids.xid


def _check_new_amount(
    amount: common_pb2.CurrencyAmount, token: authorization_pb2.CapTokenData
) -> None:
    # Zero is a full reversal; anything above the authorized amount is the ledger's
    # AUTH_REV_CODE_INVALID_AMOUNT, a business answer.
    check_amount(amount, allow_zero=True)
    if not same_unit(amount, token.auth_amt):
        raise fail(
            ErrorCode.ERROR_CODE_DECODING_FAILURE, "currency or exponent differs from the token's"
        )


def open_auth_reversal_request(
    request: authorization_pb2.AuthReversalRequest,
    credentials: Credentials,
    trust: TrustStore,
    token_key: TokenKey,
    *,
    at: datetime | None = None,
    now: int | None = None,
) -> VerifiedAuthRevRequest:
    """Verify an AuthRevReq: envelope, merchant, RRTags, and the token of this authorization."""
    t1, merchant, envelope, bundle = open_merchant_request(
        credentials, trust, request.auth_rev_req, AUTH_REV_REQ_CT, CAP_TOKEN_CT, at=at
    )
    data = parse_strict(authorization_pb2.AuthRevReqData, t1)
    tags = data.auth_rev_rr_tags
    check_id(data.trans_ids.xid, "XID")
    check_envelope_xid(envelope.sealed, data.trans_ids.xid)
    merchant_id, kex = check_rr_tags(tags, envelope, merchant, bundle, trust, at=at, now=now)
    ids = data.trans_ids
    check_header(request.header, tags.rrpid, ids.xid, lid_c=ids.lid_c, lid_m=ids.lid_m)
    token = open_cap_token(token_key, envelope.baggage, merchant=merchant)
    check_token_is_for(token, data.trans_ids, data.auth_rrpid)
    _check_new_amount(data.auth_new_amt, token)
    return VerifiedAuthRevRequest(
        data=data, merchant=merchant, merchant_id=merchant_id, merchant_kex=kex,
        request_digest=request_digest(AUTH_REVERSAL_REQUEST_CT, request.auth_rev_req),
        cap_token=token,
    )  # fmt: skip


def reissue_cap_token(
    token_key: TokenKey, request: VerifiedAuthRevRequest, *, hold_id: str | None = None
) -> bytes:
    """A new capture token for the amount that stays authorized after a partial reversal.

    A copy of the token presented but for amount, date and hold: its TransIDs digest too,
    which the request's TransIDs matched. A token sealed before the digest was written
    stays without one: the request's ids were not checked against the authorization's,
    and sealing them in would bind ids the cardholder never signed.
    """
    data = authorization_pb2.CapTokenData()
    data.CopyFrom(request.cap_token)
    data.auth_amt.CopyFrom(request.data.auth_new_amt)
    data.issued_unix_ms = request.data.auth_rev_rr_tags.date_unix_ms
    if hold_id is not None:
        data.hold_id = hold_id
    return seal_cap_token(token_key, data)


@dataclass(frozen=True)
class AuthRevDecision:
    """The gateway's answer to put in AuthRevRes, as the ledger decided it."""

    auth_rev_code: int
    #: What stands authorized after the decision (approved or not), never a figure
    #: copied from the request's capture token.
    auth_new_amt: common_pb2.CurrencyAmount
    cap_token_new: bytes = b""


def build_auth_reversal_response(
    credentials: Credentials, request: VerifiedAuthRevRequest, decision: AuthRevDecision
) -> bytes:
    """AuthRevRes bytes: signed, naming merchant and request, new token as baggage."""
    data = authorization_pb2.AuthRevResData(
        content_type=AUTH_REV_RES_CT, auth_rev_rr_tags=request.data.auth_rev_rr_tags,
        trans_ids=request.data.trans_ids, merchant_cert_thumb=request.merchant.thumbprint,
        request_digest=request.request_digest,
        auth_rev_code=decision.auth_rev_code,  # type: ignore[arg-type]
        auth_new_amt=decision.auth_new_amt, pe_thumb=credentials.key_exchange_thumb or b"",
    ).SerializeToString()  # fmt: skip
    baggage = authorization_pb2.AuthRevResBaggage(cap_token_new=decision.cap_token_new)
    envelope = seal_with_baggage(
        credentials.backend, credentials.signature_key, credentials.signature_thumb,
        AUTH_REV_RES_CT, data, AUTH_REV_RES_BAGGAGE_CT, baggage.SerializeToString(),
        request.merchant_kex, xid=request.xid, rrpid=request.rrpid, bundle=credentials.bundle(),
    )  # fmt: skip
    return envelope.SerializeToString()


# --- merchant side: AuthRevRes ------------------------------------------------------


@dataclass(frozen=True)
class AuthRevResult:
    """A verified AuthRevRes: the gateway's signed answer and the new capture token."""

    data: authorization_pb2.AuthRevResData
    baggage: authorization_pb2.AuthRevResBaggage
    gateway: VerifiedCertificate

    @property
    def auth_rev_code(self) -> int:
        """The AuthRevCode of the answer."""
        return self.data.auth_rev_code


def open_auth_reversal_response(
    response: authorization_pb2.AuthReversalResponse,
    credentials: Credentials,
    state: AuthRevRequestState,
    trust: TrustStore,
    *,
    gateway_identity: GatewayIdentity,
) -> AuthRevResult:
    """Verify AuthRevRes: gateway signature and chain, our RRPID, our name, our request.

    ``gateway_identity`` as for ``authorization.open_auth_response``.
    """
    if response.WhichOneof("result") == "error":
        raise open_gateway_error(
            response.error, trust, gateway_identity, rrpid=state.rrpid, request=state.request_digest
        )
    t1, envelope, gateway = open_gateway_response(
        credentials, trust, response.auth_rev_res, AUTH_REV_RES_CT, AUTH_REV_RES_BAGGAGE_CT,
        xid=state.xid, rrpid=state.rrpid, gateway_identity=gateway_identity,
    )  # fmt: skip
    data = parse_strict(authorization_pb2.AuthRevResData, t1)
    ids = data.trans_ids
    check_header(
        response.header, data.auth_rev_rr_tags.rrpid, ids.xid, lid_c=ids.lid_c, lid_m=ids.lid_m
    )
    check_rrpid(state.rrpid, data.auth_rev_rr_tags.rrpid)
    check_names_us(credentials, data.merchant_cert_thumb, data.request_digest, state.request_digest)
    if not hmac.compare_digest(data.trans_ids.xid, state.xid):
        raise fail(ErrorCode.ERROR_CODE_UNKNOWN_XID, "AuthRevRes is for another transaction")
    baggage = parse_strict(authorization_pb2.AuthRevResBaggage, envelope.baggage)
    return AuthRevResult(data, baggage, gateway)
