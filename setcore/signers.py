"""Who signed: resolving a signature's certificate through the trust store."""

from __future__ import annotations

from datetime import datetime

from hsm.base import PublicKey
from setcore.errors import ErrorCode, fail
from setcore.pki.roles import CertificateUsage
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
