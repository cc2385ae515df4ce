"""Capture messages: CapReq from the merchant, CapRes from the gateway (SET-PROTOCOL.md 7.1).

    CapReq = EncB(M, P, CapReqData, CapTokenSeq)    one capture token per item, same order
    CapRes = Enc(P, M, CapResData)                  sealed to RRTags.response_cert_thumb

The gateway's opener runs, in order: the envelope, the merchant's signature and chain and
the link to exactly the token sequence carried (``gateway_exchange.open_merchant_request``);
the ids, the gateway certificate named, date, merchant id and response key
(``gateway_exchange.check_rr_tags``); then each item against its token
(``open_item_tokens``): one token per item, sealed by this gateway, of this merchant, for
the item's XID and authorization RRPID and for its whole TransIDs as authorized
(``check_token_is_for``); the amount positive and in the token's currency.
How much may be captured and whether a request was seen before is the ledger's decision,
reported per item as a CapCode, never as an Error.

The merchant's opener checks the gateway's signature and chain, that the answer names
this merchant and the exact request sent (fix of SET-PROTOCOL.md 9.3.2), and that it
answers every item, in order.

The item/token pairing, the Enc openers and the small checks below are shared with
``setcore.auth_reversal``, ``setcore.cap_rev_or_cred`` and ``setcore.gateway_admin``.

Errors are setcore's (``setcore.errors``): ``ProtocolError`` with, besides the codes of
the containers and the PKI,

    DECODING_FAILURE      no items; token count differs from item count; an empty token;
                          a non-positive amount, one with an exponent outside ISO 4217's
                          or in another currency or exponent than the token's; an
                          oversize batch id; a response with another item count
    MESSAGE_TOO_BIG       more than MAX_ITEMS items
    MERCHANT_MISMATCH     a token of another merchant; a response naming another merchant
    WRONG_RECIPIENT       a request signed naming no gateway certificate, or another than
                          the one it is sealed to
    UNKNOWN_XID           a token or response item for another transaction
    UNKNOWN_RRPID         a token or response item for another authorization; a response
                          to another request
    UNKNOWN_LID           an item whose TransIDs (LID-C, LID-M, PReqDate, language...)
                          differ from those its authorization was granted for
    WRAPPER_MSG_MISMATCH  the plaintext header or the envelope ids differ from the signed ones
    DIGEST_MISMATCH       baggage that is not the signed one; a response to other bytes
    MESSAGE_TOO_OLD/_NEW  a request date outside the freshness window

and ``PeerError`` when the gateway answered with a SET Error.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

from setcore.amount import check_amount, same_unit
from setcore.authorization import open_cap_token
from setcore.credentials import Credentials
from setcore.encoding import content_type_of, digest_parts, parse_strict
from setcore.envelope import Recipient
from setcore.error_message import open_gateway_error
from setcore.errors import ErrorCode, fail
from setcore.freshness import check_rrpid, new_id, now_ms
from setcore.gateway_exchange import (
    check_names_us,
    check_rr_tags,
    open_merchant_request,
    request_digest,
)
from setcore.link import open_sealed_signed, seal_signed, seal_with_baggage
from setcore.pki.roles import MERCHANT
from setcore.pki.truststore import TrustStore
from setcore.pki.verified import VerifiedCertificate
from setcore.purchase import check_header_without_transaction, header
from setcore.signers import GatewayIdentity, gateway_signer, signer
from setcore.token_seal import TokenKey
from setpay.v1 import authorization_pb2, capture_pb2, common_pb2, crypto_pb2

CAP_REQ_CT = content_type_of(capture_pb2.CapReqData)
CAP_RES_CT = content_type_of(capture_pb2.CapResData)
CAP_TOKEN_SEQ_CT = content_type_of(capture_pb2.CapTokenSeq)
CAPTURE_REQUEST_CT = content_type_of(capture_pb2.CaptureRequest)
TRANS_IDS_CT = content_type_of(common_pb2.TransIDs)

# Each item costs the gateway a token opening (a key derivation and an AES-GCM open under
# the per-process token key, ``setcore.token_seal``) and a ledger posting; 100 bounds the
# work one request can ask for. A merchant with a larger batch sends several requests.
MAX_ITEMS = 100
# Batch ids are chosen by merchant or gateway and stored by the ledger with every capture;
# 64 characters hold any acquirer's batch reference and keep a peer from bloating rows.
MAX_BATCH_ID_CHARS = 64

ItemT = TypeVar("ItemT", capture_pb2.CapItem, capture_pb2.CapRevOrCredReqItem)


# --- shared: ids, envelopes, tokens -------------------------------------------------


@dataclass(frozen=True)
class ItemRef:
    """Which authorization an item is about: its transaction and the AuthReq's RRPID."""

    xid: bytes
    auth_rrpid: bytes


