"""Capture reversal, credit and credit reversal (SET-PROTOCOL.md 7.2).

    CapRevReq | CredReq | CredRevReq = EncB(M, P, CapRevOrCredReqData, CapTokenSeq)
    CapRevRes | CredRes | CredRevRes = Enc(P, M, CapRevOrCredResData)

The three requests share one signed structure and one content type; ``kind``, inside the
signed bytes, says which it is. Each RPC's opener accepts only its own kind, so a credit
the merchant signed cannot be presented as a capture reversal, and the merchant accepts
only a response of the kind it asked for.

Gateway openers check what ``setcore.capture`` checks for a CapReq (envelope, merchant,
RRTags, one token per item of this merchant and this authorization, for the TransIDs
authorized, amount in the token's currency and exponent). Whether the amounts are
possible and whether the request was seen before is the ledger's decision, answered with
CapRevOrCredCode.

Errors are setcore's, as listed in ``setcore.capture``, plus WRAPPER_MSG_MISMATCH for a
request or response of another kind than the RPC's, and DECODING_FAILURE for a reversal
item that does not name the capture or credit it undoes, or a credit item that names one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from setcore.capture import (
    CAP_TOKEN_SEQ_CT,
    ItemRef,
    ItemWithToken,
    check_batch_id,
    check_envelope_xid,
    check_item_amount,
    check_items_answered,
    check_one_per_item,
    merchant_rr_tags,
    open_gateway_sealed,
    open_item_tokens,
    seal_to_merchant,
)
from setcore.credentials import Credentials
from setcore.encoding import content_type_of, parse_strict
from setcore.envelope import Recipient
from setcore.error_message import open_gateway_error
from setcore.errors import ErrorCode, fail
from setcore.freshness import check_id, check_rrpid, new_id, now_ms
from setcore.gateway_exchange import (
    check_names_us,
    check_rr_tags,
    open_merchant_request,
    request_digest,
)
from setcore.link import seal_with_baggage
from setcore.pki.truststore import TrustStore
from setcore.pki.verified import VerifiedCertificate
from setcore.purchase import check_header_without_transaction, header
from setcore.signers import GatewayIdentity
from setcore.token_seal import TokenKey
from setpay.v1 import capture_pb2, common_pb2, error_pb2

CAP_REV_OR_CRED_REQ_CT = content_type_of(capture_pb2.CapRevOrCredReqData)
CAP_REV_OR_CRED_RES_CT = content_type_of(capture_pb2.CapRevOrCredResData)
CAPTURE_REVERSAL_REQUEST_CT = content_type_of(capture_pb2.CaptureReversalRequest)
CREDIT_REQUEST_CT = content_type_of(capture_pb2.CreditRequest)
CREDIT_REVERSAL_REQUEST_CT = content_type_of(capture_pb2.CreditReversalRequest)

CAPTURE_REVERSAL = capture_pb2.CAP_REV_OR_CRED_KIND_CAPTURE_REVERSAL
CREDIT = capture_pb2.CAP_REV_OR_CRED_KIND_CREDIT
CREDIT_REVERSAL = capture_pb2.CAP_REV_OR_CRED_KIND_CREDIT_REVERSAL


# --- merchant side: CapRevReq, CredReq, CredRevReq ----------------------------------


@dataclass(frozen=True)
class CapRevOrCredItem:
    """One capture to reverse or refund, or one credit to reverse, as the merchant holds it.

    ``original_rrpid`` names the request a reversal undoes: the capture (capture reversal)
    or the credit (credit reversal); a credit leaves it empty.
    """

    trans_ids: common_pb2.TransIDs
    auth_rrpid: bytes
    cap_token: bytes
    amount: common_pb2.CurrencyAmount
    new_batch_id: str = ""
    original_rrpid: bytes = b""

    def __repr__(self) -> str:
        return f"CapRevOrCredItem(xid={self.trans_ids.xid.hex()[:16]}..., {self.amount.amount})"


@dataclass(frozen=True)
class CapRevOrCredState:
    """What the merchant remembers to check the response against."""

    kind: int
    rrpid: bytes
    request_digest: bytes
    items: tuple[ItemRef, ...]


def _build_cap_rev_or_cred(
    credentials: Credentials,
    gateway: Recipient,
    kind: int,
    wire_type: str,
    items: Sequence[CapRevOrCredItem],
    merchant_id: str,
    rrpid: bytes | None,
) -> tuple[bytes, CapRevOrCredState]:
    rrpid = rrpid or new_id()
    data = capture_pb2.CapRevOrCredReqData(
        content_type=CAP_REV_OR_CRED_REQ_CT,
        kind=kind,  # type: ignore[arg-type]
        rr_tags=merchant_rr_tags(credentials, merchant_id, rrpid, gateway),
    )
    date = now_ms()
    for item in items:
        data.items.add(
            trans_ids=item.trans_ids, auth_rrpid=item.auth_rrpid, amount=item.amount,
            new_batch_id=item.new_batch_id, req_date_unix_ms=date,
            original_rrpid=item.original_rrpid,
        )  # fmt: skip
    tokens = capture_pb2.CapTokenSeq(cap_tokens=[item.cap_token for item in items])
    envelope = seal_with_baggage(
        credentials.backend, credentials.signature_key, credentials.signature_thumb,
        CAP_REV_OR_CRED_REQ_CT, data.SerializeToString(), CAP_TOKEN_SEQ_CT,
        tokens.SerializeToString(), gateway, rrpid=rrpid, bundle=credentials.bundle(),
    ).SerializeToString()  # fmt: skip
    refs = tuple(ItemRef(item.trans_ids.xid, item.auth_rrpid) for item in items)
    return envelope, CapRevOrCredState(kind, rrpid, request_digest(wire_type, envelope), refs)


def build_capture_reversal_request(
    credentials: Credentials,
    gateway: Recipient,
    items: Sequence[CapRevOrCredItem],
    merchant_id: str,
    *,
    rrpid: bytes | None = None,
) -> tuple[capture_pb2.CaptureReversalRequest, CapRevOrCredState]:
    """CapRevReq: undo captures (amount: how much of each capture to undo)."""
    envelope, state = _build_cap_rev_or_cred(
        credentials, gateway, CAPTURE_REVERSAL, CAPTURE_REVERSAL_REQUEST_CT, items, merchant_id,
        rrpid,
    )  # fmt: skip
    request = capture_pb2.CaptureReversalRequest(
        header=header(rrpid=state.rrpid), cap_rev_req=envelope
    )
    return request, state


def build_credit_request(
    credentials: Credentials,
    gateway: Recipient,
    items: Sequence[CapRevOrCredItem],
    merchant_id: str,
    *,
    rrpid: bytes | None = None,
) -> tuple[capture_pb2.CreditRequest, CapRevOrCredState]:
    """CredReq: refund captured amounts (amount: the refund of each item)."""
    envelope, state = _build_cap_rev_or_cred(
        credentials, gateway, CREDIT, CREDIT_REQUEST_CT, items, merchant_id, rrpid
    )
    return capture_pb2.CreditRequest(header=header(rrpid=state.rrpid), cred_req=envelope), state


def build_credit_reversal_request(
    credentials: Credentials,
    gateway: Recipient,
    items: Sequence[CapRevOrCredItem],
    merchant_id: str,
    *,
    rrpid: bytes | None = None,
) -> tuple[capture_pb2.CreditReversalRequest, CapRevOrCredState]:
    """CredRevReq: undo credits (each item names the credit request by ``original_rrpid``)."""
    envelope, state = _build_cap_rev_or_cred(
        credentials, gateway, CREDIT_REVERSAL, CREDIT_REVERSAL_REQUEST_CT, items, merchant_id,
        rrpid,
    )  # fmt: skip
    request = capture_pb2.CreditReversalRequest(
        header=header(rrpid=state.rrpid), cred_rev_req=envelope
    )
    return request, state


# --- gateway side: CapRevReq, CredReq, CredRevReq and their responses ---------------


@dataclass(frozen=True)
class VerifiedCapRevOrCredRequest:
    """A capture reversal, credit or credit reversal request, verified item by item."""

    data: capture_pb2.CapRevOrCredReqData
    merchant: VerifiedCertificate
    merchant_id: str
    merchant_kex: Recipient
    request_digest: bytes
    items: tuple[ItemWithToken[capture_pb2.CapRevOrCredReqItem], ...]

    @property
    def rrpid(self) -> bytes:
        """The RRPID of this request: the idempotency key."""
        return self.data.rr_tags.rrpid

    @property
    def kind(self) -> int:
        """CapRevOrCredKind: capture reversal, credit or credit reversal."""
        return self.data.kind


def _check_original(item: capture_pb2.CapRevOrCredReqItem, kind: int) -> None:
    # A reversal undoes one earlier request on the authorization: the capture (capture
    # reversal) or the credit (credit reversal) it names by RRPID. A credit names none.
    if kind == CREDIT:
        if item.original_rrpid:
            raise fail(ErrorCode.ERROR_CODE_DECODING_FAILURE, "a credit names no original")
    else:
        check_id(item.original_rrpid, "original RRPID")


def _open_cap_rev_or_cred(
    envelope_bytes: bytes,
    plain: common_pb2.Header,
    kind: int,
    wire_type: str,
    credentials: Credentials,
    trust: TrustStore,
    token_key: TokenKey,
    at: datetime | None,
    now: int | None,
) -> VerifiedCapRevOrCredRequest:
    t1, merchant, envelope, bundle = open_merchant_request(
        credentials, trust, envelope_bytes, CAP_REV_OR_CRED_REQ_CT, CAP_TOKEN_SEQ_CT, at=at
    )
    data = parse_strict(capture_pb2.CapRevOrCredReqData, t1)
    if data.kind != kind:
        raise fail(ErrorCode.ERROR_CODE_WRAPPER_MSG_MISMATCH, "request of another kind")
    check_envelope_xid(envelope.sealed, b"")
    merchant_id, kex = check_rr_tags(
        data.rr_tags, envelope, merchant, bundle, trust, at=at, now=now
    )
    check_header_without_transaction(plain, data.rr_tags.rrpid)
    items = open_item_tokens(token_key, envelope.baggage, data.items, merchant)
    for paired in items:
        check_item_amount(paired.item.amount, paired.token)
        check_batch_id(paired.item.new_batch_id)
        _check_original(paired.item, kind)
    return VerifiedCapRevOrCredRequest(
        data=data, merchant=merchant, merchant_id=merchant_id, merchant_kex=kex,
        request_digest=request_digest(wire_type, envelope_bytes), items=items,
    )  # fmt: skip


def open_capture_reversal_request(
    request: capture_pb2.CaptureReversalRequest,
    credentials: Credentials,
    trust: TrustStore,
    token_key: TokenKey,
    *,
    at: datetime | None = None,
    now: int | None = None,
) -> VerifiedCapRevOrCredRequest:
    """Verify a CapRevReq: as a CapReq, and the signed kind must be a capture reversal."""
    return _open_cap_rev_or_cred(
        request.cap_rev_req, request.header, CAPTURE_REVERSAL, CAPTURE_REVERSAL_REQUEST_CT,
        credentials, trust, token_key, at, now,
    )  # fmt: skip


def open_credit_request(
    request: capture_pb2.CreditRequest,
    credentials: Credentials,
    trust: TrustStore,
    token_key: TokenKey,
    *,
    at: datetime | None = None,
    now: int | None = None,
) -> VerifiedCapRevOrCredRequest:
    """Verify a CredReq: as a CapReq, and the signed kind must be a credit."""
    return _open_cap_rev_or_cred(
        request.cred_req, request.header, CREDIT, CREDIT_REQUEST_CT,
        credentials, trust, token_key, at, now,
    )  # fmt: skip


def open_credit_reversal_request(
    request: capture_pb2.CreditReversalRequest,
    credentials: Credentials,
    trust: TrustStore,
    token_key: TokenKey,
    *,
    at: datetime | None = None,
    now: int | None = None,
) -> VerifiedCapRevOrCredRequest:
    """Verify a CredRevReq: as a CapReq, the signed kind a credit reversal, credits named."""
    return _open_cap_rev_or_cred(
        request.cred_rev_req, request.header, CREDIT_REVERSAL, CREDIT_REVERSAL_REQUEST_CT,
        credentials, trust, token_key, at, now,
    )  # fmt: skip


@dataclass(frozen=True)
class CapRevOrCredDecision:
    """The gateway's result for one item, as the ledger decided it."""

    code: int
    actual_amt: common_pb2.CurrencyAmount
    batch_id: str = ""
    #: Where the transaction sits in ``batch_id`` (SET's BatchSequenceNum); 0: none.
    batch_sequence_num: int = 0


