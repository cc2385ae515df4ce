"""Authorization messages: AuthReq from the merchant, AuthRes from the gateway, capture tokens.

The gateway's checklist (SET-PROTOCOL.md 6.2 and 9.3) is split in the order it runs:

1. ``open_auth_request``: open the envelope with the gateway key-exchange key, verify the
   merchant's signature and chain, check the signed link names exactly the PI carried,
   check the ids agree with the envelope and the plaintext header, the date is fresh,
   the merchant signed for the gateway certificate the request is sealed to, and the
   response key is this merchant's own key-exchange certificate; refuse a subsequent
   authorization or an AuthReq carrying SaleDetail (MESSAGE_NOT_SUPPORTED: setpay issues
   no AuthToken, and files a sale in the merchant's open batch).
2. ``open_payment_instruction``: open the PI (sealed to this gateway, naming this gateway
   key), verify the cardholder's chain and dual signature, check the PAN against the
   blinded account in the cardholder certificate and PANData's padding (one size for
   every PAN, ``dualsig.build_pan_data``), and refuse a PI asking for an installment or
   recurring plan (MESSAGE_NOT_SUPPORTED: setpay runs none).
3. ``check_order_date``: the order date the cardholder signed in the PI (PReqDate) is no
   older than the gateway's bound and not ahead of its clock by more than the freshness
   window (MESSAGE_TOO_OLD / MESSAGE_TOO_NEW): the AuthReq around a PI is dated afresh.
4. ``check_agreement``: what the merchant says equals what the cardholder signed (order
   digests, each a digest's size, HOD, transaction ids, merchant identity, brand).

The amount (AuthReqAmt <= PurchAmt, same currency and exponent) is a business decision:
``amount_agrees`` lets the gateway answer with a signed decline rather than an Error.
Replay (a PI used before) is decided by the ledger, which keeps the store of used PIs.

What AuthReq shares with the merchant's other requests to the gateway (RRTags, opening an
EncB request, an answer naming its request) is ``setcore.gateway_exchange``'s.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime

from setcore.amount import check_amount, same_unit
from setcore.credentials import Credentials
from setcore.dualsig import (
    GatewayView,
    check_pan_data_padding,
    oi_data_digest,
    verify_as_gateway,
)
from setcore.dualsig import (
    open_parsed_payment_instruction as _open_pi,
)
from setcore.encoding import content_type_of, parse_strict
from setcore.envelope import Recipient
from setcore.error_message import open_gateway_error
from setcore.errors import ErrorCode, fail
from setcore.freshness import check_date, check_id, check_rrpid, new_id, now_ms
from setcore.gateway_exchange import (
    check_names_us,
    check_rr_tags,
    merchant_id_of,
    open_gateway_response,
    open_merchant_request,
    request_digest,
)
from setcore.link import seal_with_baggage
from setcore.pan import PAN, InvalidPAN, check_blinded_account, check_expiry
from setcore.pki.roles import CARDHOLDER, CertificateUsage
from setcore.pki.truststore import TrustStore
from setcore.pki.verified import VerifiedCertificate
from setcore.purchase import check_header, header, hod
from setcore.signers import GatewayIdentity
from setcore.token_seal import TokenKey
from setpay.v1 import authorization_pb2, common_pb2, crypto_pb2, purchase_pb2

AUTH_REQ_CT = content_type_of(authorization_pb2.AuthReqData)
AUTH_RES_CT = content_type_of(authorization_pb2.AuthResData)
AUTH_RES_BAGGAGE_CT = content_type_of(authorization_pb2.AuthResBaggage)
CAP_TOKEN_CT = content_type_of(authorization_pb2.CapTokenData)
PI_CT = content_type_of(purchase_pb2.PIDualSigned)
AUTHORIZE_REQUEST_CT = content_type_of(authorization_pb2.AuthorizeRequest)
# The size of a DD (``setcore.encoding.digest``, SHA-256): HOIData and HOD2 are one each.
DD_BYTES = hashlib.sha256().digest_size


# --- merchant side: AuthReq ---------------------------------------------------------


@dataclass(frozen=True)
class AuthRequestState:
    """What the merchant remembers to check the AuthRes against."""

    rrpid: bytes
    xid: bytes
    request_digest: bytes


def build_auth_request(
    credentials: Credentials,
    gateway: Recipient,
    pi_bytes: bytes,
    trans_ids: common_pb2.TransIDs,
    oi_bytes: bytes,
    order_description: bytes,
    purchase_amount: common_pb2.CurrencyAmount,
    od_salt: bytes,
    auth_amount: common_pb2.CurrencyAmount,
    merchant_id: str,
    *,
    capture_now: bool = False,
    rrpid: bytes | None = None,
) -> tuple[authorization_pb2.AuthorizeRequest, AuthRequestState]:
    """AuthReq: the merchant's signed request, sealed to the gateway, PI as baggage."""
    _, kex_thumb = credentials.require_key_exchange()
    rrpid = rrpid or new_id()
    data = authorization_pb2.AuthReqData(
        content_type=AUTH_REQ_CT,
        auth_tags=authorization_pb2.AuthTags(
            auth_rr_tags=common_pb2.RRTags(
                rrpid=rrpid, mer_term_ids=common_pb2.MerTermIDs(merchant_id=merchant_id),
                date_unix_ms=now_ms(), response_cert_thumb=kex_thumb,
                recipient_cert_thumb=gateway.cert_thumb,
            ),
            trans_ids=trans_ids,
        ),
        check_digests=authorization_pb2.CheckDigests(
            hoi_data=oi_data_digest(oi_bytes),
            hod2=hod(order_description, purchase_amount, od_salt),
        ),
        auth_req_payload=authorization_pb2.AuthReqPayload(auth_req_amt=auth_amount),
        capture_now=capture_now,
    ).SerializeToString()  # fmt: skip
    envelope = seal_with_baggage(
        credentials.backend, credentials.signature_key, credentials.signature_thumb,
        AUTH_REQ_CT, data, PI_CT, pi_bytes, gateway,
        xid=trans_ids.xid, rrpid=rrpid, bundle=credentials.bundle(),
    ).SerializeToString()  # fmt: skip
    request = authorization_pb2.AuthorizeRequest(
        header=header(rrpid=rrpid, xid=trans_ids.xid, lid_m=trans_ids.lid_m), auth_req=envelope
    )
    state = AuthRequestState(rrpid, trans_ids.xid, request_digest(AUTHORIZE_REQUEST_CT, envelope))
    return request, state


