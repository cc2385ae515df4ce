"""What a successful chain validation yields: ``VerifiedCertificate``.

It is immutable and holds only public data; ``recipient()`` gives the sealing target
(``setcore.envelope.Recipient``) of a key-exchange certificate. Everything a message
opener needs once the chain is known good (the key, the thumbprint, the role and
setpay's extensions) is read during validation, so a cache hit costs no parsing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from hsm.base import KemAlgorithm, PublicKey
from setcore.envelope import Recipient
from setcore.errors import ErrorCode, fail
from setcore.pki import roles
from setcore.pki.extensions import MerchantData
from setcore.pki.roles import CertificateUsage


@dataclass(frozen=True, repr=False)
class VerifiedCertificate:
    """A leaf certificate whose chain to the pinned brand root has been validated."""

    der: bytes = field(repr=False)
    cert: x509.Certificate = field(repr=False)
    public_key: PublicKey = field(repr=False)
    thumbprint: bytes
    #: ``setpay.v1.CertificateType`` value of the leaf.
    certificate_type: int
    usage: CertificateUsage
    #: Subject CommonName: the random cardholder id, the merchant id, a CA or gateway name.
    subject_id: str
    serial_number: int
    brand_id: str
    #: Keyed hash of the card account (cardholder certificates only). Not a PAN, but kept
    #: out of repr all the same: it identifies an account across merchants.
    blinded_account: bytes | None = field(repr=False)
    merchant_data: MerchantData | None
    kem: KemAlgorithm | None
    #: Thumbprints from the leaf up to and including the brand root.
    chain_thumbs: tuple[bytes, ...] = field(repr=False)
    #: The window in which every certificate of the chain is valid.
    not_before: datetime
    not_after: datetime

    def __repr__(self) -> str:
        kind = roles.type_name(self.certificate_type)
        return (
            f"VerifiedCertificate({kind} {self.subject_id!r}, {self.usage.value}, "
            f"{self.thumbprint.hex()[:16]}...)"
        )

    def recipient(self) -> Recipient:
        """The sealing target of a key-exchange certificate."""
        key = self.public_key
        if (
            self.usage is not CertificateUsage.KEY_EXCHANGE
            or self.kem is None
            or not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey)
        ):
            raise fail(
                ErrorCode.ERROR_CODE_WRONG_CERTIFICATE_ROLE, "not a key-exchange certificate"
            )
        return Recipient(public_key=key, cert_thumb=self.thumbprint, kem=self.kem)