def build_cap_rev_or_cred_response(
    credentials: Credentials,
    request: VerifiedCapRevOrCredRequest,
    decisions: Sequence[CapRevOrCredDecision],
) -> bytes:
    """CapRevRes / CredRes / CredRevRes bytes (the request's kind), sealed to the merchant."""
    check_one_per_item(len(decisions), len(request.items))
    data = capture_pb2.CapRevOrCredResData(
        content_type=CAP_REV_OR_CRED_RES_CT,
        kind=request.kind,  # type: ignore[arg-type]
        rr_tags=request.data.rr_tags, merchant_cert_thumb=request.merchant.thumbprint,
        request_digest=request.request_digest,
    )  # fmt: skip
    for paired, decision in zip(request.items, decisions, strict=True):
        data.items.add(
            trans_ids=paired.item.trans_ids, auth_rrpid=paired.item.auth_rrpid,
            code=decision.code,
            actual_amt=decision.actual_amt, batch_id=decision.batch_id,
            batch_sequence_num=decision.batch_sequence_num,
        )  # fmt: skip
    return seal_to_merchant(
        credentials, CAP_REV_OR_CRED_RES_CT, data.SerializeToString(), request.merchant_kex,
        rrpid=request.rrpid,
    )  # fmt: skip


# --- merchant side: the responses ---------------------------------------------------