# --- gateway side: AuthReq ----------------------------------------------------------


@dataclass(frozen=True)
class VerifiedAuthRequest:
    """An AuthReq whose envelope, merchant signature and chain have been verified."""

    data: authorization_pb2.AuthReqData
    merchant: VerifiedCertificate
    merchant_id: str
    merchant_kex: Recipient
    pi_bytes: bytes
    request_digest: bytes

    @property
    def rrpid(self) -> bytes:
        """The RRPID of this request: the idempotency key."""
        return self.data.auth_tags.auth_rr_tags.rrpid

    @property
    def xid(self) -> bytes:
        """The transaction this authorization is for."""
        return self.data.auth_tags.trans_ids.xid


def open_auth_request(
    request: authorization_pb2.AuthorizeRequest,
    credentials: Credentials,
    trust: TrustStore,
    *,
    at: datetime | None = None,
    now: int | None = None,
) -> VerifiedAuthRequest:
    """Gateway checklist step 1-2: envelope, merchant signature and chain, PI link."""
    t1, merchant, envelope, bundle = open_merchant_request(
        credentials, trust, request.auth_req, AUTH_REQ_CT, PI_CT, at=at
    )
    data = parse_strict(authorization_pb2.AuthReqData, t1)
    tags = data.auth_tags.auth_rr_tags
    if envelope.sealed.xid != data.auth_tags.trans_ids.xid:
        raise fail(ErrorCode.ERROR_CODE_WRAPPER_MSG_MISMATCH, "envelope XID differs")
    check_id(data.auth_tags.trans_ids.xid, "XID")
    merchant_id, kex = check_rr_tags(tags, envelope, merchant, bundle, trust, at=at, now=now)
    ids = data.auth_tags.trans_ids
    check_header(request.header, tags.rrpid, ids.xid, lid_c=ids.lid_c, lid_m=ids.lid_m)
    check_amount(data.auth_req_payload.auth_req_amt)
    if data.auth_req_payload.subsequent_auth_ind:
        # A subsequent authorization (a split shipment) rides on the AuthToken of the
        # first; setpay issues none, and a PI is good for one decision. Refused for what
        # it is rather than decided as if it were a first authorization.
        raise fail(
            ErrorCode.ERROR_CODE_MESSAGE_NOT_SUPPORTED,
            "subsequent authorizations are not supported",
        )
    if data.sale_detail.ByteSize():
        # Signed settlement data (a batch, its sequence number) the gateway would not act
        # on: a sale is filed in the merchant's open batch. Refused, not quietly ignored;
        # a merchant that chooses its batch authorizes, then captures with a CapReq.
        raise fail(
            ErrorCode.ERROR_CODE_MESSAGE_NOT_SUPPORTED,
            "SaleDetail in an AuthReq is not supported",
        )
    return VerifiedAuthRequest(
        data=data, merchant=merchant, merchant_id=merchant_id, merchant_kex=kex,
        pi_bytes=envelope.baggage,
        request_digest=request_digest(AUTHORIZE_REQUEST_CT, request.auth_req),
    )  # fmt: skip


