"""Cardholder registration, the Cardholder CA's side (SET-PROTOCOL.md 4.1).

The CA checks and opens what the wallet sends (CardCInitReq, RegFormReq, CertReq) and
builds its signed answers. The message flow and the wallet's side are in
``setcore.registration_cardholder``; deciding (challenge, key uniqueness, the issuer's
word) is the CA's (``gateway.ca``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from setcore.credentials import Credentials
from setcore.encoding import digest, parse_strict
from setcore.envelope import KEY_BYTES, open_sealed, seal_with_key
from setcore.errors import ErrorCode, fail
from setcore.freshness import check_id, check_lid
from setcore.language import check_language
from setcore.pan import PAN, InvalidPAN, check_expiry
from setcore.pki.truststore import TrustStore
from setcore.purchase import check_header_without_transaction
from setcore.registration import (
    FormTemplate,
    RevocationData,
    ca_bundle,
    check_thumbs,
)
from setcore.registration_cardholder import (
    CARD_C_INIT_RES_CT,
    PAN_DATA0_CT,
    PAN_ONLY_CT,
    REG_FORM_REQ_CT,
    REG_FORM_RES_CT,
    require_cardholder_kind,
)
from setcore.registration_certreq import (
    CERT_RES_CT,
    CertAnswer,
    CertRequestEnvelope,
    OpenedCertRequest,
    ProvenKeys,
    open_cert_request,
    sign_cert_result,
    verify_cert_request,
)
from setcore.signed import sign
from setpay.v1 import crypto_pb2, registration_pb2

# Brand ids are short names (setcore.pki.extensions bounds them the same way).
MAX_BRAND_ID_CHARS = 64


def check_card_c_init_request(request: registration_pb2.CardCInitRequest) -> None:
    """Refuse a malformed CardCInitReq."""
    check_id(request.rrpid, "RRPID")
    check_id(request.chall_ee, "Chall-EE")
    check_lid(request.lid_ee, "LID-EE")
    check_thumbs(request.thumbs)
    check_header_without_transaction(request.header, request.rrpid)
    if not 0 < len(request.brand_id) <= MAX_BRAND_ID_CHARS:
        raise fail(ErrorCode.ERROR_CODE_DECODING_FAILURE, "CardCInitReq needs a brand")


def build_card_c_init_response(
    ca: Credentials,
    request: registration_pb2.CardCInitRequest,
    lid_ca: bytes,
    *,
    revocation: RevocationData | None,
) -> bytes:
    """Signed(CardCInitResTBS) naming the CA key-exchange certificate, chains in the bundle."""
    _, kex_thumb = ca.require_key_exchange()
    tbs = registration_pb2.CardCInitResTBS(
        content_type=CARD_C_INIT_RES_CT, rrpid=request.rrpid, lid_ee=request.lid_ee,
        chall_ee=request.chall_ee, lid_ca=lid_ca, cae_thumb=kex_thumb, thumbs=request.thumbs,
    ).SerializeToString()  # fmt: skip
    bundle = ca_bundle(ca, revocation=revocation, held=request.thumbs.thumbs)
    signed = sign(ca.backend, ca.signature_key, ca.signature_thumb, CARD_C_INIT_RES_CT, tbs, bundle)
    return signed.SerializeToString()


@dataclass(frozen=True, repr=False)
class RegFormRequestView:
    """An opened RegFormReq: the request and the card (for its BIN)."""

    tbe: registration_pb2.RegFormReqTBE
    pan: PAN

    def __repr__(self) -> str:
        return f"RegFormRequestView({self.pan.masked})"


def open_reg_form_request(
    request: registration_pb2.RegFormRequest, ca: Credentials
) -> RegFormRequestView:
    """Open RegFormReq with the CA key-exchange key; check the link to PANOnly."""
    sealed = parse_strict(crypto_pb2.Sealed, request.reg_form_req, own_content_type=False)
    check_id(sealed.rrpid, "RRPID")
    check_header_without_transaction(request.header, sealed.rrpid)
    kex_key, kex_thumb = ca.require_key_exchange()
    opened = open_sealed(
        sealed, ca.backend, kex_key, kex_thumb, REG_FORM_REQ_CT, extra_type=PAN_ONLY_CT
    )
    tbe = parse_strict(registration_pb2.RegFormReqTBE, opened.plaintext)
    if tbe.rrpid != sealed.rrpid:
        raise fail(ErrorCode.ERROR_CODE_WRAPPER_MSG_MISMATCH, "envelope RRPID differs")
    check_id(tbe.chall_ee2, "Chall-EE2")
    check_lid(tbe.lid_ee, "LID-EE")
    check_lid(tbe.lid_ca, "LID-CA")
    check_thumbs(tbe.thumbs)
    check_language(tbe.language, "RegFormReq")
    require_cardholder_kind(tbe.request_type)
    extra = opened.extra or b""
    if tbe.dd_extra != digest(PAN_ONLY_CT, extra):
        raise fail(ErrorCode.ERROR_CODE_DIGEST_MISMATCH, "PANOnly is not the linked one")
    pan_only = parse_strict(registration_pb2.PANOnly, extra)
    check_id(pan_only.ex_nonce, "EXNonce")
    try:
        pan = PAN(pan_only.pan)
    except InvalidPAN as exc:
        raise fail(ErrorCode.ERROR_CODE_DECODING_FAILURE, "PANOnly holds no card number") from exc
    return RegFormRequestView(tbe, pan)


def build_reg_form_response(
    ca: Credentials,
    tbe: registration_pb2.RegFormReqTBE,
    chall_ca: bytes,
    form: FormTemplate,
    *,
    revocation: RevocationData | None,
    referral: str = "",
) -> bytes:
    """Signed(RegFormResTBS): Chall-CA and the form (or a referral)."""
    _, kex_thumb = ca.require_key_exchange()
    tbs = registration_pb2.RegFormResTBS(
        content_type=REG_FORM_RES_CT, rrpid=tbe.rrpid, lid_ee=tbe.lid_ee,
        chall_ee2=tbe.chall_ee2, lid_ca=tbe.lid_ca, chall_ca=chall_ca, cae_thumb=kex_thumb,
        request_type=tbe.request_type, reg_form=form.to_proto(), referral=referral,
        thumbs=tbe.thumbs,
    ).SerializeToString()  # fmt: skip
    bundle = ca_bundle(ca, revocation=revocation, held=tbe.thumbs.thumbs)
    signed = sign(ca.backend, ca.signature_key, ca.signature_thumb, REG_FORM_RES_CT, tbs, bundle)
    return signed.SerializeToString()


def open_card_cert_request(
    envelope: CertRequestEnvelope, ca: Credentials, *, now: int | None = None
) -> OpenedCertRequest:
    """Decrypt a cardholder CertReq (PANData0 extra part required) and read its back key.

    Failures here are answered with a SET Error: without the back key no CertRes can be
    addressed to the wallet. ``now`` (Unix ms) is the CA's clock for RequestDate.
    """
    opened = open_cert_request(envelope, ca, frozenset({PAN_DATA0_CT}), now=now)
    require_cardholder_kind(opened.data.request_type)
    if len(opened.data.back_key) != KEY_BYTES:
        raise fail(ErrorCode.ERROR_CODE_DECODING_FAILURE, "back key must be 32 bytes")
    return opened


@dataclass(frozen=True, repr=False)
class CardRequest:
    """A cardholder CertReq whose signatures verified, with the card data it carries."""

    opened: OpenedCertRequest
    keys: ProvenKeys
    pan: PAN
    expiry: str
    card_secret: bytes = field(repr=False)

    @property
    def data(self) -> registration_pb2.CertReqData:
        """The verified CertReqData."""
        return self.opened.data

    def __repr__(self) -> str:
        return f"CardRequest({self.pan.masked}, expiry={self.expiry})"


def verify_card_cert_request(
    opened: OpenedCertRequest, trust: TrustStore, *, at: datetime | None = None
) -> CardRequest:
    """Verify the signatures and keys (``refusal_status`` on failure), then read PANData0."""
    keys = verify_cert_request(opened, trust, at=at)
    card = parse_strict(registration_pb2.PANData0, opened.extra or b"")
    check_id(card.card_secret, "CardSecret")
    check_id(card.ex_nonce, "EXNonce")
    check_expiry(card.card_expiry)
    try:
        pan = PAN(card.pan)
    except InvalidPAN as exc:
        raise fail(ErrorCode.ERROR_CODE_DECODING_FAILURE, "PANData0 holds no card number") from exc
    return CardRequest(opened, keys, pan, card.card_expiry, card.card_secret)


def build_card_cert_response(
    ca: Credentials,
    back_key: bytes,
    answer: CertAnswer,
    status: int,
    *,
    revocation: RevocationData | None,
    certificate: bytes | None = None,
    nonce_cca: bytes = b"",
    ee_message: str = "",
) -> bytes:
    """EncK(back key, S(CA, CertResData)): only the requesting wallet reads Nonce-CCA."""
    signed = sign_cert_result(
        ca, answer, status, revocation=revocation,
        certificates=() if certificate is None else (certificate,),
        nonce_cca=nonce_cca, ee_message=ee_message,
    )  # fmt: skip
    sealed = seal_with_key(CERT_RES_CT, signed.SerializeToString(), back_key, rrpid=answer.rrpid)
    return sealed.SerializeToString()


__all__ = [
    "CardRequest",
    "RegFormRequestView",
    "build_card_c_init_response",
    "build_card_cert_response",
    "build_reg_form_response",
    "check_card_c_init_request",
    "open_card_cert_request",
    "open_reg_form_request",
    "verify_card_cert_request",
]
