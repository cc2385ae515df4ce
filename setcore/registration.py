"""Certificate registration (SET-PROTOCOL.md section 4): what every requester and the CA share.

    registration             request kinds, how an uncertified key is named, Thumbs, the
                             CA's bundle with the stapled BCI, forms, the CA as a requester
                             knows it
    registration_certreq     the CertReq envelope and its proof of possession, CertResData,
                             CertInq: the core both requester kinds use
    registration_cardholder  CardCInit, RegForm, the cardholder CertReq (EncX with
                             PANData0) and CertRes (EncK under the wallet's back key)
    registration_merchant    Me-AqCInit, the merchant / gateway CertReq (Enc, or EncX with
                             AcctData) and CertRes (signed only)
    registration_errors      whose Error a requester takes as its CA's word (``ca_error``)

A key that has no certificate yet is named, in the ``signer_cert_thumb`` of its proof of
possession, by the SHA-256 of its DER SubjectPublicKeyInfo (``key_thumbprint``).

What the CA answers with (SET-PROTOCOL.md 4.3 and 7.6): a request it cannot decrypt or
parse gets a SET Error, unless a CertRes can still be addressed (merchants and gateways,
whose CertRes is only signed: DECRYPTION_ERROR); a request whose signature does not
verify gets a CertRes with SIG_VALIDATION_FAIL (``SIGNATURE_CODES`` are the ProtocolError
codes that become that status), one asking to certify a key off the allow-list (type,
size, KEM) a CertRes with REJECTED_BY_AGENT (``refusal_status`` maps both); everything
after the signatures (challenge, key uniqueness, the issuer's word) is a CertStatusCode.

Plaintext headers are hints (SET-PROTOCOL.md 3.1), compared both ways with
WRAPPER_MSG_MISMATCH (``purchase.check_header_without_transaction``): the CA compares a
request header's RRPID with the sealed or signed one, a requester an answer's with the
RRPID the CA signed, and both refuse a header naming any XID or LID, since a registration
has neither. A header naming no ids is accepted.

Builders take plain values and credentials; openers take wire messages, raise
``ProtocolError`` for every failed check and return frozen dataclasses.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from hsm.base import PublicKey
from setcore.credentials import Credentials
from setcore.encoding import thumbprint
from setcore.envelope import Recipient
from setcore.errors import ConfigurationError, ErrorCode, ProtocolError, fail
from setcore.freshness import check_id
from setcore.pki import roles
from setcore.pki.roles import CertificateUsage
from setcore.pki.truststore import TrustStore
from setcore.pki.verified import VerifiedCertificate
from setcore.registration_errors import ca_error
from setcore.signed import VerifiedSigned, algorithm_for_public_key, open_signed, parse_signed
from setcore.signers import signer
from setpay.v1 import common_pb2, crypto_pb2, registration_pb2

REQUEST_COMPLETE = registration_pb2.CERT_STATUS_CODE_REQUEST_COMPLETE
REQUEST_PENDED = registration_pb2.CERT_STATUS_CODE_REQUEST_PENDED
REQUEST_IN_PROGRESS = registration_pb2.CERT_STATUS_CODE_REQUEST_IN_PROGRESS
#: The CertStatus codes of a request the CA has not decided yet (SET-PROTOCOL.md 4.1:
#: requestPended, a person decides; requestInProgress, the CA is still at it): it may
#: still certify the request, so a requester keeps it, and its keys, for a later run.
UNDECIDED = frozenset({REQUEST_PENDED, REQUEST_IN_PROGRESS})
DECRYPTION_ERROR = registration_pb2.CERT_STATUS_CODE_DECRYPTION_ERROR
SIG_VALIDATION_FAIL = registration_pb2.CERT_STATUS_CODE_SIG_VALIDATION_FAIL
REJECTED_BY_AGENT = registration_pb2.CERT_STATUS_CODE_REJECTED_BY_AGENT
#: Every CertStatusCode a CertRes may carry (UNSPECIFIED is never one).
CERT_STATUS_NAMES: dict[int, str] = {
    value: name
    for name, value in registration_pb2.CertStatusCode.items()
    if value != registration_pb2.CERT_STATUS_CODE_UNSPECIFIED
}

# A requester names only the few certificates, CRLs and BCI relevant to this exchange
# (SET-PROTOCOL.md 2.6): its CA's chain and the brand's BCI. More is not a setpay peer.
MAX_THUMBS = 16
# Registration form fields: a form has a handful; the bound keeps a request small. A
# field's name or value is a label or a short answer.
MAX_FORM_FIELDS = 32
MAX_FORM_TEXT_CHARS = 256
# What a CA's form says, which a requester prints or logs: a form id is a short name
# (setpay's are about 20 characters); a policy a paragraph or two; a referral a sentence
# or an address. Anything longer is not a form a person is meant to read.
MAX_FORM_ID_CHARS = 64
MAX_POLICY_TEXT_CHARS = 4096
MAX_REFERRAL_CHARS = 512
# SHA-256 thumbprints are 32 bytes.
THUMB_BYTES = 32

#: ProtocolError codes that mean "the request's signatures do not verify": the CA answers
#: them with a CertRes carrying SIG_VALIDATION_FAIL rather than with a SET Error.
SIGNATURE_CODES = frozenset(
    {
        ErrorCode.ERROR_CODE_SIGNATURE_FAILURE,
        ErrorCode.ERROR_CODE_SIGNATURE_REQUIRED,
        ErrorCode.ERROR_CODE_DIGEST_MISMATCH,
    }
)


def refusal_status(error: ProtocolError) -> int | None:
    """The CertStatusCode for a CertReq that failed verification; None: answer a SET Error.

    ALGORITHM_NOT_ALLOWED from ``verify_cert_request`` always names a requested key (its
    type or size, or its KEM): a signature algorithm other than its key's is reported there
    as SIGNATURE_FAILURE. SET names no status for a refused key (SET-PROTOCOL.md 4.1, 7.7);
    rejectedByAgent, the CA's own refusal, fits it better than sigValidationFail.
    """
    if error.code in SIGNATURE_CODES:
        return SIG_VALIDATION_FAIL
    if error.code == ErrorCode.ERROR_CODE_ALGORITHM_NOT_ALLOWED:
        return REJECTED_BY_AGENT
    return None


# --- request kinds ----------------------------------------------------------------


@dataclass(frozen=True)
class RequestKind:
    """What a RequestType asks for: whose certificates, from which CA, new or renewed."""

    request_type: int
    subject_type: int
    ca_type: int
    renewal: bool

    @property
    def wants_key_exchange(self) -> bool:
        """Merchants and gateways get a key-exchange certificate too; cardholders do not."""
        return self.subject_type != roles.CARDHOLDER


_R = registration_pb2
REQUEST_KINDS: dict[int, RequestKind] = {
    kind.request_type: kind
    for kind in (
        RequestKind(_R.REQUEST_TYPE_CARD_INITIAL_SIG, roles.CARDHOLDER, roles.CARDHOLDER_CA, False),
        RequestKind(_R.REQUEST_TYPE_CARD_RENEWAL_SIG, roles.CARDHOLDER, roles.CARDHOLDER_CA, True),
        RequestKind(_R.REQUEST_TYPE_MER_INITIAL_BOTH, roles.MERCHANT, roles.MERCHANT_CA, False),
        RequestKind(_R.REQUEST_TYPE_MER_RENEWAL_BOTH, roles.MERCHANT, roles.MERCHANT_CA, True),
        RequestKind(
            _R.REQUEST_TYPE_PGWY_INITIAL_BOTH,
            roles.PAYMENT_GATEWAY,
            roles.PAYMENT_GATEWAY_CA,
            False,
        ),
        RequestKind(
            _R.REQUEST_TYPE_PGWY_RENEWAL_BOTH, roles.PAYMENT_GATEWAY, roles.PAYMENT_GATEWAY_CA, True
        ),
    )
}


def request_kind(request_type: int) -> RequestKind:
    """The kind of a RequestType; MESSAGE_NOT_SUPPORTED for one setpay does not serve."""
    kind = REQUEST_KINDS.get(request_type)
    if kind is None:
        raise fail(ErrorCode.ERROR_CODE_MESSAGE_NOT_SUPPORTED, "request type not supported")
    return kind


# --- keys without certificates ------------------------------------------------------


def spki_of(public_key: PublicKey) -> bytes:
    """The DER SubjectPublicKeyInfo of a public key."""
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def key_thumbprint(spki: bytes) -> bytes:
    """How a key without a certificate is named: SHA-256 of its DER SubjectPublicKeyInfo."""
    return thumbprint(spki)


def load_public_key(spki: bytes, what: str) -> PublicKey:
    """Parse a requested public key: allow-listed type and size, canonical DER only.

    Canonical encoding matters: the CA refuses to certify a key twice by comparing
    SubjectPublicKeyInfo thumbprints, which a second encoding of the same key would dodge.
    """
    try:
        key = serialization.load_der_public_key(spki)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise fail(ErrorCode.ERROR_CODE_DECODING_FAILURE, f"malformed {what}") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey):
        raise fail(ErrorCode.ERROR_CODE_ALGORITHM_NOT_ALLOWED, f"{what} of an unsupported type")
    algorithm_for_public_key(key)  # curve and RSA size allow-list
    if spki_of(key) != spki:
        raise fail(ErrorCode.ERROR_CODE_DECODING_FAILURE, f"{what} is not canonical DER")
    return key


# --- thumbs, bundles, forms -----------------------------------------------------------


def thumbs_message(thumbs: Sequence[bytes]) -> common_pb2.Thumbs:
    """The Thumbs a requester sends (what it already holds): as many, and each as long, as
    ``check_thumbs`` takes, so a wrong one is this side's error, not the peer's refusal."""
    if len(thumbs) > MAX_THUMBS:
        raise ConfigurationError(f"at most {MAX_THUMBS} thumbprints per request")
    if any(len(thumb) != THUMB_BYTES for thumb in thumbs):
        raise ConfigurationError(f"a thumbprint is {THUMB_BYTES} bytes (SHA-256)")
    return common_pb2.Thumbs(thumbs=list(thumbs))


def check_thumbs(thumbs: common_pb2.Thumbs) -> None:
    """Refuse more than ``MAX_THUMBS`` thumbprints or one that is not 32 bytes."""
    if len(thumbs.thumbs) > MAX_THUMBS or any(len(t) != THUMB_BYTES for t in thumbs.thumbs):
        raise fail(ErrorCode.ERROR_CODE_DECODING_FAILURE, "malformed Thumbs")


def check_thumbs_echo(sent: Sequence[bytes], echoed: common_pb2.Thumbs) -> None:
    """THUMBS_MISMATCH unless the signed answer echoes exactly the thumbprints we sent."""
    if list(echoed.thumbs) != list(sent):
        raise fail(ErrorCode.ERROR_CODE_THUMBS_MISMATCH, "Thumbs not echoed")


@dataclass(frozen=True)
class RevocationData:
    """The brand's current signed BCI and the CRLs it lists, as the CA staples them."""

    bci: bytes
    crls: tuple[bytes, ...]

    @property
    def thumbprint(self) -> bytes:
        """Thumbprint of the BCI (what a requester lists in Thumbs when it holds it)."""
        return thumbprint(self.bci)