@dataclass(frozen=True)
class PaymentInstruction:
    """An opened, verified PI: what the cardholder signed and the card it pays with."""

    view: GatewayView
    cardholder: VerifiedCertificate
    pan: PAN
    expiry: str

    @property
    def head(self) -> purchase_pb2.PIHead:
        """The PIHead the cardholder signed."""
        return self.view.pi_head

    @property
    def pi_digest(self) -> bytes:
        """DD(PIData): with the XID, the key of the used-PI store."""
        return self.view.dd_pi_data

    def __repr__(self) -> str:
        return f"PaymentInstruction({self.pan.masked})"


def open_payment_instruction(
    request: VerifiedAuthRequest,
    credentials: Credentials,
    trust: TrustStore,
    *,
    at: datetime | None = None,
) -> PaymentInstruction:
    """Gateway checklist step 3: open the PI, verify cardholder chain, dual signature, PAN.

    The PI is opened with the key-exchange key of the certificate it is sealed to, as
    ``credentials`` choose it: the wallet may have sealed it to another certificate of
    the gateway than the merchant sealed the AuthReq to (a renewal between the two).
    """
    pi = parse_strict(purchase_pb2.PIDualSigned, request.pi_bytes)
    kex_key, my_thumb = credentials.key_exchange_for(pi.ex_pi.recipient_cert_thumb)
    view = _open_pi(pi, credentials.backend, kex_key, my_thumb, xid=request.xid)
    thumb = view.pi.pi_signature.signature.signer_cert_thumb
    cardholder = trust.resolve(
        thumb, view.pi.cardholder_certs, CARDHOLDER, CertificateUsage.SIGNATURE, at
    )
    verify_as_gateway(view, cardholder.public_key)
    try:
        pan = PAN(view.pan_data.pan)
    except InvalidPAN as exc:
        raise fail(ErrorCode.ERROR_CODE_DECODING_FAILURE, "PANData holds no valid PAN") from exc
    check_pan_data_padding(view.pan_data)
    expiry = check_expiry(view.pan_data.card_expiry)
    check_id(view.pan_data.ex_nonce, "EXNonce")
    if cardholder.blinded_account is None:
        raise fail(ErrorCode.ERROR_CODE_INVALID_CERTIFICATE, "no account in the certificate")
    check_blinded_account(cardholder.blinded_account, view.pan_data.pan_secret, pan, expiry)
    if view.pi_head.HasField("install_recur"):
        # The cardholder signed an installment or recurring plan. setpay runs none (no
        # AuthToken; HOD does not carry a plan, so the merchant never agreed to one):
        # authorized as a one-off, the amount would be taken on other terms than signed.
        raise fail(
            ErrorCode.ERROR_CODE_MESSAGE_NOT_SUPPORTED,
            "installment and recurring plans are not supported",
        )
    return PaymentInstruction(view, cardholder, pan, expiry)


