"""Cardholder registration (SET-PROTOCOL.md 4.1): CardCInit, RegForm, CertReq, CertRes, CertInq.

    wallet                                     Cardholder CA
    CardCInitReq  {RRPID, LID-EE, Chall-EE}  ->
                  <- S(CA, CardCInitResTBS)  + CA signature and key-exchange chains, BCI
    RegFormReq    Sealed(RegFormReqTBE, extra = PANOnly)  ->   (the CA reads the BIN)
                  <- S(CA, RegFormResTBS)    Chall-CA and the form
    CertReq       EncX: Sealed(S(new key, CertReqData), extra = PANData0)  ->
                  <- EncK(back key, S(CA, CertResData))  Nonce-CCA, the new certificate

The wallet's checks: its challenges echoed, the CA's chain to the pinned root, CAEThumb
naming a key-exchange certificate of that same CA, and, on the new certificate, its own
key and the blinded account it can recompute from PANSecret = f(CardSecret, Nonce-CCA).
Only that wallet can read Nonce-CCA: the CertRes is sealed under the back key it sent
inside the CertReq. A renewal (CARD_RENEWAL_SIG) is also signed by the key being renewed.

The CA side opens and verifies; deciding (challenge, key uniqueness, the issuer's word)
is the CA's (``gateway.ca``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from hsm.base import KeyBackend, KeyHandle
from setcore.credentials import Credentials
from setcore.encoding import content_type_of, digest, parse_strict
from setcore.envelope import KEY_BYTES, open_sealed, open_with_key, seal, seal_with_key
from setcore.errors import ConfigurationError, ErrorCode, fail
from setcore.freshness import check_echo, check_id, check_lid, check_rrpid, new_id, now_ms
from setcore.pan import PAN, InvalidPAN, check_blinded_account, check_expiry, pan_secret
from setcore.pki.roles import CARDHOLDER, CARDHOLDER_CA, CertificateUsage
from setcore.pki.truststore import TrustStore
from setcore.pki.verified import VerifiedCertificate
from setcore.purchase import CardData, header
from setcore.registration import (
    MAX_LANGUAGE_CHARS,
    REQUEST_COMPLETE,
    CaContact,
    FormTemplate,
    RegistrationForm,
    RevocationData,
    ca_bundle,
    ca_error,
    check_header_rrpid,
    check_thumbs,
    check_thumbs_echo,
    form_fields,
    open_ca_answer,
    read_form,
    request_kind,
    resolve_ca_key_exchange,
    spki_of,
    thumbs_message,
)
from setcore.registration_certreq import (
    CERT_RES_CT,
    CertAnswer,
    CertRequestEnvelope,
    Exchange,
    OpenedCertRequest,
    ProvenKeys,
    build_cert_inquiry,
    chain_of,
    issued_certificate,
    open_cert_request,
    open_cert_result,
    seal_cert_request,
    sign_cert_result,
    verify_cert_request,
)
from setcore.signed import parse_signed, sign
from setpay.v1 import crypto_pb2, registration_pb2

CARD_C_INIT_RES_CT = content_type_of(registration_pb2.CardCInitResTBS)
REG_FORM_REQ_CT = content_type_of(registration_pb2.RegFormReqTBE)
REG_FORM_RES_CT = content_type_of(registration_pb2.RegFormResTBS)
PAN_ONLY_CT = content_type_of(registration_pb2.PANOnly)
PAN_DATA0_CT = content_type_of(registration_pb2.PANData0)
# Brand ids are short names (setcore.pki.extensions bounds them the same way).
MAX_BRAND_ID_CHARS = 64


def _card_kind(request_type: int) -> None:
    if request_kind(request_type).subject_type != CARDHOLDER:
        raise fail(ErrorCode.ERROR_CODE_MESSAGE_NOT_SUPPORTED, "not a cardholder request type")


# --- wallet: CardCInit --------------------------------------------------------------


@dataclass(frozen=True)
class CardCInitState:
    """What the wallet remembers between CardCInitReq and CardCInitRes."""

    rrpid: bytes
    lid_ee: bytes
    chall_ee: bytes
    brand_id: str
    thumbs: tuple[bytes, ...]


def build_card_c_init_request(
    brand_id: str, lid_ee: bytes, *, thumbs: Sequence[bytes] = ()
) -> tuple[registration_pb2.CardCInitRequest, CardCInitState]:
    """CardCInitReq: plaintext, a fresh RRPID and Chall-EE."""
    state = CardCInitState(new_id(), lid_ee, new_id(), brand_id, tuple(thumbs))
    request = registration_pb2.CardCInitRequest(
        header=header(rrpid=state.rrpid), rrpid=state.rrpid, lid_ee=lid_ee,
        chall_ee=state.chall_ee, brand_id=brand_id, thumbs=thumbs_message(thumbs),
    )  # fmt: skip
    return request, state


def open_card_c_init_response(
    response: registration_pb2.CardCInitResponse,
    state: CardCInitState,
    trust: TrustStore,
    *,
    at: datetime | None = None,
) -> CaContact:
    """Verify CardCInitRes: the Cardholder CA's chain, our echoes, its key-exchange key."""
    if response.WhichOneof("result") == "error":
        raise ca_error(response.error, trust, CARDHOLDER_CA, at=at)
    verified = open_ca_answer(
        response.card_c_init_res, CARD_C_INIT_RES_CT, trust, CARDHOLDER_CA, at=at
    )
    tbs = parse_strict(registration_pb2.CardCInitResTBS, verified.tbs)
    check_rrpid(state.rrpid, tbs.rrpid)
    check_echo(state.chall_ee, tbs.chall_ee, "Chall-EE")
    if tbs.lid_ee != state.lid_ee:
        raise fail(ErrorCode.ERROR_CODE_UNKNOWN_LID, "CardCInitRes for another LID-EE")
    check_lid(tbs.lid_ca, "LID-CA")
    check_thumbs_echo(state.thumbs, tbs.thumbs)
    if verified.signer.brand_id != state.brand_id:
        raise fail(ErrorCode.ERROR_CODE_INVALID_CERTIFICATE, "Cardholder CA of another brand")
    kex = resolve_ca_key_exchange(
        trust, verified.signer, tbs.cae_thumb, verified.signed.bundle, at=at
    )
    return CaContact(verified.signer, kex, tbs.lid_ca)


