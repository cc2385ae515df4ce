"""setpay's PKI: issuing SET certificates, CRLs and BrandCRLIdentifiers, and validating them.

    issuance     brand root, CAs, cardholder / merchant / gateway certificates
    tls          transport certificates for gRPC (not SET certificates)
    crl, bci     CRLs and the brand's signed list of current CRLs
    truststore   chain validation to a pinned root, with revocation and caches
    hierarchy    a whole brand tree at once (init, demo, tests)

Private keys are used only through ``hsm.base.KeyBackend`` (``backend_key``).

Errors (the tree of ``setcore.errors``, nothing new but one subclass):

    SetcoreError
    ├── ProtocolError            a check failed; ``code`` is the SET ErrorCode:
    │   │                        INVALID_CERTIFICATE, EXPIRED_CERTIFICATE,
    │   │                        REVOKED_CERTIFICATE, MISSING_CERTIFICATE,
    │   │                        WRONG_CERTIFICATE_ROLE, SIGNATURE_FAILURE,
    │   │                        ALGORITHM_NOT_ALLOWED, UNRECOGNIZED_EXTENSION,
    │   │                        DECODING_FAILURE
    │   └── RevocationUnavailable  no current BCI, or a CA it does not list
    │                            (INVALID_CERTIFICATE; fetch the BCI and retry)
    └── ConfigurationError       the caller asked for something impossible (a merchant
                                 certificate from the Cardholder CA, naive datetimes)

Errors of the key backend (``hsm.errors.KeyBackendError``) pass through unchanged:
they belong to the backend's tree and say what the backend could not do.
"""

from __future__ import annotations

from setcore.envelope import Recipient
from setcore.pki.bci import (
    RevocationSnapshot,
    RevocationUnavailable,
    issue_brand_crl_identifier,
)
from setcore.pki.crl import RevokedCertificate, issue_crl
from setcore.pki.extensions import MerchantData
from setcore.pki.hierarchy import Brand, SubordinateCA, create_brand
from setcore.pki.issuance import (
    IssuingCA,
    card_expiry_end,
    create_brand_root,
    issue_ca_certificate,
    issue_ca_key_exchange,
    issue_cardholder,
    issue_gateway,
    issue_merchant,
    kem_for,
)
from setcore.pki.roles import CertificateType, CertificateUsage
from setcore.pki.tls import TlsCredentials, issue_tls_client, issue_tls_server
from setcore.pki.truststore import TrustCounters, TrustStore
from setcore.pki.verified import VerifiedCertificate

__all__ = [
    "Brand",
    "CertificateType",
    "CertificateUsage",
    "IssuingCA",
    "MerchantData",
    "Recipient",
    "RevocationSnapshot",
    "RevocationUnavailable",
    "RevokedCertificate",
    "SubordinateCA",
    "TlsCredentials",
    "TrustCounters",
    "TrustStore",
    "VerifiedCertificate",
    "card_expiry_end",
    "create_brand",
    "create_brand_root",
    "issue_brand_crl_identifier",
    "issue_ca_certificate",
    "issue_ca_key_exchange",
    "issue_cardholder",
    "issue_crl",
    "issue_gateway",
    "issue_merchant",
    "issue_tls_client",
    "issue_tls_server",
    "kem_for",
]
