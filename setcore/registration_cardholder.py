"""Cardholder registration (SET-PROTOCOL.md 4.1): CardCInit, RegForm, CertReq, CertRes, CertInq.

    wallet                                     Cardholder CA
    CardCInitReq  {RRPID, LID-EE, Chall-EE}  ->
                  <- S(CA, CardCInitResTBS)  + CA signature and key-exchange chains, BCI
    RegFormReq    Sealed(RegFormReqTBE, extra = PANOnly)  ->   (the CA reads the BIN)
                  <- S(CA, RegFormResTBS)    Chall-CA and the form
    CertReq       EncX: Sealed(S(new key, CertReqData), extra = PANData0)  ->
                  <- EncK(back key, S(CA, CertResData))  Nonce-CCA, the new certificate

The wallet's checks: the answer's header naming no ids but the signed RRPID, its
challenges echoed, the CA's chain to the pinned root, CAEThumb naming a key-exchange
certificate of that same CA, and, on the new certificate, its own key and the blinded
account it can recompute from PANSecret = f(CardSecret, Nonce-CCA).
Only that wallet can read Nonce-CCA: the CertRes is sealed under the back key it sent
inside the CertReq. A renewal (CARD_RENEWAL_SIG) is also signed by the key being renewed.

The CA's side (opening, verifying, answering) is ``registration_cardholder_ca``; deciding
(challenge, key uniqueness, the issuer's word) is the CA's (``gateway.ca``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from hsm.base import KeyBackend, KeyHandle
from setcore.credentials import Credentials
from setcore.encoding import content_type_of, digest, parse_strict
from setcore.envelope import KEY_BYTES, open_with_key, seal
from setcore.error_message import request_digest
from setcore.errors import ConfigurationError, ErrorCode, fail
from setcore.freshness import check_echo, check_id, check_lid, check_rrpid, new_id, now_ms
from setcore.pan import PAN, check_blinded_account, check_expiry, pan_secret
from setcore.pki.roles import CARDHOLDER, CARDHOLDER_CA, CertificateUsage
from setcore.pki.truststore import TrustStore
from setcore.pki.verified import VerifiedCertificate
from setcore.purchase import CardData, check_header_without_transaction, header
from setcore.registration import (
    REQUEST_COMPLETE,
    CaContact,
    RegistrationForm,
    ca_error,
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
    Exchange,
    build_cert_inquiry,
    chain_of,
    issued_certificate,
    open_cert_result,
    seal_cert_request,
)
from setcore.signed import parse_signed
from setpay.v1 import crypto_pb2, registration_pb2

CARD_C_INIT_RES_CT = content_type_of(registration_pb2.CardCInitResTBS)
REG_FORM_REQ_CT = content_type_of(registration_pb2.RegFormReqTBE)
REG_FORM_RES_CT = content_type_of(registration_pb2.RegFormResTBS)
PAN_ONLY_CT = content_type_of(registration_pb2.PANOnly)
PAN_DATA0_CT = content_type_of(registration_pb2.PANData0)
# The form field in which a Cardholder CA asks for the card's enrolment code, the secret
# the issuer sent with the card: the CA's form names it, the wallet fills it from the
# card file, and the CA hands it to the issuer (``gateway.ca.enrolment``).
ENROLMENT_CODE_FIELD = "enrolment-code"


def require_cardholder_kind(request_type: int) -> None:
    """Refuse a request type that does not ask for a cardholder certificate."""
    if request_kind(request_type).subject_type != CARDHOLDER:
        raise fail(ErrorCode.ERROR_CODE_MESSAGE_NOT_SUPPORTED, "not a cardholder request type")


# --- wallet: CardCInit --------------------------------------------------------------


@dataclass(frozen=True)
class CardCInitState:
    """What the wallet remembers between CardCInitReq and CardCInitRes; ``request_digest``:
    of the request as sent, which the CA's Error must name (as in every state here);
    ``sent``: those bytes, serialized once (SET-PROTOCOL.md 11.1), which the wallet sends."""

    rrpid: bytes
    lid_ee: bytes
    chall_ee: bytes
    brand_id: str
    thumbs: tuple[bytes, ...]
    request_digest: bytes = b""
    sent: bytes = field(default=b"", repr=False)


def build_card_c_init_request(
    brand_id: str, lid_ee: bytes, *, thumbs: Sequence[bytes] = ()
) -> tuple[registration_pb2.CardCInitRequest, CardCInitState]:
    """CardCInitReq: plaintext, a fresh RRPID and Chall-EE."""
    rrpid, chall = new_id(), new_id()
    request = registration_pb2.CardCInitRequest(
        header=header(rrpid=rrpid), rrpid=rrpid, lid_ee=lid_ee,
        chall_ee=chall, brand_id=brand_id, thumbs=thumbs_message(thumbs),
    )  # fmt: skip
    # CardCInitReq is its call's frame itself: the bytes sent are the frame's, and the
    # digest an Error must name is of these very bytes.
    frame = request.SerializeToString()
    sent = request_digest(request.DESCRIPTOR.full_name, frame)
    return request, CardCInitState(rrpid, lid_ee, chall, brand_id, tuple(thumbs), sent, frame)


def open_card_c_init_response(
    response: registration_pb2.CardCInitResponse,
    state: CardCInitState,
    trust: TrustStore,
    *,
    at: datetime | None = None,
) -> CaContact:
    """Verify CardCInitRes: the Cardholder CA's chain, our echoes, its key-exchange key."""
    if response.WhichOneof("result") == "error":
        sent = state.request_digest
        raise ca_error(
            response.error, trust, CARDHOLDER_CA, state.rrpid, request=sent,
            brand=state.brand_id, at=at,
        )  # fmt: skip
    verified = open_ca_answer(
        response.card_c_init_res, CARD_C_INIT_RES_CT, trust, CARDHOLDER_CA, at=at
    )
    tbs = parse_strict(registration_pb2.CardCInitResTBS, verified.tbs)
    check_header_without_transaction(response.header, tbs.rrpid)
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
    request_digest: bytes = b""


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
    require_cardholder_kind(request_type)
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
    sent = request_digest(request.DESCRIPTOR.full_name, request.reg_form_req)
    return request, RegFormState(rrpid, chall, lid_ee, request_type, ca, tuple(thumbs), sent)