# --- wallet: RegForm ----------------------------------------------------------------


@dataclass(frozen=True)
class RegFormState:
    """What the wallet remembers between RegFormReq and RegFormRes."""

    rrpid: bytes
    chall_ee2: bytes
    lid_ee: bytes
    request_type: int
    ca: CaContact
    thumbs: tuple[bytes, ...]


def build_reg_form_request(
    ca: CaContact,
    pan: PAN,
    lid_ee: bytes,
    *,
    request_type: int = registration_pb2.REQUEST_TYPE_CARD_INITIAL_SIG,
    language: str = "en",
    thumbs: Sequence[bytes] = (),
) -> tuple[registration_pb2.RegFormRequest, RegFormState]:
    """RegFormReq: the request sealed to the CA with the PAN in the extra part only."""
    _card_kind(request_type)
    rrpid, chall = new_id(), new_id()
    pan_only = registration_pb2.PANOnly(
        content_type=PAN_ONLY_CT, pan=pan.reveal(), ex_nonce=new_id()
    ).SerializeToString()
    tbe = registration_pb2.RegFormReqTBE(
        content_type=REG_FORM_REQ_CT, rrpid=rrpid, lid_ee=lid_ee, chall_ee2=chall,
        lid_ca=ca.lid_ca, request_type=request_type,  # type: ignore[arg-type]
        language=language, thumbs=thumbs_message(thumbs),
        dd_extra=digest(PAN_ONLY_CT, pan_only),
    ).SerializeToString()  # fmt: skip
    sealed = seal(REG_FORM_REQ_CT, tbe, ca.recipient(), rrpid=rrpid, extra=(PAN_ONLY_CT, pan_only))
    request = registration_pb2.RegFormRequest(
        header=header(rrpid=rrpid), reg_form_req=sealed.SerializeToString()
    )
    return request, RegFormState(rrpid, chall, lid_ee, request_type, ca, tuple(thumbs))


def open_reg_form_response(
    response: registration_pb2.RegFormResponse,
    state: RegFormState,
    trust: TrustStore,
    *,
    at: datetime | None = None,
) -> RegistrationForm:
    """Verify RegFormRes: signed by the same CA, our echoes, the CA's challenge."""
    if response.WhichOneof("result") == "error":
        raise ca_error(response.error, trust, CARDHOLDER_CA, at=at)
    verified = open_ca_answer(
        response.reg_form_res, REG_FORM_RES_CT, trust, CARDHOLDER_CA,
        only=state.ca.signer.thumbprint, at=at,
    )  # fmt: skip
    tbs = parse_strict(registration_pb2.RegFormResTBS, verified.tbs)
    check_rrpid(state.rrpid, tbs.rrpid)
    check_echo(state.chall_ee2, tbs.chall_ee2, "Chall-EE2")
    if tbs.lid_ee != state.lid_ee or tbs.lid_ca != state.ca.lid_ca:
        raise fail(ErrorCode.ERROR_CODE_UNKNOWN_LID, "RegFormRes for another registration")
    check_thumbs_echo(state.thumbs, tbs.thumbs)
    if tbs.request_type != state.request_type:
        raise fail(ErrorCode.ERROR_CODE_WRAPPER_MSG_MISMATCH, "RegFormRes for another request")
    if tbs.cae_thumb and tbs.cae_thumb != state.ca.key_exchange.thumbprint:
        raise fail(ErrorCode.ERROR_CODE_INVALID_CERTIFICATE, "CA key-exchange key changed")
    return read_form(tbs.request_type, tbs.chall_ca, tbs.reg_form, tbs.referral)


