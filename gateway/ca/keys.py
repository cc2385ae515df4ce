"""The CA's signing and opening keys: the brand root and the three CAs that answer requesters."""

from __future__ import annotations

from dataclasses import dataclass

from hsm.base import KeyBackend, KeyHandle
from setcore.credentials import Credentials
from setcore.pki.issuance import IssuingCA


@dataclass(frozen=True)
class CaSide:
    """One CA that answers requesters: how it signs and opens messages, and how it issues."""

    credentials: Credentials
    issuing: IssuingCA

    @property
    def ca_type(self) -> int:
        """The CA's CertificateType (Cardholder, Merchant or Payment Gateway CA)."""
        return self.issuing.certificate_type

    @property
    def key_exchange_thumb(self) -> bytes:
        """Thumbprint of the key-exchange certificate requesters seal to."""
        return self.credentials.require_key_exchange()[1]


@dataclass(frozen=True)
class AuthorityKeys:
    """The brand root (CRLs of the CAs, the BCI) and the Cardholder, Merchant and Payment
    Gateway CAs."""

    root: IssuingCA
    cardholder: CaSide
    merchant: CaSide
    gateway: CaSide

    @classmethod
    def from_credentials(
        cls,
        backend: KeyBackend,
        root_key: KeyHandle,
        root_der: bytes,
        cardholder: Credentials,
        merchant: Credentials,
        gateway: Credentials,
    ) -> AuthorityKeys:
        """Build from the CAs' credentials (signature key and certificate, key exchange)."""
        root = IssuingCA(backend, root_key, root_der)

        def side(credentials: Credentials) -> CaSide:
            issuing = IssuingCA(
                backend, credentials.signature_key, credentials.signature_cert, root.chain
            )
            return CaSide(credentials, issuing)

        return cls(root, side(cardholder), side(merchant), side(gateway))

    @property
    def brand_id(self) -> str:
        """The brand these CAs belong to."""
        return self.root.brand_id

    @property
    def sides(self) -> tuple[CaSide, ...]:
        """The three CAs that answer requesters."""
        return (self.cardholder, self.merchant, self.gateway)

    @property
    def issuers(self) -> tuple[IssuingCA, ...]:
        """Every CA that publishes a CRL: the root and the three CAs."""
        return (self.root, *(side.issuing for side in self.sides))

    def side(self, ca_type: int) -> CaSide:
        """The CA of this CertificateType."""
        for side in self.sides:
            if side.ca_type == ca_type:
                return side
        raise ValueError(f"no CA of type {ca_type}")

    def side_for_recipient(self, key_exchange_thumb: bytes) -> CaSide | None:
        """The CA whose key-exchange certificate has this thumbprint."""
        return next((s for s in self.sides if s.key_exchange_thumb == key_exchange_thumb), None)

    def issuer(self, thumb: bytes) -> IssuingCA | None:
        """The CA whose certificate has this thumbprint."""
        return next((ca for ca in self.issuers if ca.thumbprint == thumb), None)
