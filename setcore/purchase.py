"""Purchase messages: PInit, the dual-signed PReq, PRes and Inquiry, for wallet and merchant.

Builders take plain values and credentials; openers take wire messages, raise
``ProtocolError`` for every failed check of SET-PROTOCOL.md 5.5 and 9.3 and return what
the caller may rely on. The wallet checks the merchant's chain and that the gateway key
it will seal the PI to is a gateway key-exchange certificate named by the merchant's
signed PEThumb, and that PRes and InqRes come from that merchant (its merchant ID: a
renewed certificate too) and answer the offered transaction with one outcome, amounts
within the agreed one (``setcore.purchase_answer``); the merchant checks that the order,
challenges and ids are its own and that the cardholder's dual signature and chain verify,
without ever seeing the PAN.
"""

from __future__ import annotations

import hmac
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from setcore.amount import check_amount
from setcore.credentials import Credentials
from setcore.dualsig import (
    MerchantView,
    build_dual_signed,
    build_pan_data,
    check_pi_envelope,
    parse_purchase,
    verify_as_merchant,
)
from setcore.encoding import content_type_of, digest_parts, parse_strict, thumbprint
from setcore.error_message import open_error, request_digest
from setcore.errors import ErrorCode, fail
from setcore.freshness import check_echo, check_id, check_lid, check_rrpid, new_id, now_ms
from setcore.language import check_language
from setcore.pan import PAN, is_bin, trans_stain
from setcore.pki.roles import CARDHOLDER, MERCHANT, PAYMENT_GATEWAY, CertificateUsage
from setcore.pki.truststore import TrustStore
from setcore.pki.verified import VerifiedCertificate
from setcore.purchase_answer import (
    MerchantIdentity,
    PurchaseState,
    check_answer,
    merchant_signer,
    open_merchant_error,
)
from setcore.purchase_offer import MerchantOffer, PInitState, check_offered_ids
from setcore.registration import check_thumbs, check_thumbs_echo, thumbs_message
from setcore.signed import open_signed, parse_signed, sign
from setcore.signers import signer
from setpay.v1 import common_pb2, purchase_pb2

PROTOCOL_VERSION = 1
SW_IDENT = "setpay/0.1"
HOD_CT = "setpay.v1.HODInput"
PINIT_RES_CT = content_type_of(purchase_pb2.PInitResData)
OI_CT = content_type_of(purchase_pb2.OIData)
PI_HEAD_CT = content_type_of(purchase_pb2.PIHead)
PRES_CT = content_type_of(purchase_pb2.PResData)
INQ_REQ_CT = content_type_of(purchase_pb2.InqReqData)
# Order descriptions are agreed out of band; this bounds what a wallet may make us hash.
MAX_ORDER_DESCRIPTION_BYTES = 4096


def header(
    *, rrpid: bytes = b"", xid: bytes = b"", lid_c: bytes = b"", lid_m: bytes = b""
) -> common_pb2.Header:
    """The plaintext routing header (compared with the authenticated copy by receivers)."""
    return common_pb2.Header(
        version=PROTOCOL_VERSION, date_unix_ms=now_ms(), rrpid=rrpid, xid=xid,
        lid_c=lid_c, lid_m=lid_m, sw_ident=SW_IDENT,
    )  # fmt: skip