@dataclass(frozen=True)
class ItemWithToken(Generic[ItemT]):
    """A request item with the capture token the gateway opened for it."""

    item: ItemT
    token: authorization_pb2.CapTokenData


def merchant_rr_tags(
    credentials: Credentials, merchant_id: str, rrpid: bytes, gateway: Recipient | None
) -> common_pb2.RRTags:
    """RRTags of a merchant request sealed to ``gateway``: naming the gateway certificate it
    is sealed to and the merchant's key-exchange key for the answer (neither for None: a
    PCertReq, signed only)."""
    tags = common_pb2.RRTags(
        rrpid=rrpid,
        mer_term_ids=common_pb2.MerTermIDs(merchant_id=merchant_id),
        date_unix_ms=now_ms(),
    )
    if gateway is not None:
        tags.response_cert_thumb = credentials.require_key_exchange()[1]
        tags.recipient_cert_thumb = gateway.cert_thumb
    return tags


def check_envelope_xid(sealed: crypto_pb2.Sealed, xid: bytes) -> None:
    """The XID an envelope is bound to must be the signed one (none for item sequences)."""
    if sealed.xid != xid:
        raise fail(ErrorCode.ERROR_CODE_WRAPPER_MSG_MISMATCH, "envelope XID differs")


def check_batch_id(batch_id: str) -> None:
    """Refuse a batch id longer than MAX_BATCH_ID_CHARS."""
    if len(batch_id) > MAX_BATCH_ID_CHARS:
        raise fail(ErrorCode.ERROR_CODE_DECODING_FAILURE, "batch id too long")


def trans_ids_digest(ids: common_pb2.TransIDs) -> bytes:
    """DD* of every TransIDs field: what a capture token binds of the ids authorized.

    The gateway seals it into the token (``CapTokenData.trans_ids_digest``) over the
    TransIDs it checked against the cardholder's signed PI, and compares it with each
    item's (``check_token_is_for``). Field by field in field-number order, each
    length-prefixed, rather than the protobuf serialization: a token outlives the process
    that sealed it, so its digest must not depend on a protobuf library's layout. A field
    added to TransIDs is added here (a test sets each field and sees the digest change).
    """
    date = ids.preq_date_unix_ms.to_bytes(8, "big", signed=True)
    texts = (ids.pay_sys_id.encode("utf-8"), ids.language.encode("utf-8"))
    return digest_parts(TRANS_IDS_CT, (ids.lid_c, ids.lid_m, ids.xid, date, *texts))


def check_token_is_for(
    token: authorization_pb2.CapTokenData, trans_ids: common_pb2.TransIDs, auth_rrpid: bytes
) -> None:
    """A capture token must be the one issued for this transaction and authorization, and
    the request must name the transaction by the very ids it was authorized under.

    The gateway's answer repeats the request's TransIDs under its signature; without the
    last check it would vouch for an LID-M, PReqDate or language it never authorized
    (another order's LID-M, say). A SET Error for the whole request, like another XID or
    RRPID: the request is wrong about the authorization, which is no business outcome for
    the ledger to decide per item, and nothing is stored or signed for it. UNKNOWN_LID:
    the XID agrees, so what differs is how the merchant labels the transaction. A token
    sealed before the digest was written carries none and binds the XID alone: such
    tokens stay good for as long as their authorizations are outstanding.
    """
    if not hmac.compare_digest(token.xid, trans_ids.xid):
        raise fail(ErrorCode.ERROR_CODE_UNKNOWN_XID, "capture token of another transaction")
    if not hmac.compare_digest(token.auth_rrpid, auth_rrpid):
        raise fail(ErrorCode.ERROR_CODE_UNKNOWN_RRPID, "capture token of another authorization")
    if token.trans_ids_digest and not hmac.compare_digest(
        token.trans_ids_digest, trans_ids_digest(trans_ids)
    ):
        raise fail(ErrorCode.ERROR_CODE_UNKNOWN_LID, "TransIDs differ from the authorization's")


