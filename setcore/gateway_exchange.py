"""What every merchant request to the gateway and the gateway's answer share.

AuthReq, AuthRevReq, CapReq, CapRevOrCredReq and BatchAdminReq each carry RRTags
(SET-PROTOCOL.md 3.2: a new RRPID, the merchant's ids, the date, the key to answer to;
and, 9.3.3, the gateway certificate the request is sealed to);
the EncB ones are opened the same way, and every answer must name the merchant and the
exact request it answers (``request_digest``). The message modules (``authorization``,
``auth_reversal``, ``capture``, ``cap_rev_or_cred``, ``gateway_admin``) build on these.
"""

from __future__ import annotations

import hmac
from datetime import datetime

from setcore.credentials import Credentials
from setcore.encoding import digest, parse_strict
from setcore.envelope import Recipient
from setcore.errors import ErrorCode, fail
from setcore.freshness import check_date, check_id, now_ms
from setcore.link import open_with_baggage
from setcore.pki.roles import MERCHANT, CertificateUsage
from setcore.pki.truststore import TrustStore
from setcore.pki.verified import VerifiedCertificate
from setcore.signers import GatewayIdentity, gateway_signer, signer
from setpay.v1 import common_pb2, crypto_pb2


def request_digest(wire_type: str, request_bytes: bytes) -> bytes:
    """The digest a gateway response carries to name the exact request it answers."""
    return digest(wire_type, request_bytes)


def merchant_id_of(cert: VerifiedCertificate) -> str:
    """The merchant id a merchant certificate carries; INVALID_CERTIFICATE without one."""
    if cert.merchant_data is None:
        raise fail(ErrorCode.ERROR_CODE_INVALID_CERTIFICATE, "merchant certificate lacks its id")
    return cert.merchant_data.merchant_id


def peek_rrpid(request_bytes: bytes) -> bytes:
    """The RRPID a sealed request claims in clear (for idempotency lookups before opening).

    Unauthenticated: it only selects a stored response, which is returned only for the
    same request bytes.
    """
    envelope = parse_strict(crypto_pb2.SealedWithBaggage, request_bytes)
    return envelope.sealed.rrpid


def open_merchant_request(
    credentials: Credentials,
    trust: TrustStore,
    envelope_bytes: bytes,
    content_type: str,
    baggage_type: str,
    *,
    at: datetime | None = None,
) -> tuple[bytes, VerifiedCertificate, crypto_pb2.SealedWithBaggage, crypto_pb2.CertBundle]:
    """Open an EncB request from a merchant: its signed t, the merchant, the envelope, bundle.

    Opened with the key-exchange key of the certificate it is sealed to, as
    ``credentials`` choose it (``Credentials.key_exchange_for``).
    """
    envelope = parse_strict(crypto_pb2.SealedWithBaggage, envelope_bytes)
    kex_key, my_thumb = credentials.key_exchange_for(envelope.sealed.recipient_cert_thumb)
    t1, verified = open_with_baggage(
        envelope, credentials.backend, kex_key, my_thumb, content_type, baggage_type,
        signer(trust, MERCHANT, at=at),
    )  # fmt: skip
    return t1, verified.signer, envelope, verified.signed.bundle


def check_rr_tags(
    tags: common_pb2.RRTags,
    envelope: crypto_pb2.SealedWithBaggage | crypto_pb2.Sealed,
    merchant: VerifiedCertificate,
    bundle: crypto_pb2.CertBundle,
    trust: TrustStore,
    *,
    at: datetime | None = None,
    now: int | None = None,
) -> tuple[str, Recipient]:
    """Checks every merchant request shares: ids, freshness, merchant id, response key, and
    that the merchant signed for the gateway certificate the request is sealed to.

    The envelope's recipient is the certificate that opened it, this gateway's (the
    current one or one kept since a renewal); the signed one names it, or whoever could
    open the envelope could seal the merchant's request again to another gateway
    (SET-PROTOCOL.md 9.3.3). Naming none is refused as naming another.
    """
    sealed = envelope.sealed if isinstance(envelope, crypto_pb2.SealedWithBaggage) else envelope
    check_id(tags.rrpid, "RRPID")
    if sealed.rrpid != tags.rrpid:
        raise fail(ErrorCode.ERROR_CODE_WRAPPER_MSG_MISMATCH, "envelope RRPID differs")
    if not tags.recipient_cert_thumb or not hmac.compare_digest(
        tags.recipient_cert_thumb, sealed.recipient_cert_thumb
    ):
        raise fail(ErrorCode.ERROR_CODE_WRONG_RECIPIENT, "request signed for another gateway")
    check_date(tags.date_unix_ms, now_ms() if now is None else now)
    merchant_id = merchant_id_of(merchant)
    if tags.mer_term_ids.merchant_id != merchant_id:
        raise fail(ErrorCode.ERROR_CODE_MERCHANT_MISMATCH, "MerchantID differs from certificate")
    kex = trust.resolve(
        tags.response_cert_thumb, bundle, MERCHANT, CertificateUsage.KEY_EXCHANGE, at
    )
    if merchant_id_of(kex) != merchant_id:
        raise fail(ErrorCode.ERROR_CODE_MERCHANT_MISMATCH, "response key of another merchant")
    return merchant_id, kex.recipient()


def open_gateway_response(
    credentials: Credentials,
    trust: TrustStore,
    envelope_bytes: bytes,
    content_type: str,
    baggage_type: str,
    *,
    xid: bytes,
    rrpid: bytes,
    gateway_identity: GatewayIdentity,
) -> tuple[bytes, crypto_pb2.SealedWithBaggage, VerifiedCertificate]:
    """Open an EncB response from the gateway: signed t, the envelope, the gateway.

    Signed by a certificate of ``gateway_identity`` only (``signers.gateway_signer``).
    Opened with the key-exchange key of the certificate it is sealed to, as
    ``credentials`` choose it (``Credentials.key_exchange_for``): the one the request
    named, which may be a key the merchant has renewed since it stored the request.
    """
    envelope = parse_strict(crypto_pb2.SealedWithBaggage, envelope_bytes)
    kex_key, my_thumb = credentials.key_exchange_for(envelope.sealed.recipient_cert_thumb)
    t1, verified = open_with_baggage(
        envelope, credentials.backend, kex_key, my_thumb, content_type, baggage_type,
        gateway_signer(trust, gateway_identity), xid=xid, rrpid=rrpid,
    )  # fmt: skip
    return t1, envelope, verified.signer


def check_names_us(
    credentials: Credentials, merchant_cert_thumb: bytes, digest_got: bytes, digest_sent: bytes
) -> None:
    """A gateway response must name this merchant and the exact request it answers.

    The merchant is named by the signature certificate the request was signed with: its
    current one, or one it had before a renewal (``Credentials.signs_as``), for a request
    stored before it and sent again since.
    """
    if not credentials.signs_as(merchant_cert_thumb):
        raise fail(ErrorCode.ERROR_CODE_MERCHANT_MISMATCH, "response names another merchant")
    if not hmac.compare_digest(digest_got, digest_sent):
        raise fail(ErrorCode.ERROR_CODE_DIGEST_MISMATCH, "response answers another request")