@dataclass(frozen=True)
class CapRevOrCredResult:
    """A verified CapRevRes, CredRes or CredRevRes: the gateway's result for each item."""

    data: capture_pb2.CapRevOrCredResData
    gateway: VerifiedCertificate

    @property
    def items(self) -> Sequence[capture_pb2.CapRevOrCredResItem]:
        """The per-item results, in request order."""
        return self.data.items


def _open_cap_rev_or_cred_response(
    kind: int,
    error: error_pb2.SetError | None,
    plain: common_pb2.Header,
    sealed_bytes: bytes,
    credentials: Credentials,
    state: CapRevOrCredState,
    trust: TrustStore,
    gateway_identity: GatewayIdentity,
) -> CapRevOrCredResult:
    if state.kind != kind:
        raise ValueError("this state belongs to a request of another kind")
    if error is not None:
        raise open_gateway_error(
            error, trust, gateway_identity, rrpid=state.rrpid, request=state.request_digest
        )
    t1, gateway = open_gateway_sealed(
        credentials, trust, sealed_bytes, CAP_REV_OR_CRED_RES_CT, rrpid=state.rrpid,
        gateway_identity=gateway_identity,
    )  # fmt: skip
    data = parse_strict(capture_pb2.CapRevOrCredResData, t1)
    check_header_without_transaction(plain, data.rr_tags.rrpid)
    check_rrpid(state.rrpid, data.rr_tags.rrpid)
    if data.kind != kind:
        raise fail(ErrorCode.ERROR_CODE_WRAPPER_MSG_MISMATCH, "response of another kind")
    check_names_us(credentials, data.merchant_cert_thumb, data.request_digest, state.request_digest)
    check_items_answered(state.items, [ItemRef(i.trans_ids.xid, i.auth_rrpid) for i in data.items])
    return CapRevOrCredResult(data, gateway)