def check_item_amount(
    amount: common_pb2.CurrencyAmount, token: authorization_pb2.CapTokenData
) -> None:
    """An item's amount is positive and in the currency and exponent of the authorization."""
    check_amount(amount)
    if not same_unit(amount, token.auth_amt):
        raise fail(
            ErrorCode.ERROR_CODE_DECODING_FAILURE, "currency or exponent differs from the token's"
        )


def open_item_tokens(
    token_key: TokenKey,
    baggage: bytes,
    items: Sequence[ItemT],
    merchant: VerifiedCertificate,
) -> tuple[ItemWithToken[ItemT], ...]:
    """Open the CapTokenSeq baggage and pair each token with its item, checking each pair."""
    if not items:
        raise fail(ErrorCode.ERROR_CODE_DECODING_FAILURE, "request has no items")
    if len(items) > MAX_ITEMS:
        raise fail(ErrorCode.ERROR_CODE_MESSAGE_TOO_BIG, f"more than {MAX_ITEMS} items")
    tokens = parse_strict(capture_pb2.CapTokenSeq, baggage).cap_tokens
    if len(tokens) != len(items):
        raise fail(ErrorCode.ERROR_CODE_DECODING_FAILURE, "one capture token per item expected")
    paired = []
    for item, token in zip(items, tokens, strict=True):
        data = open_cap_token(token_key, token, merchant=merchant)
        check_token_is_for(data, item.trans_ids, item.auth_rrpid)
        paired.append(ItemWithToken(item, data))
    return tuple(paired)


def check_items_answered(sent: Sequence[ItemRef], answered: Sequence[ItemRef]) -> None:
    """A response answers every item of the request, in the request's order."""
    if len(sent) != len(answered):
        raise fail(ErrorCode.ERROR_CODE_DECODING_FAILURE, "response item count differs")
    for mine, theirs in zip(sent, answered, strict=True):
        if not hmac.compare_digest(mine.xid, theirs.xid):
            raise fail(ErrorCode.ERROR_CODE_UNKNOWN_XID, "response item for another transaction")
        if not hmac.compare_digest(mine.auth_rrpid, theirs.auth_rrpid):
            raise fail(ErrorCode.ERROR_CODE_UNKNOWN_RRPID, "response item for another auth")


def check_one_per_item(results: int, items: int) -> None:
    """A gateway answers each item exactly once (a caller bug otherwise, not a peer's)."""
    if results != items:
        raise ValueError(f"{results} results for {items} items")


def peek_sealed_rrpid(request_bytes: bytes) -> bytes:
    """The RRPID an Enc request claims in clear (for idempotency lookups before opening).

    Unauthenticated, like ``gateway_exchange.peek_rrpid``: it only selects a stored response,
    which is returned only for the same request bytes.
    """
    return parse_strict(crypto_pb2.Sealed, request_bytes, own_content_type=False).rrpid


def open_merchant_sealed(
    credentials: Credentials,
    trust: TrustStore,
    sealed_bytes: bytes,
    content_type: str,
    *,
    at: datetime | None = None,
) -> tuple[bytes, VerifiedCertificate, crypto_pb2.Sealed, crypto_pb2.CertBundle]:
    """Open an Enc request from a merchant: its signed t, the merchant, the envelope, bundle.

    Opened with the key-exchange key ``credentials`` choose for the certificate it is
    sealed to (``Credentials.key_exchange_for``).
    """
    sealed = parse_strict(crypto_pb2.Sealed, sealed_bytes, own_content_type=False)
    kex_key, my_thumb = credentials.key_exchange_for(sealed.recipient_cert_thumb)
    verified, _ = open_sealed_signed(
        sealed, credentials.backend, kex_key, my_thumb, content_type,
        signer(trust, MERCHANT, at=at),
    )  # fmt: skip
    return verified.tbs, verified.signer, sealed, verified.signed.bundle


def seal_to_merchant(
    credentials: Credentials,
    content_type: str,
    tbs: bytes,
    merchant_kex: Recipient,
    *,
    rrpid: bytes,
    xid: bytes = b"",
) -> bytes:
    """Enc(P, M, t): the gateway signs ``tbs`` and seals it to the merchant's key."""
    sealed = seal_signed(
        credentials.backend, credentials.signature_key, credentials.signature_thumb,
        content_type, tbs, merchant_kex, xid=xid, rrpid=rrpid, bundle=credentials.bundle(),
    )  # fmt: skip
    return sealed.SerializeToString()