def check_header(
    plain: common_pb2.Header,
    rrpid: bytes,
    xid: bytes = b"",
    *,
    lid_c: bytes | None = None,
    lid_m: bytes | None = None,
) -> None:
    """The plaintext header is only a hint: where it names ids, they must be the signed ones.

    The RRPID and XID are always compared (a message without an XID must not name one);
    the LID-C and LID-M only where the caller has one to compare it with (``b""``: the
    message has none, so the header must name none). Requests and responses alike.
    A version other than the one this code speaks is refused (SET 3.1, 7.6); 0, a
    header without one, is let through as its ids are: every setpay sender writes one
    (``header``), but the header is only a hint, and a message may come without it.
    """
    if plain.version not in (0, PROTOCOL_VERSION):
        old = plain.version < PROTOCOL_VERSION
        code = ErrorCode.ERROR_CODE_VERSION_TOO_OLD if old else ErrorCode.ERROR_CODE_VERSION_TOO_NEW
        raise fail(code, f"header version {plain.version}, not {PROTOCOL_VERSION}")
    if (
        (plain.rrpid and plain.rrpid != rrpid)
        or (plain.xid and plain.xid != xid)
        or (lid_c is not None and plain.lid_c and plain.lid_c != lid_c)
        or (lid_m is not None and plain.lid_m and plain.lid_m != lid_m)
    ):
        raise fail(ErrorCode.ERROR_CODE_WRAPPER_MSG_MISMATCH, "header ids differ from signed ones")


def check_header_without_transaction(plain: common_pb2.Header, rrpid: bytes) -> None:
    """A message that signs an RRPID and no transaction of its own (captures, reversals,
    credits, gateway administration, the certificate protocol, and their answers): its
    header names no other ids.

    Items may carry XIDs and LIDs of their own, but none is the message's: a header naming
    any differs from the signed ids.
    """
    check_header(plain, rrpid, lid_c=b"", lid_m=b"")


def hod(od: bytes, amount: common_pb2.CurrencyAmount, od_salt: bytes) -> bytes:
    """HOD: binds order description and amount, salted, without revealing them.

    SET's HODInput also carries an installment or recurring plan; setpay runs none (the
    gateway refuses a PI asking for one), so HOD covers description, amount and salt only.
    """
    money = struct.pack(">Iqi", amount.currency, amount.amount, amount.exp10)
    return digest_parts(HOD_CT, (od, money, od_salt))


# --- wallet side ------------------------------------------------------------------


def build_pinit_request(
    pan: PAN,
    brand_id: str,
    lid_c: bytes,
    *,
    lid_m: bytes = b"",
    language: str = "en",
    thumbs: Sequence[bytes] = (),
) -> tuple[purchase_pb2.PInitRequest, PInitState]:
    """PInitReq: plaintext, no secrets (the card's BIN only); Thumbs for PInitRes to echo."""
    rrpid, chall_c = new_id(), new_id()
    request = purchase_pb2.PInitRequest(
        header=header(rrpid=rrpid, lid_c=lid_c, lid_m=lid_m),
        rrpid=rrpid, language=language, lid_c=lid_c, lid_m=lid_m,
        chall_c=chall_c, brand_id=brand_id, bin=pan.bin,
        thumbs=thumbs_message(thumbs) if thumbs else None,  # none: no field, bytes as before
    )  # fmt: skip
    # PInitReq is its call's frame itself: the bytes sent are the frame's.
    sent = request_digest(request.DESCRIPTOR.full_name, request.SerializeToString())
    return request, PInitState(
        rrpid, chall_c, lid_c, brand_id, pan.bin, lid_m=lid_m, request_digest=sent,
        language=language, thumbs=tuple(thumbs),
    )  # fmt: skip


