"""Who signed: resolving a signature's certificate through the trust store."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cryptography import x509

from hsm.base import PublicKey
from setcore.errors import ErrorCode, fail
from setcore.pki.roles import PAYMENT_GATEWAY, CertificateUsage
from setcore.pki.truststore import TrustStore
from setcore.pki.verified import VerifiedCertificate
from setcore.signed import SignerResolver
from setpay.v1 import crypto_pb2


def signer(
    trust: TrustStore,
    expected_type: int,
    *,
    only: bytes | None = None,
    at: datetime | None = None,
) -> SignerResolver[VerifiedCertificate]:
    """A resolver accepting signature certificates of ``expected_type`` (and, if given,
    only the certificate with thumbprint ``only``), valid at ``at`` (None: now)."""

    def resolve(
        signature: crypto_pb2.Signature, bundle: crypto_pb2.CertBundle
    ) -> tuple[PublicKey, VerifiedCertificate]:
        if only is not None and signature.signer_cert_thumb != only:
            raise fail(ErrorCode.ERROR_CODE_INVALID_CERTIFICATE, "signed by an unexpected party")
        verified = trust.resolve(
            signature.signer_cert_thumb, bundle, expected_type, CertificateUsage.SIGNATURE, at
        )
        return verified.public_key, verified

    return resolve


@dataclass(frozen=True)
class GatewayIdentity:
    """Who the merchant's gateway is: the subject name of its signature certificate, in
    the merchant's brand. Not a certificate: it outlives a renewal of the gateway's keys.

    The whole subject DN, not its CommonName alone: the DN is the name X.509 gives an end
    entity (RFC 5280 4.1.2.6) and the name the gateway's CA issues every renewed
    certificate under, and a CN alone would let a name that agrees on the CN and differs
    in another attribute stand for the gateway. Comparison is ``x509.Name`` equality
    (attribute types and values in order; the string encoding does not matter).
    """

    subject: x509.Name
    brand_id: str

    @classmethod
    def of(cls, certificate: VerifiedCertificate) -> GatewayIdentity:
        """The identity of a verified gateway signature certificate (the one the
        merchant's PCertRes named)."""
        if (
            certificate.certificate_type != PAYMENT_GATEWAY
            or certificate.usage is not CertificateUsage.SIGNATURE
        ):
            raise ValueError("a gateway identity comes from a gateway signature certificate")
        return cls(certificate.cert.subject, certificate.brand_id)

    def __str__(self) -> str:
        return f"'{self.subject.rfc4514_string()}' (brand {self.brand_id})"


def gateway_signer(
    trust: TrustStore, gateway: GatewayIdentity, *, at: datetime | None = None
) -> SignerResolver[VerifiedCertificate]:
    """A resolver for the answers of the merchant's gateway.

    Accepted: a PAYMENT_GATEWAY signature certificate whose chain ends at the trusted
    root, valid at ``at`` and unrevoked (``TrustStore.resolve``), of ``gateway``'s brand
    and subject (SET-PROTOCOL.md 7.4: the gateway the merchant's verified PCertRes named).
    Another gateway, even one the same root certified, is refused; the same gateway's
    renewed certificate, and its previous one (a stored answer signed before a renewal,
    sent again to a retry), are its word.
    """

    def resolve(
        signature: crypto_pb2.Signature, bundle: crypto_pb2.CertBundle
    ) -> tuple[PublicKey, VerifiedCertificate]:
        verified = trust.resolve(
            signature.signer_cert_thumb, bundle, PAYMENT_GATEWAY, CertificateUsage.SIGNATURE, at
        )
        if verified.cert.subject != gateway.subject or verified.brand_id != gateway.brand_id:
            got = GatewayIdentity(verified.cert.subject, verified.brand_id)
            raise fail(
                ErrorCode.ERROR_CODE_INVALID_CERTIFICATE,
                f"answer signed by gateway {got} (certificate {verified.thumbprint.hex()[:16]}),"
                f" not by {gateway}, the gateway the merchant's PCertRes named",
            )
        return verified.public_key, verified

    return resolve