def ca_bundle(
    ca: Credentials,
    *,
    revocation: RevocationData | None,
    held: Iterable[bytes] = (),
    issued: Sequence[bytes] = (),
) -> crypto_pb2.CertBundle:
    """The bundle of a CA answer: newly issued certificates, the CA's certificates and its
    key-exchange certificate, the BCI and CRLs; less whatever the requester holds."""
    skip = set(held)
    bundle = crypto_pb2.CertBundle()
    seen: set[bytes] = set()
    for der in (*issued, *ca.bundle().certificates):
        thumb = thumbprint(der)
        if thumb in seen or (thumb in skip and der not in issued):
            continue
        seen.add(thumb)
        bundle.certificates.append(der)
    if revocation is not None and revocation.thumbprint not in skip:
        bundle.brand_crl_identifier = revocation.bci
        bundle.crls.extend(revocation.crls)
    return bundle


@dataclass(frozen=True)
class FormTemplate:
    """A registration form the CA hands out: its id, the fields to fill in, the policy."""

    form_id: str
    fields: tuple[str, ...]
    policy_text: str

    def to_proto(self) -> registration_pb2.RegFormData:
        """The RegFormData carried in RegFormRes / Me-AqCInitRes."""
        return registration_pb2.RegFormData(
            reg_form_id=self.form_id,
            reg_template=[registration_pb2.RegField(name=name) for name in self.fields],
            policy_text=self.policy_text,
        )