def open_pinit_response(
    response: purchase_pb2.PInitResponse,
    state: PInitState,
    trust: TrustStore,
    *,
    at: datetime | None = None,
) -> MerchantOffer:
    """Verify PInitRes: merchant signature and chain, echoes (Thumbs too: SET-PROTOCOL.md
    2.6), the TransIDs fields the merchant chose (``setcore.purchase_offer``), the gateway."""
    if response.WhichOneof("result") == "error":
        raise open_error(
            response.error, trust, MERCHANT, rrpid=state.rrpid, request=state.request_digest
        )
    signed = parse_signed(response.p_init_res)
    trust.update_from_bundle(signed.bundle, at)
    verified = open_signed(signed, PINIT_RES_CT, signer(trust, MERCHANT, at=at))
    data = parse_strict(purchase_pb2.PInitResData, verified.tbs)
    ids = data.trans_ids
    check_header(response.header, data.rrpid, ids.xid, lid_c=ids.lid_c, lid_m=ids.lid_m)
    check_rrpid(state.rrpid, data.rrpid)
    check_echo(state.chall_c, data.chall_c, "Chall-C")
    check_thumbs_echo(state.thumbs, data.thumbs)
    if data.trans_ids.lid_c != state.lid_c:
        raise fail(ErrorCode.ERROR_CODE_WRAPPER_MSG_MISMATCH, "PInitRes is for another LID-C")
    if state.lid_m and data.trans_ids.lid_m != state.lid_m:
        raise fail(ErrorCode.ERROR_CODE_UNKNOWN_LID, "PInitRes is for another LID-M")
    check_id(data.trans_ids.xid, "XID")
    check_id(data.chall_m, "Chall-M")
    check_offered_ids(ids, state, at)
    merchant = verified.signer
    if merchant.brand_id != state.brand_id:
        raise fail(ErrorCode.ERROR_CODE_INVALID_CERTIFICATE, "merchant is not of this brand")
    gateway = trust.resolve(
        data.pe_thumb, signed.bundle, PAYMENT_GATEWAY, CertificateUsage.KEY_EXCHANGE, at
    )
    # SET-PROTOCOL.md 5.2: the gateway's chain too is of the brand the cardholder picked.
    # Never true today, kept as a guard: one TrustStore pins one brand root and validates
    # only certificates of that root's brand, and the merchant's check above already
    # made that brand the one picked. It is what stops a gateway of another brand if a
    # store ever holds several roots (the pinning tests reach it with such a store).
    if gateway.brand_id != state.brand_id:
        raise fail(ErrorCode.ERROR_CODE_INVALID_CERTIFICATE, "gateway is not of this brand")
    return MerchantOffer(data.trans_ids, data.chall_m, merchant, gateway)


@dataclass(frozen=True)
class CardData:
    """The wallet's card: PAN, expiry and the two secrets behind the certificate."""

    pan: PAN
    expiry: str
    card_secret: bytes
    pan_secret: bytes

    def __repr__(self) -> str:
        return f"CardData({self.pan.masked}, expiry={self.expiry})"


@dataclass(frozen=True)
class Order:
    """An order as agreed out of band: description and amount."""

    description: bytes
    amount: common_pb2.CurrencyAmount


def build_purchase_request(
    credentials: Credentials,
    offer: MerchantOffer,
    order: Order,
    card: CardData,
    state: PInitState,
) -> tuple[purchase_pb2.PurchaseRequest, PurchaseState]:
    """PReq: OIData for the merchant, the PI sealed to the gateway, one dual signature."""
    check_amount(order.amount)
    # Narrowing only: the trust store refuses a merchant certificate without merchantData
    # (setcore/pki/chain.py), and ``offer.merchant`` is one it verified.
    if offer.merchant.merchant_data is None:
        raise fail(ErrorCode.ERROR_CODE_INVALID_CERTIFICATE, "merchant certificate lacks its id")
    rrpid, chall_c, od_salt = new_id(), new_id(), new_id()
    order_hod = hod(order.description, order.amount, od_salt)
    xid = offer.trans_ids.xid
    oi = purchase_pb2.OIData(
        content_type=OI_CT, trans_ids=offer.trans_ids, rrpid=rrpid, chall_c=chall_c,
        hod=order_hod, od_salt=od_salt, chall_m=offer.chall_m, brand_id=state.brand_id,
        bin=card.pan.bin,
    ).SerializeToString()  # fmt: skip
    head = purchase_pb2.PIHead(
        content_type=PI_HEAD_CT, trans_ids=offer.trans_ids, hod=order_hod,
        purch_amt=order.amount, merchant_id=offer.merchant.merchant_data.merchant_id,
        merchant_sig_cert_thumb=offer.merchant.thumbprint, pe_thumb=offer.gateway.thumbprint,
        trans_stain=trans_stain(card.card_secret, xid), sw_ident=SW_IDENT,
    ).SerializeToString()  # fmt: skip
    pan_data = build_pan_data(card.pan, card.expiry, card.pan_secret, ex_nonce=new_id())
    dual = build_dual_signed(
        credentials.backend, credentials.signature_key, credentials.signature_thumb,
        credentials.bundle(), oi, head, pan_data, offer.gateway.recipient(), xid=xid, rrpid=rrpid,
    )  # fmt: skip
    request = purchase_pb2.PurchaseRequest(
        header=header(rrpid=rrpid, xid=xid, lid_c=offer.trans_ids.lid_c),
        p_req=dual.to_proto().SerializeToString(),
    )
    sent = request_digest(request.DESCRIPTOR.full_name, request.p_req)
    who, thumb = MerchantIdentity.of(offer.merchant), offer.merchant.thumbprint
    return request, PurchaseState(rrpid, chall_c, offer.trans_ids, thumb, order.amount, sent, who)