def open_capture_reversal_response(
    response: capture_pb2.CaptureReversalResponse,
    credentials: Credentials,
    state: CapRevOrCredState,
    trust: TrustStore,
    *,
    gateway_identity: GatewayIdentity,
) -> CapRevOrCredResult:
    """Verify CapRevRes: gateway, our RRPID, the kind, our name, our request, our items.

    ``gateway_identity`` as for ``authorization.open_auth_response``.
    """
    error = response.error if response.WhichOneof("result") == "error" else None
    return _open_cap_rev_or_cred_response(
        CAPTURE_REVERSAL, error, response.header, response.cap_rev_res, credentials, state,
        trust, gateway_identity,
    )  # fmt: skip


def open_credit_response(
    response: capture_pb2.CreditResponse,
    credentials: Credentials,
    state: CapRevOrCredState,
    trust: TrustStore,
    *,
    gateway_identity: GatewayIdentity,
) -> CapRevOrCredResult:
    """Verify CredRes: gateway, our RRPID, the kind, our name, our request, our items.

    ``gateway_identity`` as for ``authorization.open_auth_response``.
    """
    error = response.error if response.WhichOneof("result") == "error" else None
    return _open_cap_rev_or_cred_response(
        CREDIT, error, response.header, response.cred_res, credentials, state, trust,
        gateway_identity,
    )  # fmt: skip


def open_credit_reversal_response(
    response: capture_pb2.CreditReversalResponse,
    credentials: Credentials,
    state: CapRevOrCredState,
    trust: TrustStore,
    *,
    gateway_identity: GatewayIdentity,
) -> CapRevOrCredResult:
    """Verify CredRevRes: gateway, our RRPID, the kind, our name, our request, our items.

    ``gateway_identity`` as for ``authorization.open_auth_response``.
    """
    error = response.error if response.WhichOneof("result") == "error" else None
    return _open_cap_rev_or_cred_response(
        CREDIT_REVERSAL, error, response.header, response.cred_rev_res, credentials, state,
        trust, gateway_identity,
    )  # fmt: skip