# --- wallet: CertReq / CertRes / CertInq --------------------------------------------


@dataclass(frozen=True, repr=False)
class CardRequestState:
    """What the wallet remembers between CertReq (or CertInqReq) and the CertRes."""

    exchange: Exchange
    request_type: int
    key: KeyHandle
    pan: PAN
    expiry: str
    card_secret: bytes = field(repr=False)
    back_key: bytes = field(repr=False)

    def __repr__(self) -> str:
        return f"CardRequestState({self.pan.masked}, rrpid={self.exchange.rrpid.hex()[:16]}...)"


def build_card_cert_request(
    backend: KeyBackend,
    new_key: KeyHandle,
    form: RegistrationForm,
    registration: RegFormState,
    pan: PAN,
    expiry: str,
    *,
    filled: Sequence[tuple[str, str]] = (),
    renewing: Credentials | None = None,
    thumbs: Sequence[bytes] = (),
) -> tuple[registration_pb2.CertRequest, CardRequestState]:
    """CertReq (EncX): signed by the new key (and the renewed one), PANData0 as extra."""
    check_expiry(expiry)
    kind = request_kind(form.request_type)
    if kind.subject_type != CARDHOLDER or kind.renewal != (renewing is not None):
        raise ConfigurationError("a renewal needs the credentials being renewed, and only it")
    if form.referral:
        raise ConfigurationError("the CA referred this cardholder elsewhere")
    ca = registration.ca
    rrpid, chall, card_secret = new_id(), new_id(), new_id()
    back_key = os.urandom(KEY_BYTES)
    pan_data0 = registration_pb2.PANData0(
        content_type=PAN_DATA0_CT, pan=pan.reveal(), card_expiry=expiry,
        card_secret=card_secret, ex_nonce=new_id(),
    ).SerializeToString()  # fmt: skip
    data = registration_pb2.CertReqData(
        rrpid=rrpid, lid_ee=registration.lid_ee, chall_ee3=chall, lid_ca=ca.lid_ca,
        chall_ca=form.chall_ca, request_type=form.request_type,  # type: ignore[arg-type]
        request_date_unix_ms=now_ms(), reg_form_id=form.form_id, reg_form=form_fields(filled),
        back_key=back_key, public_key_sig=spki_of(new_key.public_key),
        ee_thumb=renewing.signature_thumb if renewing is not None else b"",
        thumbs=thumbs_message(thumbs), brand_id=ca.signer.brand_id,
    )  # fmt: skip
    request = seal_cert_request(
        data, backend, new_key, ca.recipient(), extra=(PAN_DATA0_CT, pan_data0), renewing=renewing
    )
    exchange = Exchange(rrpid, chall, registration.lid_ee, ca.lid_ca, ca.signer, tuple(thumbs))
    state = CardRequestState(
        exchange, form.request_type, new_key, pan, expiry, card_secret, back_key
    )
    return request, state


@dataclass(frozen=True, repr=False)
class CardCertificate:
    """The outcome of a cardholder CertRes or CertInqRes."""

    status: int
    ee_message: str
    certificate: VerifiedCertificate | None
    chain: tuple[bytes, ...]
    card: CardData | None

    @property
    def complete(self) -> bool:
        """True when the certificate was issued."""
        return self.status == REQUEST_COMPLETE

    def credentials(self, backend: KeyBackend, key: KeyHandle) -> Credentials:
        """The wallet's signing credentials from an issued certificate."""
        if self.certificate is None:
            raise ConfigurationError("no certificate was issued")
        return Credentials(backend, key, self.certificate.der, self.chain)

    def __repr__(self) -> str:
        name = registration_pb2.CertStatusCode.Name(self.status)
        return f"CardCertificate({name})"