def _open_pres(
    signed_bytes: bytes, plain: common_pb2.Header, trust: TrustStore, purchase: PurchaseState,
    rrpid: bytes, chall: bytes, what: str,
) -> purchase_pb2.PResData:  # fmt: skip
    verified = open_signed(parse_signed(signed_bytes), PRES_CT, merchant_signer(trust, purchase))
    data = parse_strict(purchase_pb2.PResData, verified.tbs)
    ids = data.trans_ids
    check_header(plain, data.rrpid, ids.xid, lid_c=ids.lid_c, lid_m=ids.lid_m)
    check_rrpid(rrpid, data.rrpid)
    check_echo(chall, data.chall_c, "Chall-C")
    check_answer(data, purchase, what)
    return data


def open_purchase_response(
    response: purchase_pb2.PurchaseResponse, state: PurchaseState, trust: TrustStore
) -> purchase_pb2.PResData:
    """Verify PRes: signed by the merchant of the offer, echoing our RRPID and challenge,
    about the offered transaction, reporting one outcome and no amount beyond the agreed
    one."""
    if response.WhichOneof("result") == "error":
        raise open_merchant_error(
            response.error, trust, state, rrpid=state.rrpid, request=state.request_digest
        )
    return _open_pres(
        response.p_res, response.header, trust, state, state.rrpid, state.chall_c, "PRes"
    )


@dataclass(frozen=True)
class InquiryState:
    """What the wallet remembers between InqReq and InqRes (``request_digest`` as for PReq)."""

    rrpid: bytes
    chall_c2: bytes
    purchase: PurchaseState
    request_digest: bytes = b""


def build_inquiry_request(
    credentials: Credentials, purchase: PurchaseState
) -> tuple[purchase_pb2.InquiryRequest, InquiryState]:
    """InqReq: signed by the cardholder, with a fresh challenge."""
    rrpid, chall_c2 = new_id(), new_id()
    data = purchase_pb2.InqReqData(
        content_type=INQ_REQ_CT, trans_ids=purchase.trans_ids, rrpid=rrpid, chall_c2=chall_c2,
    ).SerializeToString()  # fmt: skip
    signed = sign(
        credentials.backend, credentials.signature_key, credentials.signature_thumb,
        INQ_REQ_CT, data, credentials.bundle(),
    )  # fmt: skip
    request = purchase_pb2.InquiryRequest(
        header=header(rrpid=rrpid, xid=purchase.trans_ids.xid), inq_req=signed.SerializeToString()
    )
    sent = request_digest(request.DESCRIPTOR.full_name, request.inq_req)
    return request, InquiryState(rrpid, chall_c2, purchase, sent)


def open_inquiry_response(
    response: purchase_pb2.InquiryResponse, state: InquiryState, trust: TrustStore
) -> purchase_pb2.PResData:
    """Verify InqRes: as PRes, with our RRPID and fresh challenge echoed."""
    p = state.purchase
    if response.WhichOneof("result") == "error":
        raise open_merchant_error(
            response.error, trust, p, rrpid=state.rrpid, request=state.request_digest
        )
    return _open_pres(
        response.inq_res, response.header, trust, p, state.rrpid, state.chall_c2, "InqRes"
    )