def check_order_date(pi: PaymentInstruction, *, max_age_ms: int, now: int | None = None) -> None:
    """The order date the cardholder signed (PIHead's PReqDate) is recent (SET-PROTOCOL.md
    9.3.5: dates checked against a window).

    The AuthReq around a PI is dated afresh by the merchant and checked against the
    freshness window; the PI's own date is not, so without this a merchant could hold a
    PI and have it authorized long after the purchase. ``max_age_ms`` is how long after
    the purchase the gateway lets a merchant ask; ahead of ``now`` (the moment the
    request is checked as of; None: now) it may be by the clocks' tolerance only
    (``freshness.FRESHNESS_WINDOW_MS``). A SET Error, MESSAGE_TOO_OLD or MESSAGE_TOO_NEW,
    like the PI's other refusals: nothing is decided or held, and the PI is not spent.
    A retry of bytes already decided still gets its stored answer, and a refusal as too
    old fences the RRPID against any decision still on its way (``gateway.servicer``,
    when a check refuses them).
    """
    check_date(
        pi.head.trans_ids.preq_date_unix_ms, now_ms() if now is None else now,
        max_age_ms=max_age_ms, what="PReqDate signed in the PI",
    )  # fmt: skip


def check_agreement(request: VerifiedAuthRequest, pi: PaymentInstruction) -> None:
    """Gateway checklist step 4: the merchant's request agrees with what the cardholder signed.

    HOIData and HOD2 must each be a digest's size before they are compared: two empty
    ones would compare equal and agree on nothing. The PI's must then equal them.
    """
    digests = request.data.check_digests
    for name, value in (("HOIData", digests.hoi_data), ("HOD2", digests.hod2)):
        if len(value) != DD_BYTES:
            raise fail(
                ErrorCode.ERROR_CODE_DECODING_FAILURE, f"{name} is not a {DD_BYTES}-byte digest"
            )
    if not hmac.compare_digest(digests.hoi_data, pi.view.dd_oi_data):
        raise fail(ErrorCode.ERROR_CODE_DIGEST_MISMATCH, "HOIData differs from the PI's")
    if not hmac.compare_digest(digests.hod2, pi.head.hod):
        raise fail(ErrorCode.ERROR_CODE_DIGEST_MISMATCH, "HOD2 differs from the PI's HOD")
    said, signed = request.data.auth_tags.trans_ids, pi.head.trans_ids
    if said != signed:
        raise fail(ErrorCode.ERROR_CODE_UNKNOWN_XID, "TransIDs differ from the PI's")
    if pi.head.merchant_id != request.merchant_id or not hmac.compare_digest(
        pi.head.merchant_sig_cert_thumb, request.merchant.thumbprint
    ):
        raise fail(ErrorCode.ERROR_CODE_MERCHANT_MISMATCH, "PI names another merchant")
    if pi.cardholder.brand_id != request.merchant.brand_id:
        raise fail(ErrorCode.ERROR_CODE_INVALID_CERTIFICATE, "card and merchant brands differ")


def amount_agrees(request: VerifiedAuthRequest, pi: PaymentInstruction) -> bool:
    """AuthReqAmt is in PurchAmt's currency and exponent and not above it (never rescaled)."""
    asked = request.data.auth_req_payload.auth_req_amt
    bought = pi.head.purch_amt
    return same_unit(asked, bought) and 0 < asked.amount <= bought.amount


# --- gateway side: AuthRes and capture tokens ----------------------------------------


@dataclass(frozen=True)
class AuthDecision:
    """The gateway's answer to put in AuthRes."""

    auth_code: int
    auth_amt: common_pb2.CurrencyAmount
    resp_reason: int = 0
    approval_code: str = ""
    cap_token: bytes = b""
    cap_res_payload: authorization_pb2.CapResPayload | None = None


def build_auth_response(
    credentials: Credentials, request: VerifiedAuthRequest, decision: AuthDecision
) -> bytes:
    """AuthRes bytes: signed by the gateway, naming merchant and request, sealed to the merchant."""
    payload = authorization_pb2.AuthResPayload(
        auth_header=authorization_pb2.AuthHeader(
            auth_amt=decision.auth_amt,
            auth_code=decision.auth_code,  # type: ignore[arg-type]
            response_data=authorization_pb2.ResponseData(
                approval_code=decision.approval_code,
                resp_reason=decision.resp_reason,  # type: ignore[arg-type]
            ),
        )
    )
    if decision.cap_res_payload is not None:
        payload.cap_res_payload.CopyFrom(decision.cap_res_payload)
    data = authorization_pb2.AuthResData(
        content_type=AUTH_RES_CT, auth_tags=request.data.auth_tags,
        merchant_cert_thumb=request.merchant.thumbprint, request_digest=request.request_digest,
        auth_res_payload=payload, pe_thumb=credentials.key_exchange_thumb or b"",
    ).SerializeToString()  # fmt: skip
    baggage = authorization_pb2.AuthResBaggage(cap_token=decision.cap_token).SerializeToString()
    envelope = seal_with_baggage(
        credentials.backend, credentials.signature_key, credentials.signature_thumb,
        AUTH_RES_CT, data, AUTH_RES_BAGGAGE_CT, baggage, request.merchant_kex,
        xid=request.xid, rrpid=request.rrpid, bundle=credentials.bundle(),
    )  # fmt: skip
    return envelope.SerializeToString()