def open_gateway_sealed(
    credentials: Credentials,
    trust: TrustStore,
    sealed_bytes: bytes,
    content_type: str,
    *,
    rrpid: bytes,
    xid: bytes = b"",
    gateway_identity: GatewayIdentity,
) -> tuple[bytes, VerifiedCertificate]:
    """Open an Enc response from the gateway: its signed t and the gateway.

    Signed by a certificate of ``gateway_identity`` only (``signers.gateway_signer``).
    Opened with the key-exchange key of the certificate it is sealed to, as
    ``credentials`` choose it (``Credentials.key_exchange_for``): the one the request
    named, which may be a key the merchant has renewed since it stored the request.
    """
    sealed = parse_strict(crypto_pb2.Sealed, sealed_bytes, own_content_type=False)
    kex_key, my_thumb = credentials.key_exchange_for(sealed.recipient_cert_thumb)
    verified, _ = open_sealed_signed(
        sealed, credentials.backend, kex_key, my_thumb, content_type,
        gateway_signer(trust, gateway_identity), xid=xid, rrpid=rrpid,
    )  # fmt: skip
    return verified.tbs, verified.signer


# --- merchant side: CapReq ----------------------------------------------------------


@dataclass(frozen=True)
class CaptureItem:
    """One authorization to capture, as the merchant holds it after AuthRes."""

    trans_ids: common_pb2.TransIDs
    auth_rrpid: bytes
    cap_token: bytes
    amount: common_pb2.CurrencyAmount
    sale_detail: authorization_pb2.SaleDetail | None = None

    def __repr__(self) -> str:
        return f"CaptureItem(xid={self.trans_ids.xid.hex()[:16]}..., {self.amount.amount})"


@dataclass(frozen=True)
class CaptureState:
    """What the merchant remembers to check the CapRes against."""

    rrpid: bytes
    request_digest: bytes
    items: tuple[ItemRef, ...]


def build_capture_request(
    credentials: Credentials,
    gateway: Recipient,
    items: Sequence[CaptureItem],
    merchant_id: str,
    *,
    cap_date_unix_ms: int | None = None,
    rrpid: bytes | None = None,
) -> tuple[capture_pb2.CaptureRequest, CaptureState]:
    """CapReq: the merchant's signed capture items, sealed to the gateway, tokens as baggage."""
    rrpid = rrpid or new_id()
    cap_date = now_ms() if cap_date_unix_ms is None else cap_date_unix_ms
    data = capture_pb2.CapReqData(
        content_type=CAP_REQ_CT,
        cap_rr_tags=merchant_rr_tags(credentials, merchant_id, rrpid, gateway),
    )
    for item in items:
        payload = capture_pb2.CapPayload(cap_date_unix_ms=cap_date, cap_req_amt=item.amount)
        if item.sale_detail is not None:
            payload.sale_detail.CopyFrom(item.sale_detail)
        data.cap_items.add(
            trans_ids=item.trans_ids, auth_rrpid=item.auth_rrpid, cap_payload=payload
        )
    tokens = capture_pb2.CapTokenSeq(cap_tokens=[item.cap_token for item in items])
    envelope = seal_with_baggage(
        credentials.backend, credentials.signature_key, credentials.signature_thumb,
        CAP_REQ_CT, data.SerializeToString(), CAP_TOKEN_SEQ_CT, tokens.SerializeToString(),
        gateway, rrpid=rrpid, bundle=credentials.bundle(),
    ).SerializeToString()  # fmt: skip
    request = capture_pb2.CaptureRequest(header=header(rrpid=rrpid), cap_req=envelope)
    refs = tuple(ItemRef(item.trans_ids.xid, item.auth_rrpid) for item in items)
    return request, CaptureState(rrpid, request_digest(CAPTURE_REQUEST_CT, envelope), refs)


# --- gateway side: CapReq and CapRes ------------------------------------------------


@dataclass(frozen=True)
class VerifiedCaptureRequest:
    """A CapReq whose envelope, merchant, ids and capture tokens have been verified."""

    data: capture_pb2.CapReqData
    merchant: VerifiedCertificate
    merchant_id: str
    merchant_kex: Recipient
    request_digest: bytes
    items: tuple[ItemWithToken[capture_pb2.CapItem], ...]

    @property
    def rrpid(self) -> bytes:
        """The RRPID of this request: the idempotency key."""
        return self.data.cap_rr_tags.rrpid