def open_reg_form_response(
    response: registration_pb2.RegFormResponse,
    state: RegFormState,
    trust: TrustStore,
    *,
    at: datetime | None = None,
) -> RegistrationForm:
    """Verify RegFormRes: signed by the same CA, our echoes, the CA's challenge."""
    if response.WhichOneof("result") == "error":
        sent = state.request_digest
        raise ca_error(
            response.error, trust, CARDHOLDER_CA, state.rrpid, request=sent,
            only=state.ca.signer.thumbprint, at=at,
        )  # fmt: skip
    verified = open_ca_answer(
        response.reg_form_res, REG_FORM_RES_CT, trust, CARDHOLDER_CA,
        only=state.ca.signer.thumbprint, at=at,
    )  # fmt: skip
    tbs = parse_strict(registration_pb2.RegFormResTBS, verified.tbs)
    check_header_without_transaction(response.header, tbs.rrpid)
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
    filled: Sequence[tuple[str, str]] | None = None,
    renewing: Credentials | None = None,
    thumbs: Sequence[bytes] = (),
) -> tuple[registration_pb2.CertRequest, CardRequestState]:
    """CertReq (EncX): signed by the new key (and the renewed one), PANData0 as extra.

    ``filled``: the form's fields as (name, value); by default every field the form asks
    for, empty (the CA refuses a request that leaves one out).
    """
    check_expiry(expiry)
    if filled is None:
        filled = [(name, "") for name in form.fields]
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
    sent = request_digest(request.DESCRIPTOR.full_name, request.cert_req)
    exchange = Exchange(
        rrpid, chall, registration.lid_ee, ca.lid_ca, ca.signer, tuple(thumbs), sent
    )
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
        ex = state.exchange
        raise ca_error(
            response.error, trust, CARDHOLDER_CA, ex.rrpid, request=ex.request_digest,
            only=ex.ca.thumbprint, at=at,
        )  # fmt: skip
    sealed = parse_strict(crypto_pb2.KeySealed, response.cert_res, own_content_type=False)
    plaintext = open_with_key(sealed, state.back_key, CERT_RES_CT, rrpid=state.exchange.rrpid)
    signed = parse_signed(plaintext)
    data = open_cert_result(signed, response.header, state.exchange, trust, at=at)
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
    if cert.blinded_account is None:  # the trust store refuses such a cardholder certificate
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
    sent = request_digest(request.DESCRIPTOR.full_name, request.cert_inq_req)
    exchange = Exchange(rrpid, chall, ex.lid_ee, ex.lid_ca, ex.ca, tuple(thumbs), sent)
    return request, CardRequestState(
        exchange, state.request_type, state.key, state.pan, state.expiry,
        state.card_secret, state.back_key,
    )  # fmt: skip


__all__ = [
    "CARD_C_INIT_RES_CT",
    "ENROLMENT_CODE_FIELD",
    "PAN_DATA0_CT",
    "PAN_ONLY_CT",
    "REG_FORM_REQ_CT",
    "REG_FORM_RES_CT",
    "CardCInitState",
    "CardCertificate",
    "CardRequestState",
    "RegFormState",
    "build_card_c_init_request",
    "build_card_cert_inquiry",
    "build_card_cert_request",
    "build_reg_form_request",
    "open_card_c_init_response",
    "open_card_cert_response",
    "open_reg_form_response",
]