# --- merchant side ----------------------------------------------------------------


def check_pinit_request(request: purchase_pb2.PInitRequest) -> None:
    """Refuse a malformed PInitReq (ids, challenge, BIN, language, Thumbs)."""
    check_id(request.rrpid, "RRPID")
    check_id(request.chall_c, "Chall-C")
    check_lid(request.lid_c, "LID-C")
    check_lid(request.lid_m, "LID-M", required=False)
    if not is_bin(request.bin) or not request.brand_id:
        raise fail(ErrorCode.ERROR_CODE_DECODING_FAILURE, "PInitReq needs a brand and a BIN")
    check_language(request.language, "PInitReq")
    check_thumbs(request.thumbs)
    check_header(request.header, request.rrpid, lid_c=request.lid_c, lid_m=request.lid_m)


def build_pinit_response(
    credentials: Credentials,
    request: purchase_pb2.PInitRequest,
    trans_ids: common_pb2.TransIDs,
    chall_m: bytes,
    gateway_kex_cert: bytes,
    gateway_chain: Sequence[bytes],
) -> purchase_pb2.PInitResponse:
    """PInitRes: the merchant's signed offer naming the gateway key, echoing the Thumbs."""
    data = purchase_pb2.PInitResData(
        content_type=PINIT_RES_CT, trans_ids=trans_ids, rrpid=request.rrpid,
        chall_c=request.chall_c, chall_m=chall_m, pe_thumb=thumbprint(gateway_kex_cert),
        thumbs=request.thumbs if request.thumbs.thumbs else None,
    ).SerializeToString()  # fmt: skip
    bundle = credentials.bundle()
    bundle.certificates.append(gateway_kex_cert)
    bundle.certificates.extend(c for c in gateway_chain if c not in bundle.certificates)
    signed = sign(
        credentials.backend, credentials.signature_key, credentials.signature_thumb,
        PINIT_RES_CT, data, bundle,
    )  # fmt: skip
    return purchase_pb2.PInitResponse(
        header=header(rrpid=request.rrpid, xid=trans_ids.xid, lid_c=trans_ids.lid_c),
        p_init_res=signed.SerializeToString(),
    )


@dataclass(frozen=True)
class MerchantOrder:
    """What the merchant recorded when it answered PInit."""

    trans_ids: common_pb2.TransIDs
    chall_m: bytes
    description: bytes
    amount: common_pb2.CurrencyAmount
    brand_id: str


def open_purchase_request(request: purchase_pb2.PurchaseRequest) -> MerchantView:
    """Parse PReq, compare its plaintext header (no signature checked yet): the merchant
    then finds its order by the XID."""
    view = parse_purchase(request.p_req)
    oi = view.oi_data
    ids = oi.trans_ids
    check_header(request.header, oi.rrpid, ids.xid, lid_c=ids.lid_c, lid_m=ids.lid_m)
    return view


