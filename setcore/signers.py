"""Who signed: resolving a signature's certificate through the trust store."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

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


def gateway_signer(
    trust: TrustStore, accepted: Collection[bytes] | None, *, at: datetime | None = None
) -> SignerResolver[VerifiedCertificate]:
    """A resolver for the answers of the merchant's gateway.

    ``accepted`` holds the thumbprints of the signature certificates the merchant's
    verified PCertRes named (SET-PROTOCOL.md 7.4): an answer signed by any other gateway
    certificate, even one the same brand certified, is not its gateway's word. None
    accepts every gateway of the brand (tools and tests that know no PCertRes).
    """
    if accepted is None:
        return signer(trust, PAYMENT_GATEWAY, at=at)

    def resolve(
        signature: crypto_pb2.Signature, bundle: crypto_pb2.CertBundle
    ) -> tuple[PublicKey, VerifiedCertificate]:
        if signature.signer_cert_thumb not in accepted:
            raise fail(
                ErrorCode.ERROR_CODE_INVALID_CERTIFICATE,
                f"answer signed by gateway certificate {signature.signer_cert_thumb.hex()[:16]},"
                " not one the merchant's PCertRes named",
            )
        verified = trust.resolve(
            signature.signer_cert_thumb, bundle, PAYMENT_GATEWAY, CertificateUsage.SIGNATURE, at
        )
        return verified.public_key, verified

    return resolve