def open_capture_request(
    request: capture_pb2.CaptureRequest,
    credentials: Credentials,
    trust: TrustStore,
    token_key: TokenKey,
    *,
    at: datetime | None = None,
    now: int | None = None,
) -> VerifiedCaptureRequest:
    """Verify a CapReq: envelope, merchant, RRTags, then every item against its token."""
    t1, merchant, envelope, bundle = open_merchant_request(
        credentials, trust, request.cap_req, CAP_REQ_CT, CAP_TOKEN_SEQ_CT, at=at
    )
    data = parse_strict(capture_pb2.CapReqData, t1)
    tags = data.cap_rr_tags
    check_envelope_xid(envelope.sealed, b"")
    merchant_id, kex = check_rr_tags(tags, envelope, merchant, bundle, trust, at=at, now=now)
    check_header_without_transaction(request.header, tags.rrpid)
    items = open_item_tokens(token_key, envelope.baggage, data.cap_items, merchant)
    for paired in items:
        payload = paired.item.cap_payload
        check_item_amount(payload.cap_req_amt, paired.token)
        check_batch_id(payload.sale_detail.batch_id)
    return VerifiedCaptureRequest(
        data=data, merchant=merchant, merchant_id=merchant_id, merchant_kex=kex,
        request_digest=request_digest(CAPTURE_REQUEST_CT, request.cap_req), items=items,
    )  # fmt: skip


@dataclass(frozen=True)
class CaptureDecision:
    """The gateway's result for one capture item, as the ledger decided it."""

    cap_code: authorization_pb2.CapCode
    cap_amt: common_pb2.CurrencyAmount
    batch_id: str = ""
    batch_sequence_num: int = 0


def build_capture_response(
    credentials: Credentials,
    request: VerifiedCaptureRequest,
    decisions: Sequence[CaptureDecision],
) -> bytes:
    """CapRes bytes: one result per item, naming merchant and request, sealed to the merchant."""
    check_one_per_item(len(decisions), len(request.items))
    data = capture_pb2.CapResData(
        content_type=CAP_RES_CT, cap_rr_tags=request.data.cap_rr_tags,
        merchant_cert_thumb=request.merchant.thumbprint, request_digest=request.request_digest,
    )  # fmt: skip
    for paired, decision in zip(request.items, decisions, strict=True):
        data.cap_res_items.add(
            trans_ids=paired.item.trans_ids,
            auth_rrpid=paired.item.auth_rrpid,
            cap_res_payload=authorization_pb2.CapResPayload(
                cap_code=decision.cap_code, cap_amt=decision.cap_amt,
                batch_id=decision.batch_id, batch_sequence_num=decision.batch_sequence_num,
            ),
        )  # fmt: skip
    return seal_to_merchant(
        credentials, CAP_RES_CT, data.SerializeToString(), request.merchant_kex, rrpid=request.rrpid
    )


# --- merchant side: CapRes ----------------------------------------------------------


@dataclass(frozen=True)
class CaptureResult:
    """A verified CapRes: the gateway's signed result for each item, in request order."""

    data: capture_pb2.CapResData
    gateway: VerifiedCertificate

    @property
    def items(self) -> Sequence[capture_pb2.CapResItem]:
        """The per-item results."""
        return self.data.cap_res_items


def open_capture_response(
    response: capture_pb2.CaptureResponse,
    credentials: Credentials,
    state: CaptureState,
    trust: TrustStore,
    *,
    gateway_identity: GatewayIdentity,
) -> CaptureResult:
    """Verify CapRes: gateway signature and chain, our RRPID, our name, our request, our items.

    ``gateway_identity`` as for ``authorization.open_auth_response``.
    """
    if response.WhichOneof("result") == "error":
        raise open_gateway_error(
            response.error, trust, gateway_identity, rrpid=state.rrpid, request=state.request_digest
        )
    t1, gateway = open_gateway_sealed(
        credentials, trust, response.cap_res, CAP_RES_CT, rrpid=state.rrpid,
        gateway_identity=gateway_identity,
    )  # fmt: skip
    data = parse_strict(capture_pb2.CapResData, t1)
    check_header_without_transaction(response.header, data.cap_rr_tags.rrpid)
    check_rrpid(state.rrpid, data.cap_rr_tags.rrpid)
    check_names_us(credentials, data.merchant_cert_thumb, data.request_digest, state.request_digest)
    answered = [ItemRef(item.trans_ids.xid, item.auth_rrpid) for item in data.cap_res_items]
    check_items_answered(state.items, answered)
    return CaptureResult(data, gateway)
