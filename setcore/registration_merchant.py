"""Merchant and gateway registration (SET-PROTOCOL.md 4.2): Me-AqCInit, CertReq, CertRes.

    merchant / gateway                          Merchant CA / Payment Gateway CA
    Me-AqCInitReq {RRPID, LID-EE, Chall-EE, RequestType, IDData}  ->
                  <- S(CA, MeAqCInitResTBS)    Chall-CA, the form, CA chains, BCI
    CertReq       Enc: Sealed(S(new sig key, CertReqData))           (both new public keys)
                  or EncX with AcctData as the extra part            ->
                  <- S(CA, CertResData)        signed only; new certificates in the bundle

Unlike SET, where echoing Chall-CA is optional for merchants, setpay requires it (SET-
PROTOCOL.md 4.3 rule 3), and the identity the CertReq names must be the one the
registration started with. The requester checks that the certificates it receives chain
to the root with the right role, certify its own keys, and name its merchant id. The
CA's side (opening, verifying, answering) is ``registration_merchant_ca``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from hsm.base import KeyBackend, KeyHandle
from setcore.credentials import Credentials
from setcore.encoding import content_type_of, parse_strict
from setcore.error_message import request_digest
from setcore.errors import ConfigurationError, ErrorCode, fail
from setcore.freshness import check_echo, check_lid, check_rrpid, new_id, now_ms
from setcore.names import refused_character
from setcore.pki.extensions import MAX_MERCHANT_ID_CHARS, MAX_MERCHANT_NAME_CHARS
from setcore.pki.issuance import kem_for
from setcore.pki.roles import MERCHANT, CertificateUsage
from setcore.pki.truststore import TrustStore
from setcore.pki.verified import VerifiedCertificate
from setcore.purchase import check_header_without_transaction, header
from setcore.registration import (
    DECRYPTION_ERROR,
    REQUEST_COMPLETE,
    CaContact,
    RegistrationForm,
    RequestKind,
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
    Exchange,
    build_cert_inquiry,
    chain_of,
    issued_certificate,
    open_cert_result,
    seal_cert_request,
)
from setcore.signed import parse_signed
from setpay.v1 import registration_pb2

ME_AQ_C_INIT_RES_CT = content_type_of(registration_pb2.MeAqCInitResTBS)
ACCT_DATA_CT = content_type_of(registration_pb2.AcctData)
# Bank identification numbers are 6 to 11 digits (ISO/IEC 7812-1:2017 moved to 8).
MAX_BIN_CHARS = 11
# A gateway's name becomes its certificate's CommonName (X.509 ub-common-name).
MAX_GATEWAY_NAME_CHARS = 64
# A settlement account identifier (an IBAN is at most 34 characters).
MAX_ACCOUNT_CHARS = 64


@dataclass(frozen=True)
class MerchantIdentity:
    """A merchant as its acquirer knows it (SET's MerchantAcquirerID)."""

    merchant_id: str
    merchant_name: str
    merchant_bin: str = ""

    @property
    def subject(self) -> tuple[str, str]:
        """(id, display name) the certificate will carry."""
        return self.merchant_id, self.merchant_name


@dataclass(frozen=True)
class GatewayIdentity:
    """A payment gateway's acquirer (SET's AcquirerID)."""

    acquirer_bin: str
    acquirer_business_id: str

    @property
    def subject(self) -> tuple[str, str]:
        """(name, display name): the business id names the gateway certificate."""
        name = self.acquirer_business_id or self.acquirer_bin
        return name, name


Identity = MerchantIdentity | GatewayIdentity


def id_data_of(identity: Identity) -> registration_pb2.IDData:
    """The IDData a request carries for ``identity``."""
    if isinstance(identity, MerchantIdentity):
        return registration_pb2.IDData(
            merchant=registration_pb2.MerchantAcquirerID(
                merchant_bin=identity.merchant_bin,
                merchant_id=identity.merchant_id,
                merchant_name=identity.merchant_name,
            )
        )
    return registration_pb2.IDData(
        acquirer=registration_pb2.AcquirerID(
            acquirer_bin=identity.acquirer_bin,
            acquirer_business_id=identity.acquirer_business_id,
        )
    )


def _bad(reason: str) -> Exception:
    return fail(ErrorCode.ERROR_CODE_DECODING_FAILURE, reason)


def _check_text(what: str, text: str, limit: int, *, required: bool = True) -> None:
    """Refuse ``text`` out of its bounds, or holding a character no name holds
    (``setcore.names``)."""
    if not int(required) <= len(text) <= limit:
        raise _bad(f"{what} out of bounds")
    if refused_character(text) is not None:
        raise _bad(f"{what} holds a control, separator or bidirectional character")


def identity_of(id_data: registration_pb2.IDData, kind: RequestKind) -> Identity:
    """The identity IDData names, checked against the request kind and the bounds."""
    which = id_data.WhichOneof("id")
    if kind.subject_type == MERCHANT:
        m = id_data.merchant
        if which != "merchant":
            raise _bad("merchant request without MerchantAcquirerID")
        _check_text("merchant id", m.merchant_id, MAX_MERCHANT_ID_CHARS)
        _check_text("merchant name", m.merchant_name, MAX_MERCHANT_NAME_CHARS)
        _check_text("merchant BIN", m.merchant_bin, MAX_BIN_CHARS, required=False)
        return MerchantIdentity(m.merchant_id, m.merchant_name, m.merchant_bin)
    a = id_data.acquirer
    if which != "acquirer":
        raise _bad("gateway request without AcquirerID")
    _check_text("acquirer BIN", a.acquirer_bin, MAX_BIN_CHARS)
    _check_text(
        "acquirer business id", a.acquirer_business_id, MAX_GATEWAY_NAME_CHARS, required=False
    )
    return GatewayIdentity(a.acquirer_bin, a.acquirer_business_id)


def require_merchant_kind(request_type: int) -> RequestKind:
    """The request kind, refused unless it asks for merchant or gateway certificates."""
    kind = request_kind(request_type)
    if not kind.wants_key_exchange:
        raise fail(ErrorCode.ERROR_CODE_MESSAGE_NOT_SUPPORTED, "not a merchant or gateway request")
    return kind


# --- requester: Me-AqCInit ----------------------------------------------------------


@dataclass(frozen=True)
class MeAqCInitState:
    """What the requester remembers between Me-AqCInitReq and Me-AqCInitRes;
    ``request_digest``: of the request as sent, which the CA's Error must name; ``sent``:
    those bytes, serialized once (SET-PROTOCOL.md 11.1), which the requester sends."""

    rrpid: bytes
    lid_ee: bytes
    chall_ee: bytes
    request_type: int
    identity: Identity
    brand_id: str
    thumbs: tuple[bytes, ...]
    request_digest: bytes = b""
    sent: bytes = field(default=b"", repr=False)


def build_me_aq_c_init_request(
    request_type: int,
    identity: Identity,
    brand_id: str,
    lid_ee: bytes,
    *,
    language: str = "en",
    thumbs: Sequence[bytes] = (),
) -> tuple[registration_pb2.MeAqCInitRequest, MeAqCInitState]:
    """Me-AqCInitReq: plaintext, who we are and which certificates we want."""
    kind = require_merchant_kind(request_type)
    if isinstance(identity, MerchantIdentity) != (kind.subject_type == MERCHANT):
        raise ConfigurationError("the identity does not fit the request type")
    rrpid, chall = new_id(), new_id()
    request = registration_pb2.MeAqCInitRequest(
        header=header(rrpid=rrpid), rrpid=rrpid, lid_ee=lid_ee,
        chall_ee=chall, request_type=request_type,  # type: ignore[arg-type]
        id_data=id_data_of(identity), brand_id=brand_id, language=language,
        thumbs=thumbs_message(thumbs),
    )  # fmt: skip
    # Me-AqCInitReq is its call's frame itself: the bytes sent are the frame's, and the
    # digest an Error must name is of these very bytes.
    frame = request.SerializeToString()
    sent = request_digest(request.DESCRIPTOR.full_name, frame)
    state = MeAqCInitState(
        rrpid, lid_ee, chall, request_type, identity, brand_id, tuple(thumbs), sent, frame
    )
    return request, state


@dataclass(frozen=True)
class MerchantRegistration:
    """A verified Me-AqCInitRes: the CA to seal to, its challenge and form."""

    ca: CaContact
    form: RegistrationForm


def open_me_aq_c_init_response(
    response: registration_pb2.MeAqCInitResponse,
    state: MeAqCInitState,
    trust: TrustStore,
    *,
    at: datetime | None = None,
) -> MerchantRegistration:
    """Verify Me-AqCInitRes: the right kind of CA, our echoes, its key-exchange key."""
    kind = request_kind(state.request_type)
    if response.WhichOneof("result") == "error":
        sent = state.request_digest
        raise ca_error(
            response.error, trust, kind.ca_type, state.rrpid, request=sent,
            brand=state.brand_id, at=at,
        )  # fmt: skip
    verified = open_ca_answer(
        response.me_aq_c_init_res, ME_AQ_C_INIT_RES_CT, trust, kind.ca_type, at=at
    )
    tbs = parse_strict(registration_pb2.MeAqCInitResTBS, verified.tbs)
    check_header_without_transaction(response.header, tbs.rrpid)
    check_rrpid(state.rrpid, tbs.rrpid)
    check_echo(state.chall_ee, tbs.chall_ee, "Chall-EE")
    if tbs.lid_ee != state.lid_ee:
        raise fail(ErrorCode.ERROR_CODE_UNKNOWN_LID, "Me-AqCInitRes for another LID-EE")
    check_lid(tbs.lid_ca, "LID-CA")
    check_thumbs_echo(state.thumbs, tbs.thumbs)
    if tbs.request_type != state.request_type:
        raise fail(ErrorCode.ERROR_CODE_WRAPPER_MSG_MISMATCH, "answer for another request type")
    if verified.signer.brand_id != state.brand_id:
        raise fail(ErrorCode.ERROR_CODE_INVALID_CERTIFICATE, "CA of another brand")
    kex = resolve_ca_key_exchange(
        trust, verified.signer, tbs.cae_thumb, verified.signed.bundle, at=at
    )
    form = read_form(tbs.request_type, tbs.chall_ca, tbs.reg_form, "")
    return MerchantRegistration(CaContact(verified.signer, kex, tbs.lid_ca), form)


# --- requester: CertReq / CertRes / CertInq -----------------------------------------


@dataclass(frozen=True)
class MerchantRequestState:
    """What the requester remembers between CertReq (or CertInqReq) and the CertRes."""

    exchange: Exchange
    request_type: int
    identity: Identity
    signature_key: KeyHandle
    key_exchange_key: KeyHandle


def build_merchant_cert_request(
    backend: KeyBackend,
    signature_key: KeyHandle,
    key_exchange_key: KeyHandle,
    registration: MerchantRegistration,
    state: MeAqCInitState,
    *,
    filled: Sequence[tuple[str, str]] = (),
    account: str | None = None,
    renewing: Credentials | None = None,
    thumbs: Sequence[bytes] = (),
) -> tuple[registration_pb2.CertRequest, MerchantRequestState]:
    """CertReq: both new public keys, signed by the new signature key, sealed to the CA.

    With ``account`` (the settlement account) it is EncX with AcctData as the extra part.
    """
    kind = require_merchant_kind(state.request_type)
    if kind.renewal != (renewing is not None):
        raise ConfigurationError("a renewal needs the credentials being renewed, and only it")
    ca, form = registration.ca, registration.form
    extra = None
    if account is not None:
        if not 0 < len(account) <= MAX_ACCOUNT_CHARS:
            raise ConfigurationError(f"account identification is 1..{MAX_ACCOUNT_CHARS} chars")
        extra = (
            ACCT_DATA_CT,
            registration_pb2.AcctData(
                content_type=ACCT_DATA_CT, acct_identification=account, ex_nonce=new_id()
            ).SerializeToString(),
        )
    rrpid, chall = new_id(), new_id()
    data = registration_pb2.CertReqData(
        rrpid=rrpid, lid_ee=state.lid_ee, chall_ee3=chall, lid_ca=ca.lid_ca,
        chall_ca=form.chall_ca, request_type=state.request_type,  # type: ignore[arg-type]
        request_date_unix_ms=now_ms(), id_data=id_data_of(state.identity),
        reg_form_id=form.form_id, reg_form=form_fields(filled),
        public_key_sig=spki_of(signature_key.public_key),
        public_key_enc=spki_of(key_exchange_key.public_key),
        public_key_enc_kem=kem_for(key_exchange_key).value,
        ee_thumb=renewing.signature_thumb if renewing is not None else b"",
        thumbs=thumbs_message(thumbs), brand_id=ca.signer.brand_id,
    )  # fmt: skip
    request = seal_cert_request(
        data, backend, signature_key, ca.recipient(), extra=extra, renewing=renewing
    )
    sent = request_digest(request.DESCRIPTOR.full_name, request.cert_req)
    exchange = Exchange(rrpid, chall, state.lid_ee, ca.lid_ca, ca.signer, tuple(thumbs), sent)
    return request, MerchantRequestState(
        exchange, state.request_type, state.identity, signature_key, key_exchange_key
    )


@dataclass(frozen=True)
class MerchantCertificates:
    """The outcome of a merchant or gateway CertRes."""

    status: int
    ee_message: str
    signature: VerifiedCertificate | None
    key_exchange: VerifiedCertificate | None
    chain: tuple[bytes, ...] = field(repr=False)

    @property
    def complete(self) -> bool:
        """True when both certificates were issued."""
        return self.status == REQUEST_COMPLETE

    def credentials(self, backend: KeyBackend, state: MerchantRequestState) -> Credentials:
        """The requester's credentials: both keys with their new certificates."""
        if self.signature is None or self.key_exchange is None:
            raise ConfigurationError("no certificates were issued")
        return Credentials(
            backend, state.signature_key, self.signature.der, self.chain,
            state.key_exchange_key, self.key_exchange.der,
        )  # fmt: skip


def open_merchant_cert_response(
    response: registration_pb2.CertResponse | registration_pb2.CertInqResponse,
    state: MerchantRequestState,
    trust: TrustStore,
    *,
    at: datetime | None = None,
) -> MerchantCertificates:
    """Verify CertRes: our CA, our request; the certificates certify our keys and name us.
    ``CertStatusUnknown`` for a status this release does not define (``open_cert_result``)."""
    kind = request_kind(state.request_type)
    if response.WhichOneof("result") == "error":
        ex = state.exchange
        raise ca_error(
            response.error, trust, kind.ca_type, ex.rrpid, request=ex.request_digest,
            only=ex.ca.thumbprint, at=at,
        )  # fmt: skip
    signed = parse_signed(response.cert_res)
    data = open_cert_result(signed, response.header, state.exchange, trust, at=at)
    status = data.cert_status.cert_status_code
    if status != REQUEST_COMPLETE:
        return MerchantCertificates(status, data.cert_status.ee_message, None, None, ())
    if len(data.cert_thumbs) != 2:
        raise fail(ErrorCode.ERROR_CODE_DECODING_FAILURE, "two certificates expected")
    sig = issued_certificate(
        trust, signed.bundle, data.cert_thumbs[0], kind.subject_type,
        CertificateUsage.SIGNATURE, state.signature_key.public_key, at=at,
    )  # fmt: skip
    kex = issued_certificate(
        trust, signed.bundle, data.cert_thumbs[1], kind.subject_type,
        CertificateUsage.KEY_EXCHANGE, state.key_exchange_key.public_key, at=at,
    )  # fmt: skip
    if kex.kem is not kem_for(state.key_exchange_key):
        raise fail(ErrorCode.ERROR_CODE_INVALID_CERTIFICATE, "certificate names another KEM")
    subject = state.identity.subject[0]
    for cert in (sig, kex):
        certified = cert.merchant_data.merchant_id if cert.merchant_data else cert.subject_id
        if certified != subject:
            raise fail(ErrorCode.ERROR_CODE_MERCHANT_MISMATCH, "certificate names another party")
    return MerchantCertificates(
        status, data.cert_status.ee_message, sig, kex, chain_of(sig, signed.bundle, trust)
    )


def build_merchant_cert_inquiry(
    backend: KeyBackend, state: MerchantRequestState, *, thumbs: Sequence[bytes] = ()
) -> tuple[registration_pb2.CertInqRequest, MerchantRequestState]:
    """CertInqReq for a pended request, signed by the new signature key."""
    ex = state.exchange
    request, rrpid, chall = build_cert_inquiry(
        backend, state.signature_key, ex.lid_ee, ex.lid_ca, thumbs=thumbs
    )
    sent = request_digest(request.DESCRIPTOR.full_name, request.cert_inq_req)
    exchange = Exchange(rrpid, chall, ex.lid_ee, ex.lid_ca, ex.ca, tuple(thumbs), sent)
    return request, MerchantRequestState(
        exchange, state.request_type, state.identity, state.signature_key,
        state.key_exchange_key,
    )  # fmt: skip


__all__ = [
    "ACCT_DATA_CT",
    "DECRYPTION_ERROR",
    "ME_AQ_C_INIT_RES_CT",
    "GatewayIdentity",
    "Identity",
    "MeAqCInitState",
    "MerchantCertificates",
    "MerchantIdentity",
    "MerchantRegistration",
    "MerchantRequestState",
    "build_me_aq_c_init_request",
    "build_merchant_cert_inquiry",
    "build_merchant_cert_request",
    "id_data_of",
    "identity_of",
    "open_me_aq_c_init_response",
    "open_merchant_cert_response",
]
