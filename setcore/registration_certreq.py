"""The certificate request core: CertReq sealing and opening, CertResData, CertInq.

    CertReq   Sealed(Signed(CertReqData) [, extra])   signed by the NEW key (proof of
              possession) and, for a renewal, countersigned by the key being renewed;
              CertReqData.dd_extra = DD(extra) puts PANData0 / AcctData under the signatures
    CertRes   Signed(CertResData), new certificates in the bundle named by CertThumbs
    CertInq   Signed(CertInqReqTBS) by the key of the pended request

The CA reads the new public key out of the CertReqData before it can verify anything:
that is the nature of proof of possession, and the bytes are parsed strictly all the same.
The cardholder and merchant modules wrap these with what differs (extra parts, EncK).
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography.hazmat.primitives.asymmetric import ec, rsa

from hsm.base import KemAlgorithm, KeyBackend, KeyHandle, PublicKey
from setcore.credentials import Credentials
from setcore.encoding import content_type_of, digest, parse_strict, thumbprint
from setcore.enum_names import code_name
from setcore.envelope import Recipient, open_sealed, seal
from setcore.errors import ConfigurationError, ErrorCode, ProtocolError, SetcoreError, fail
from setcore.freshness import (
    check_date,
    check_echo,
    check_id,
    check_lid,
    check_rrpid,
    new_id,
    now_ms,
)
from setcore.pki.issuance import check_kem
from setcore.pki.roles import CertificateUsage
from setcore.pki.truststore import TrustStore
from setcore.pki.verified import VerifiedCertificate
from setcore.purchase import check_header_without_transaction, header
from setcore.registration import (
    CERT_STATUS_NAMES,
    DECRYPTION_ERROR,
    RequestKind,
    RevocationData,
    ca_bundle,
    check_form,
    check_thumbs,
    check_thumbs_echo,
    key_thumbprint,
    load_public_key,
    request_kind,
    spki_of,
    thumbs_message,
)
from setcore.signed import countersign, open_signed, parse_signed, sign, verify_signature
from setcore.signers import signer
from setpay.v1 import common_pb2, crypto_pb2, registration_pb2

CERT_REQ_CT = content_type_of(registration_pb2.CertReqData)
CERT_RES_CT = content_type_of(registration_pb2.CertResData)
CERT_INQ_REQ_CT = content_type_of(registration_pb2.CertInqReqTBS)
# Free text from the CA to the requester (SET's EEMessage).
MAX_EE_MESSAGE_CHARS = 512


# --- CertReq: sealing and opening ---------------------------------------------------


def seal_cert_request(
    data: registration_pb2.CertReqData,
    backend: KeyBackend,
    new_key: KeyHandle,
    ca: Recipient,
    *,
    extra: tuple[str, bytes] | None = None,
    renewing: Credentials | None = None,
) -> registration_pb2.CertRequest:
    """Enc / EncX: CertReqData signed by the new key (and the renewed one), sealed to the CA.

    Sets ``content_type`` and ``dd_extra`` (the digest that puts the extra part under the
    signatures); the caller fills in the rest.
    """
    data.content_type = CERT_REQ_CT
    if extra is not None:
        data.dd_extra = digest(extra[0], extra[1])
    tbs = data.SerializeToString()
    new_thumb = key_thumbprint(spki_of(new_key.public_key))
    bundle = renewing.bundle() if renewing is not None else None
    signed = sign(backend, new_key, new_thumb, CERT_REQ_CT, tbs, bundle)
    if renewing is not None:
        countersign(renewing.backend, renewing.signature_key, renewing.signature_thumb, signed)
    sealed = seal(CERT_REQ_CT, signed.SerializeToString(), ca, rrpid=data.rrpid, extra=extra)
    return registration_pb2.CertRequest(
        header=header(rrpid=data.rrpid), cert_req=sealed.SerializeToString()
    )


@dataclass(frozen=True)
class CertRequestEnvelope:
    """What a CA reads of a CertReq before opening it: the RRPID and whose key it is for.

    Both are bound into the AEAD associated data, so they are authentic once the envelope
    opens; before that they only select a stored answer or the CA key to try.
    """

    sealed: crypto_pb2.Sealed
    rrpid: bytes
    recipient_thumb: bytes


def peek_cert_request(request: registration_pb2.CertRequest) -> CertRequestEnvelope:
    """Parse the outer envelope of a CertReq."""
    sealed = parse_strict(crypto_pb2.Sealed, request.cert_req, own_content_type=False)
    check_id(sealed.rrpid, "RRPID")
    check_header_without_transaction(request.header, sealed.rrpid)
    return CertRequestEnvelope(sealed, sealed.rrpid, sealed.recipient_cert_thumb)


@dataclass(frozen=True, repr=False)
class OpenedCertRequest:
    """A decrypted CertReq whose signatures are NOT yet verified."""

    signed: crypto_pb2.Signed
    data: registration_pb2.CertReqData
    extra_type: str | None
    extra: bytes | None

    def __repr__(self) -> str:
        return f"OpenedCertRequest(rrpid={self.data.rrpid.hex()[:16]}...)"


def open_cert_request(
    envelope: CertRequestEnvelope,
    ca: Credentials,
    extra_types: frozenset[str | None],
    *,
    now: int | None = None,
    judge_date: bool = True,
) -> OpenedCertRequest:
    """Open a CertReq sealed to ``ca``; DECRYPTION_FAILURE / DECODING_FAILURE on failure.

    ``extra_types`` lists the extra parts this CA accepts (None: no extra part); ``now``
    (Unix ms, the CA's clock; default the real one) judges RequestDate. ``judge_date``
    False leaves RequestDate unjudged: only for the very bytes of a request the CA judged
    fresh before and recorded as such (by their digest), resent after its answer was lost,
    as a stored answer is given to a resend whatever its age.
    """
    extra_type = envelope.sealed.extra_content_type or None
    if extra_type not in extra_types:
        raise fail(ErrorCode.ERROR_CODE_DECODING_FAILURE, "unexpected extra part")
    kex_key, kex_thumb = ca.require_key_exchange()
    opened = open_sealed(
        envelope.sealed, ca.backend, kex_key, kex_thumb, CERT_REQ_CT, extra_type=extra_type
    )
    signed = parse_signed(opened.plaintext)
    if signed.content_type != CERT_REQ_CT:
        raise fail(ErrorCode.ERROR_CODE_DECODING_FAILURE, "sealed CertReq holds another type")
    # Read before verifying: the key that verifies the request is inside it (PoP).
    data = parse_strict(registration_pb2.CertReqData, signed.tbs)
    if data.rrpid != envelope.rrpid:
        raise fail(ErrorCode.ERROR_CODE_WRAPPER_MSG_MISMATCH, "envelope RRPID differs")
    check_id(data.chall_ee3, "Chall-EE3")
    check_lid(data.lid_ee, "LID-EE")
    check_lid(data.lid_ca, "LID-CA")
    check_thumbs(data.thumbs)
    check_form(data)
    # A retry of a request already answered gets its stored answer before this point.
    if judge_date:
        check_date(data.request_date_unix_ms, now_ms() if now is None else now)
    return OpenedCertRequest(signed, data, extra_type, opened.extra)


@dataclass(frozen=True)
class ProvenKeys:
    """What a CertReq's signatures proved: the new keys and, for a renewal, the old one."""

    kind: RequestKind
    signature_key: PublicKey
    signature_spki: bytes
    key_exchange_key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey | None
    key_exchange_spki: bytes | None
    kem: KemAlgorithm | None
    renewed: VerifiedCertificate | None

    @property
    def key_thumbs(self) -> tuple[bytes, ...]:
        """Thumbprints of every key the request wants certified."""
        spkis = (self.signature_spki, self.key_exchange_spki)
        return tuple(key_thumbprint(s) for s in spkis if s is not None)


def _key_exchange(
    data: registration_pb2.CertReqData,
) -> tuple[ec.EllipticCurvePublicKey | rsa.RSAPublicKey, KemAlgorithm]:
    key = load_public_key(data.public_key_enc, "key-exchange key")
    if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
        raise fail(ErrorCode.ERROR_CODE_ALGORITHM_NOT_ALLOWED, "key exchange needs EC or RSA")
    try:
        kem = KemAlgorithm(data.public_key_enc_kem)
    except ValueError as exc:
        raise fail(ErrorCode.ERROR_CODE_ALGORITHM_NOT_ALLOWED, "unknown KEM") from exc
    check_kem(key, kem)
    return key, kem


def _verify_proof(key: PublicKey, signature: crypto_pb2.Signature, tbs: bytes) -> None:
    # The key already passed the allow-list (``load_public_key`` or the renewed certificate's
    # chain), so ALGORITHM_NOT_ALLOWED here means the signature names another algorithm than
    # its key's: a bad signature (SIG_VALIDATION_FAIL), not a key the CA refuses.
    try:
        verify_signature(key, signature, CERT_REQ_CT, tbs)
    except ProtocolError as exc:
        if exc.code != ErrorCode.ERROR_CODE_ALGORITHM_NOT_ALLOWED:
            raise
        raise fail(ErrorCode.ERROR_CODE_SIGNATURE_FAILURE, exc.reason) from exc


def verify_cert_request(
    opened: OpenedCertRequest, trust: TrustStore, *, at: datetime | None = None
) -> ProvenKeys:
    """Verify the proof of possession, the renewal signature and the extra-part link.

    A new certificate needs exactly one signature, by the new key; a renewal exactly two:
    the new key's and the renewed certificate's (SET-PROTOCOL.md 4.3 rule 2). ``at`` is the
    CA's clock, by which the renewed certificate must be valid. ALGORITHM_NOT_ALLOWED is
    raised only for a requested key (or KEM) off the allow-list (``refusal_status``).
    """
    data, signed = opened.data, opened.signed
    kind = request_kind(data.request_type)
    wanted = 2 if kind.renewal else 1
    if len(signed.signatures) < wanted:
        raise fail(ErrorCode.ERROR_CODE_SIGNATURE_REQUIRED, f"{wanted} signature(s) required")
    if len(signed.signatures) > wanted:
        raise fail(ErrorCode.ERROR_CODE_SIGNATURE_FAILURE, "unexpected extra signature")
    key = load_public_key(data.public_key_sig, "signature key")
    proof = signed.signatures[0]
    if proof.signer_cert_thumb != key_thumbprint(data.public_key_sig):
        raise fail(ErrorCode.ERROR_CODE_SIGNATURE_FAILURE, "not signed by the key to certify")
    _verify_proof(key, proof, signed.tbs)
    if opened.extra is not None and opened.extra_type is not None:
        if not hmac.compare_digest(data.dd_extra, digest(opened.extra_type, opened.extra)):
            raise fail(ErrorCode.ERROR_CODE_DIGEST_MISMATCH, "extra part is not the signed one")
    elif data.dd_extra:
        raise fail(ErrorCode.ERROR_CODE_DIGEST_MISMATCH, "signed extra part is missing")
    renewed = None
    if kind.renewal:
        old = signed.signatures[1]
        if old.signer_cert_thumb != data.ee_thumb:
            raise fail(ErrorCode.ERROR_CODE_SIGNATURE_FAILURE, "not signed by the renewed key")
        renewed = trust.resolve(
            data.ee_thumb, signed.bundle, kind.subject_type, CertificateUsage.SIGNATURE, at
        )
        _verify_proof(renewed.public_key, old, signed.tbs)
    elif data.ee_thumb:
        raise fail(ErrorCode.ERROR_CODE_DECODING_FAILURE, "EEThumb in a new-certificate request")
    if kind.wants_key_exchange:
        enc, kem = _key_exchange(data)
        return ProvenKeys(kind, key, data.public_key_sig, enc, data.public_key_enc, kem, renewed)
    if data.public_key_enc or data.public_key_enc_kem:
        raise fail(ErrorCode.ERROR_CODE_DECODING_FAILURE, "key-exchange key for a cardholder")
    return ProvenKeys(kind, key, data.public_key_sig, None, None, None, renewed)


# --- CertRes ------------------------------------------------------------------------


@dataclass(frozen=True)
class CertAnswer:
    """Who a CertRes answers and what it says (the CA side's input to CertResData)."""

    rrpid: bytes
    lid_ee: bytes
    chall_ee3: bytes
    lid_ca: bytes
    thumbs: tuple[bytes, ...] = ()


def sign_cert_result(
    ca: Credentials,
    answer: CertAnswer,
    status: int,
    *,
    revocation: RevocationData | None,
    certificates: Sequence[bytes] = (),
    nonce_cca: bytes = b"",
    ee_message: str = "",
) -> crypto_pb2.Signed:
    """Signed(CertResData); new certificates travel in the bundle, named by CertThumbs."""
    if len(ee_message) > MAX_EE_MESSAGE_CHARS:
        raise ConfigurationError(f"EEMessage is at most {MAX_EE_MESSAGE_CHARS} characters")
    data = registration_pb2.CertResData(
        content_type=CERT_RES_CT,
        rrpid=answer.rrpid,
        lid_ee=answer.lid_ee,
        chall_ee3=answer.chall_ee3,
        lid_ca=answer.lid_ca,
        cert_status=registration_pb2.CertStatus(
            cert_status_code=status,  # type: ignore[arg-type]
            nonce_cca=nonce_cca,
            ee_message=ee_message,
        ),
        cert_thumbs=[thumbprint(der) for der in certificates],
        thumbs=common_pb2.Thumbs(thumbs=list(answer.thumbs)),
    ).SerializeToString()
    bundle = ca_bundle(ca, revocation=revocation, held=answer.thumbs, issued=certificates)
    return sign(ca.backend, ca.signature_key, ca.signature_thumb, CERT_RES_CT, data, bundle)


@dataclass(frozen=True)
class Exchange:
    """What a requester remembers to check the CA's CertRes against; ``request_digest``:
    of the CertReq or CertInqReq as sent, which the CA's Error must name."""

    rrpid: bytes
    chall_ee3: bytes
    lid_ee: bytes
    lid_ca: bytes
    ca: VerifiedCertificate
    thumbs: tuple[bytes, ...] = ()
    request_digest: bytes = b""


class CertStatusUnknown(SetcoreError):
    """Our CA's answer to our request, verified as every answer is (signature, RRPID,
    header, Chall-EE3, LIDs, Thumbs), carries a CertStatusCode this release does not
    define: a CA of a later release. It may have pended the request or refused it, and
    nothing here can tell which, so the answer is neither: the requester installs nothing
    and keeps its request, for a release that knows the status to read the same answer.
    ``status``: the code, named as ``setcore.enum_names.code_name`` names it."""

    def __init__(self, status: int) -> None:
        self.status = status
        self.status_name = code_name(registration_pb2.CertStatusCode, status)
        super().__init__(
            f"the CA answered {self.status_name}, a status this release does not know: "
            "the outcome of the request is unknown"
        )


def open_cert_result(
    signed: crypto_pb2.Signed,
    plain: common_pb2.Header,
    exchange: Exchange,
    trust: TrustStore,
    *,
    at: datetime | None = None,
) -> registration_pb2.CertResData:
    """Verify CertResData: signed by our CA, answering our request with our challenge.

    ``plain`` is the answer's header: it may name the signed RRPID and nothing else. A
    DECRYPTION_ERROR answer names only the RRPID (the CA could read nothing else). A
    status this release does not define raises ``CertStatusUnknown``, after every other
    check passed: a forged or misdirected answer is refused as any other is.
    """
    trust.update_from_bundle(signed.bundle, at)
    resolve = signer(trust, exchange.ca.certificate_type, only=exchange.ca.thumbprint, at=at)
    verified = open_signed(signed, CERT_RES_CT, resolve)
    data = parse_strict(registration_pb2.CertResData, verified.tbs)
    check_header_without_transaction(plain, data.rrpid)
    check_rrpid(exchange.rrpid, data.rrpid)
    status = data.cert_status.cert_status_code
    if status == registration_pb2.CERT_STATUS_CODE_UNSPECIFIED:
        raise fail(ErrorCode.ERROR_CODE_DECODING_FAILURE, "unspecified CertStatusCode")
    if len(data.cert_status.ee_message) > MAX_EE_MESSAGE_CHARS:
        reason = f"EEMessage over {MAX_EE_MESSAGE_CHARS} characters"
        raise fail(ErrorCode.ERROR_CODE_DECODING_FAILURE, reason)
    if status == DECRYPTION_ERROR:
        return data
    check_echo(exchange.chall_ee3, data.chall_ee3, "Chall-EE3")
    if data.lid_ee != exchange.lid_ee or data.lid_ca != exchange.lid_ca:
        raise fail(ErrorCode.ERROR_CODE_UNKNOWN_LID, "CertRes for another registration")
    check_thumbs_echo(exchange.thumbs, data.thumbs)
    if status not in CERT_STATUS_NAMES:
        # Only now, the answer being our CA's to this very request: a later release's
        # status, which no reader here may take for a refusal or a pended request.
        raise CertStatusUnknown(status)
    return data


def issued_certificate(
    trust: TrustStore,
    bundle: crypto_pb2.CertBundle,
    thumb: bytes,
    subject_type: int,
    usage: CertificateUsage,
    own_key: PublicKey,
    *,
    at: datetime | None = None,
) -> VerifiedCertificate:
    """A certificate the CA issued to us: chain to the root, role, and our own key."""
    cert = trust.resolve(thumb, bundle, subject_type, usage, at)
    if not hmac.compare_digest(spki_of(cert.public_key), spki_of(own_key)):
        raise fail(ErrorCode.ERROR_CODE_INVALID_CERTIFICATE, "certificate for another key")
    return cert


def chain_of(
    cert: VerifiedCertificate, bundle: crypto_pb2.CertBundle, trust: TrustStore
) -> tuple[bytes, ...]:
    """The CA certificates between ``cert`` and the root (what Credentials.chain holds)."""
    by_thumb = {thumbprint(der): der for der in bundle.certificates}
    chain: list[bytes] = []
    for thumb in cert.chain_thumbs[1:-1]:
        der = by_thumb.get(thumb) or trust.certificate(thumb)
        if der is None:
            raise fail(ErrorCode.ERROR_CODE_MISSING_CERTIFICATE, "issuing CA certificate missing")
        chain.append(der)
    return tuple(chain)


# --- CertInq ------------------------------------------------------------------------


def build_cert_inquiry(
    backend: KeyBackend,
    key: KeyHandle,
    lid_ee: bytes,
    lid_ca: bytes,
    *,
    thumbs: Sequence[bytes] = (),
) -> tuple[registration_pb2.CertInqRequest, bytes, bytes]:
    """CertInqReq signed by the key the pended request certifies; (request, RRPID, Chall)."""
    rrpid, chall = new_id(), new_id()
    tbs = registration_pb2.CertInqReqTBS(
        content_type=CERT_INQ_REQ_CT, rrpid=rrpid, lid_ee=lid_ee, chall_ee3=chall,
        lid_ca=lid_ca, thumbs=thumbs_message(thumbs),
    ).SerializeToString()  # fmt: skip
    signed = sign(backend, key, key_thumbprint(spki_of(key.public_key)), CERT_INQ_REQ_CT, tbs)
    request = registration_pb2.CertInqRequest(
        header=header(rrpid=rrpid), cert_inq_req=signed.SerializeToString()
    )
    return request, rrpid, chall


def read_cert_inquiry(
    request: registration_pb2.CertInqRequest,
) -> tuple[registration_pb2.CertInqReqTBS, crypto_pb2.Signed]:
    """Parse a CertInqReq (NOT verified: the CA finds the request's key by its LIDs)."""
    signed = parse_signed(request.cert_inq_req)
    if signed.content_type != CERT_INQ_REQ_CT:
        raise fail(ErrorCode.ERROR_CODE_DECODING_FAILURE, "not a CertInqReq")
    if len(signed.signatures) != 1:
        raise fail(ErrorCode.ERROR_CODE_SIGNATURE_FAILURE, "exactly one signature expected")
    tbs = parse_strict(registration_pb2.CertInqReqTBS, signed.tbs)
    check_id(tbs.rrpid, "RRPID")
    check_id(tbs.chall_ee3, "Chall-EE3")
    check_lid(tbs.lid_ee, "LID-EE")
    check_lid(tbs.lid_ca, "LID-CA")
    check_thumbs(tbs.thumbs)
    check_header_without_transaction(request.header, tbs.rrpid)
    return tbs, signed


def verify_cert_inquiry(signed: crypto_pb2.Signed, spki: bytes) -> None:
    """Verify a CertInqReq with the key of the request it asks about."""
    signature = signed.signatures[0]
    if signature.signer_cert_thumb != key_thumbprint(spki):
        raise fail(ErrorCode.ERROR_CODE_SIGNATURE_FAILURE, "not signed by the requested key")
    verify_signature(load_public_key(spki, "key"), signature, CERT_INQ_REQ_CT, signed.tbs)


__all__ = [
    "CERT_INQ_REQ_CT",
    "CERT_REQ_CT",
    "CERT_RES_CT",
    "CertAnswer",
    "CertRequestEnvelope",
    "CertStatusUnknown",
    "Exchange",
    "OpenedCertRequest",
    "ProvenKeys",
    "build_cert_inquiry",
    "chain_of",
    "issued_certificate",
    "open_cert_request",
    "open_cert_result",
    "peek_cert_request",
    "read_cert_inquiry",
    "seal_cert_request",
    "sign_cert_result",
    "verify_cert_inquiry",
    "verify_cert_request",
]