def verify_purchase(
    view: MerchantView, order: MerchantOrder, trust: TrustStore, *, at: datetime | None = None
) -> VerifiedCertificate:
    """The merchant's PReq checklist (SET-PROTOCOL.md 5.5); returns the cardholder.

    Beyond the checklist, what the merchant keeps and forwards is held to what the
    gateway will take: OIData's BIN six digits, and the PI's envelope sealed for this
    transaction (``dualsig.check_pi_envelope``). A refusal keeps nothing."""
    oi = view.oi_data
    mine = order.trans_ids
    if oi.trans_ids.xid != mine.xid:
        raise fail(ErrorCode.ERROR_CODE_UNKNOWN_XID, "OIData names another transaction")
    if oi.trans_ids.lid_m != mine.lid_m:
        raise fail(ErrorCode.ERROR_CODE_UNKNOWN_LID, "OIData names another LID-M")
    if oi.trans_ids != mine:
        raise fail(ErrorCode.ERROR_CODE_WRAPPER_MSG_MISMATCH, "OIData TransIDs differ from ours")
    check_echo(order.chall_m, oi.chall_m, "Chall-M")
    check_id(oi.rrpid, "RRPID")
    check_id(oi.chall_c, "Chall-C")
    check_id(oi.od_salt, "ODSalt")
    if oi.brand_id != order.brand_id:
        raise fail(ErrorCode.ERROR_CODE_DECODING_FAILURE, "OIData names another brand")
    # Six digits, as the PInitReq's (SET-PROTOCOL.md 5.1): the OIData is kept, and a BIN
    # field of any text would keep whatever the wallet wrote there, a card number too.
    if not is_bin(oi.bin):
        raise fail(ErrorCode.ERROR_CODE_DECODING_FAILURE, "OIData's BIN is not six digits")
    if not hmac.compare_digest(oi.hod, hod(order.description, order.amount, oi.od_salt)):
        raise fail(ErrorCode.ERROR_CODE_DIGEST_MISMATCH, "HOD does not match our order")
    check_pi_envelope(view, mine.xid)
    thumb = view.pi.pi_signature.signature.signer_cert_thumb
    cardholder = trust.resolve(
        thumb, view.pi.cardholder_certs, CARDHOLDER, CertificateUsage.SIGNATURE, at
    )
    if cardholder.brand_id != order.brand_id:
        raise fail(ErrorCode.ERROR_CODE_INVALID_CERTIFICATE, "cardholder of another brand")
    verify_as_merchant(view, cardholder.public_key)
    return cardholder


def build_purchase_response(
    credentials: Credentials,
    trans_ids: common_pb2.TransIDs,
    rrpid: bytes,
    chall_c: bytes,
    payloads: Sequence[purchase_pb2.PResPayload],
) -> bytes:
    """Signed(PResData) bytes, for PRes and InqRes alike."""
    data = purchase_pb2.PResData(
        content_type=PRES_CT, trans_ids=trans_ids, rrpid=rrpid, chall_c=chall_c,
        payloads=payloads,
    ).SerializeToString()  # fmt: skip
    signed = sign(
        credentials.backend, credentials.signature_key, credentials.signature_thumb,
        PRES_CT, data, credentials.bundle(),
    )  # fmt: skip
    return signed.SerializeToString()


def open_inquiry_request(
    request: purchase_pb2.InquiryRequest, cardholder_thumb: bytes, trust: TrustStore
) -> purchase_pb2.InqReqData:
    """Verify InqReq: signed by the cardholder who made the purchase."""
    signed = parse_signed(request.inq_req)
    verified = open_signed(signed, INQ_REQ_CT, signer(trust, CARDHOLDER, only=cardholder_thumb))
    data = parse_strict(purchase_pb2.InqReqData, verified.tbs)
    check_id(data.rrpid, "RRPID")
    check_id(data.chall_c2, "Chall-C2")
    ids = data.trans_ids
    check_header(request.header, data.rrpid, ids.xid, lid_c=ids.lid_c, lid_m=ids.lid_m)
    return data


def inquiry_xid(request: purchase_pb2.InquiryRequest) -> bytes:
    """The XID an InqReq claims (unverified: used to find the order, then verified)."""
    signed = parse_signed(request.inq_req)
    return parse_strict(purchase_pb2.InqReqData, signed.tbs).trans_ids.xid


__all__ = [
    "CardData",
    "InquiryState",
    "MerchantOffer",
    "MerchantOrder",
    "MerchantView",
    "Order",
    "PInitState",
    "PurchaseState",
    "build_inquiry_request",
    "build_pinit_request",
    "build_pinit_response",
    "build_purchase_request",
    "build_purchase_response",
    "check_pinit_request",
    "hod",
    "inquiry_xid",
    "open_inquiry_request",
    "open_inquiry_response",
    "open_pinit_response",
    "open_purchase_request",
    "open_purchase_response",
    "verify_purchase",
]