def seal_cap_token(token_key: TokenKey, data: authorization_pb2.CapTokenData) -> bytes:
    """A capture token: AEAD-sealed to the gateway itself, bound to XID and auth RRPID."""
    data.content_type = CAP_TOKEN_CT
    sealed = token_key.seal(
        CAP_TOKEN_CT, data.SerializeToString(), xid=data.xid, rrpid=data.auth_rrpid
    )
    return sealed.SerializeToString()


def open_cap_token(
    token_key: TokenKey, token: bytes, *, merchant: VerifiedCertificate
) -> authorization_pb2.CapTokenData:
    """Open a capture token this gateway sealed; it must belong to the presenting merchant."""
    if not token:
        raise fail(ErrorCode.ERROR_CODE_DECODING_FAILURE, "capture token missing")
    sealed = parse_strict(crypto_pb2.Sealed, token, own_content_type=False)
    data = parse_strict(authorization_pb2.CapTokenData, token_key.open(sealed, CAP_TOKEN_CT))
    if sealed.xid != data.xid or sealed.rrpid != data.auth_rrpid:
        raise fail(ErrorCode.ERROR_CODE_WRAPPER_MSG_MISMATCH, "capture token ids differ")
    # The merchant id, not the certificate, is what the token binds: a merchant that renews
    # its certificate can still capture what it was authorized for.
    if data.merchant_id != merchant_id_of(merchant):
        raise fail(ErrorCode.ERROR_CODE_MERCHANT_MISMATCH, "capture token of another merchant")
    return data


# --- merchant side: AuthRes ---------------------------------------------------------


@dataclass(frozen=True)
class AuthResult:
    """A verified AuthRes: the gateway's signed decision and the tokens it returned."""

    data: authorization_pb2.AuthResData
    baggage: authorization_pb2.AuthResBaggage
    gateway: VerifiedCertificate

    @property
    def auth_code(self) -> int:
        """The AuthCode of the decision."""
        return self.data.auth_res_payload.auth_header.auth_code


def open_auth_response(
    response: authorization_pb2.AuthorizeResponse,
    credentials: Credentials,
    state: AuthRequestState,
    trust: TrustStore,
    *,
    gateway_identity: GatewayIdentity,
) -> AuthResult:
    """Verify AuthRes: gateway signature and chain, our RRPID, our name, our request.

    ``gateway_identity``: the merchant's gateway, as its verified PCertRes named it
    (``signers.GatewayIdentity``); an answer, or an Error, signed by any other gateway is
    not its word, whatever root certified it.
    """
    if response.WhichOneof("result") == "error":
        raise open_gateway_error(
            response.error, trust, gateway_identity, rrpid=state.rrpid, request=state.request_digest
        )
    t1, envelope, gateway = open_gateway_response(
        credentials, trust, response.auth_res, AUTH_RES_CT, AUTH_RES_BAGGAGE_CT,
        xid=state.xid, rrpid=state.rrpid, gateway_identity=gateway_identity,
    )  # fmt: skip
    data = parse_strict(authorization_pb2.AuthResData, t1)
    tags, ids = data.auth_tags.auth_rr_tags, data.auth_tags.trans_ids
    check_header(response.header, tags.rrpid, ids.xid, lid_c=ids.lid_c, lid_m=ids.lid_m)
    check_rrpid(state.rrpid, tags.rrpid)
    check_names_us(credentials, data.merchant_cert_thumb, data.request_digest, state.request_digest)
    baggage = parse_strict(authorization_pb2.AuthResBaggage, envelope.baggage)
    return AuthResult(data, baggage, gateway)