@dataclass(frozen=True)
class RegistrationForm:
    """What the CA asked for: its challenge and the form to fill in (or a referral)."""

    request_type: int
    chall_ca: bytes
    form_id: str
    fields: tuple[str, ...]
    policy_text: str
    referral: str = ""


def read_form(
    request_type: int, chall_ca: bytes, form: registration_pb2.RegFormData, referral: str
) -> RegistrationForm:
    """A RegistrationForm from a signed answer; a form, unlike a referral, needs Chall-CA.

    Its text, which the requester prints, is bounded (the CA's signature says who wrote
    it, not that a person can read it): DECODING_FAILURE naming the part too long."""
    if not referral:
        check_id(chall_ca, "Chall-CA")
    if len(form.reg_template) > MAX_FORM_FIELDS:
        raise fail(ErrorCode.ERROR_CODE_DECODING_FAILURE, "registration form too large")
    for what, text, bound in (
        ("form id", form.reg_form_id, MAX_FORM_ID_CHARS),
        ("policy text", form.policy_text, MAX_POLICY_TEXT_CHARS),
        ("referral", referral, MAX_REFERRAL_CHARS),
        *(("field name", f.name, MAX_FORM_TEXT_CHARS) for f in form.reg_template),
    ):
        if len(text) > bound:
            raise fail(
                ErrorCode.ERROR_CODE_DECODING_FAILURE, f"form {what} over {bound} characters"
            )
    return RegistrationForm(
        request_type=request_type,
        chall_ca=chall_ca,
        form_id=form.reg_form_id,
        fields=tuple(field.name for field in form.reg_template),
        policy_text=form.policy_text,
        referral=referral,
    )