def open_card_cert_response(
    response: registration_pb2.CertResponse | registration_pb2.CertInqResponse,
    state: CardRequestState,
    trust: TrustStore,
    *,
    at: datetime | None = None,
) -> CardCertificate:
    """Open CertRes under our back key, verify the CA, check the certificate is ours.

    Ours means: chain to the root as a cardholder signature certificate, our public key,
    and the blinded account we recompute from PANSecret (ACCOUNT_MISMATCH otherwise).
    """
    if response.WhichOneof("result") == "error":
        raise ca_error(response.error, trust, CARDHOLDER_CA, at=at)
    sealed = parse_strict(crypto_pb2.KeySealed, response.cert_res, own_content_type=False)
    plaintext = open_with_key(sealed, state.back_key, CERT_RES_CT, rrpid=state.exchange.rrpid)
    signed = parse_signed(plaintext)
    data = open_cert_result(signed, state.exchange, trust, at=at)
    status = data.cert_status.cert_status_code
    if status != REQUEST_COMPLETE:
        return CardCertificate(status, data.cert_status.ee_message, None, (), None)
    if len(data.cert_thumbs) != 1:
        raise fail(ErrorCode.ERROR_CODE_DECODING_FAILURE, "one cardholder certificate expected")
    nonce_cca = data.cert_status.nonce_cca
    check_id(nonce_cca, "Nonce-CCA")
    cert = issued_certificate(
        trust, signed.bundle, data.cert_thumbs[0], CARDHOLDER, CertificateUsage.SIGNATURE,
        state.key.public_key, at=at,
    )  # fmt: skip
    secret = pan_secret(state.card_secret, nonce_cca)
    if cert.blinded_account is None:
        raise fail(ErrorCode.ERROR_CODE_INVALID_CERTIFICATE, "no blinded account")
    check_blinded_account(cert.blinded_account, secret, state.pan, state.expiry)
    card = CardData(state.pan, state.expiry, state.card_secret, secret)
    return CardCertificate(
        status, data.cert_status.ee_message, cert, chain_of(cert, signed.bundle, trust), card
    )


def build_card_cert_inquiry(
    backend: KeyBackend, state: CardRequestState, *, thumbs: Sequence[bytes] = ()
) -> tuple[registration_pb2.CertInqRequest, CardRequestState]:
    """CertInqReq for a pended request; the returned state opens its answer."""
    ex = state.exchange
    request, rrpid, chall = build_cert_inquiry(
        backend, state.key, ex.lid_ee, ex.lid_ca, thumbs=thumbs
    )
    exchange = Exchange(rrpid, chall, ex.lid_ee, ex.lid_ca, ex.ca, tuple(thumbs))
    return request, CardRequestState(
        exchange, state.request_type, state.key, state.pan, state.expiry,
        state.card_secret, state.back_key,
    )  # fmt: skip


# --- CA side --------------------------------------------------------------------------


def check_card_c_init_request(request: registration_pb2.CardCInitRequest) -> None:
    """Refuse a malformed CardCInitReq."""
    check_id(request.rrpid, "RRPID")
    check_id(request.chall_ee, "Chall-EE")
    check_lid(request.lid_ee, "LID-EE")
    check_thumbs(request.thumbs)
    check_header_rrpid(request.header, request.rrpid)
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
    check_header_rrpid(request.header, sealed.rrpid)
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
    if len(tbe.language) > MAX_LANGUAGE_CHARS:
        raise fail(ErrorCode.ERROR_CODE_DECODING_FAILURE, "language tag too long")
    _card_kind(tbe.request_type)
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


def open_card_cert_request(envelope: CertRequestEnvelope, ca: Credentials) -> OpenedCertRequest:
    """Decrypt a cardholder CertReq (PANData0 extra part required) and read its back key.

    Failures here are answered with a SET Error: without the back key no CertRes can be
    addressed to the wallet.
    """
    opened = open_cert_request(envelope, ca, frozenset({PAN_DATA0_CT}))
    _card_kind(opened.data.request_type)
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
    """Verify the signatures (``SIGNATURE_CODES`` on failure), then read PANData0."""
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
    "CARD_C_INIT_RES_CT",
    "PAN_DATA0_CT",
    "PAN_ONLY_CT",
    "REG_FORM_REQ_CT",
    "REG_FORM_RES_CT",
    "CardCInitState",
    "CardCertificate",
    "CardRequest",
    "CardRequestState",
    "RegFormRequestView",
    "RegFormState",
    "build_card_c_init_request",
    "build_card_c_init_response",
    "build_card_cert_inquiry",
    "build_card_cert_request",
    "build_card_cert_response",
    "build_reg_form_request",
    "build_reg_form_response",
    "check_card_c_init_request",
    "open_card_c_init_response",
    "open_card_cert_request",
    "open_card_cert_response",
    "open_reg_form_request",
    "open_reg_form_response",
    "verify_card_cert_request",
]