def form_fields(filled: Sequence[tuple[str, str]]) -> list[registration_pb2.RegField]:
    """The filled-in fields of a CertReq, bounded."""
    if len(filled) > MAX_FORM_FIELDS:
        raise ConfigurationError(f"at most {MAX_FORM_FIELDS} registration form fields")
    return [registration_pb2.RegField(name=name, value=value) for name, value in filled]


def check_form(data: registration_pb2.CertReqData) -> None:
    """Refuse an oversized filled-in form (the CA copies none of it into a certificate)."""
    if len(data.reg_form) > MAX_FORM_FIELDS or any(
        len(f.name) > MAX_FORM_TEXT_CHARS or len(f.value) > MAX_FORM_TEXT_CHARS
        for f in data.reg_form
    ):
        raise fail(ErrorCode.ERROR_CODE_DECODING_FAILURE, "registration form too large")


def fills_form(data: registration_pb2.CertReqData, form: FormTemplate) -> bool:
    """True when a CertReq fills in ``form``: its id, and only fields it asks for, once each.

    The CA checks this before it certifies anything (SET-PROTOCOL.md 4.3 rule 5): a request
    naming a form the CA never handed out, or filling in fields it never asked for, is not
    a registration it can validate.
    """
    names = [field.name for field in data.reg_form]
    return (
        data.reg_form_id == form.form_id
        and len(set(names)) == len(names)
        and set(names) <= set(form.fields)
    )


def completes_form(data: registration_pb2.CertReqData, form: FormTemplate) -> bool:
    """True when a CertReq fills in ``form`` (``fills_form``) and names every field it asks
    for: a cardholder's request leaving one out is not the registration the CA's form
    describes (SET-PROTOCOL.md 4.3: the filled form is what the issuer checks).

    A field may be filled in empty: the wallet sends what its holder gave, and nothing
    checks a value yet; a value the issuer can check (an enrolment code) would be refused
    empty by the issuer, not here.
    """
    names = {field.name for field in data.reg_form}
    return fills_form(data, form) and names == set(form.fields)


# --- the CA as a requester sees it ---------------------------------------------------


@dataclass(frozen=True)
class CaContact:
    """A CA as a requester knows it after the first exchange: who signs, where to seal."""

    signer: VerifiedCertificate
    key_exchange: VerifiedCertificate
    lid_ca: bytes

    def recipient(self) -> Recipient:
        """The CA key-exchange certificate registration data is sealed to."""
        return self.key_exchange.recipient()


def open_ca_answer(
    data: bytes,
    content_type: str,
    trust: TrustStore,
    ca_type: int,
    *,
    only: bytes | None = None,
    at: datetime | None = None,
) -> VerifiedSigned[VerifiedCertificate]:
    """Verify a CA-signed answer: install a newer stapled BCI, then check the CA's chain."""
    signed = parse_signed(data)
    trust.update_from_bundle(signed.bundle, at)
    return open_signed(signed, content_type, signer(trust, ca_type, only=only, at=at))


def resolve_ca_key_exchange(
    trust: TrustStore,
    ca: VerifiedCertificate,
    cae_thumb: bytes,
    bundle: crypto_pb2.CertBundle,
    *,
    at: datetime | None = None,
) -> VerifiedCertificate:
    """The CA key-exchange certificate CAEThumb names; it must be issued by that same CA."""
    kex = trust.resolve(cae_thumb, bundle, ca.certificate_type, CertificateUsage.KEY_EXCHANGE, at)
    if len(kex.chain_thumbs) < 2 or kex.chain_thumbs[1] != ca.thumbprint:
        raise fail(ErrorCode.ERROR_CODE_INVALID_CERTIFICATE, "CAEThumb names another CA's key")
    return kex


__all__ = [
    "CERT_STATUS_NAMES",
    "DECRYPTION_ERROR",
    "REJECTED_BY_AGENT",
    "REQUEST_COMPLETE",
    "REQUEST_IN_PROGRESS",
    "REQUEST_KINDS",
    "REQUEST_PENDED",
    "SIGNATURE_CODES",
    "SIG_VALIDATION_FAIL",
    "UNDECIDED",
    "CaContact",
    "FormTemplate",
    "RegistrationForm",
    "RequestKind",
    "RevocationData",
    "ca_bundle",
    "ca_error",
    "check_form",
    "check_thumbs",
    "check_thumbs_echo",
    "completes_form",
    "fills_form",
    "form_fields",
    "key_thumbprint",
    "load_public_key",
    "open_ca_answer",
    "read_form",
    "refusal_status",
    "request_kind",
    "resolve_ca_key_exchange",
    "spki_of",
    "thumbs_message",
]
