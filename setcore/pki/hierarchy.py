"""Creating a whole brand tree at once: root, three CAs and their key-exchange certificates.

This is what ``setpay init`` and the demo need; a production CA would create each tier
in its own ceremony with the same functions from ``setcore.pki.issuance``. Keys are made
in the given backend under ``{prefix}{brand}-{role}`` labels, and each certificate is
stored beside its key.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from hsm.base import KeyBackend, KeyHandle, KeyUsage
from setcore.pki import roles
from setcore.pki.issuance import (
    IssuingCA,
    create_brand_root,
    issue_ca_certificate,
    issue_ca_key_exchange,
    kem_for,
)
from setcore.profiles import Profile


@dataclass(frozen=True)
class SubordinateCA:
    """A Cardholder, Merchant or Payment Gateway CA with its own key-exchange certificate."""

    ca: IssuingCA
    key_exchange_key: KeyHandle
    key_exchange_der: bytes


@dataclass(frozen=True)
class Brand:
    """A brand's CA tree."""

    root: IssuingCA
    cardholder_ca: SubordinateCA
    merchant_ca: SubordinateCA
    gateway_ca: SubordinateCA

    @property
    def subordinates(self) -> tuple[SubordinateCA, ...]:
        """The three CAs below the root."""
        return (self.cardholder_ca, self.merchant_ca, self.gateway_ca)


_SUBORDINATES = (
    ("cardholder-ca", roles.CARDHOLDER_CA, "Cardholder CA"),
    ("merchant-ca", roles.MERCHANT_CA, "Merchant CA"),
    ("gateway-ca", roles.PAYMENT_GATEWAY_CA, "Payment Gateway CA"),
)


def create_brand(
    backend: KeyBackend,
    profile: Profile,
    brand_id: str,
    *,
    label_prefix: str = "",
    at: datetime | None = None,
) -> Brand:
    """Generate keys and issue the brand root, the three CAs and their key-exchange certs."""
    base = f"{label_prefix}{brand_id}"
    root_key = backend.generate(f"{base}-root", KeyUsage.CA_SIGNING, profile.ca_key)
    root = create_brand_root(backend, root_key, brand_id, at=at)
    backend.store_certificate(root_key, root.der)
    made: list[SubordinateCA] = []
    for suffix, certificate_type, title in _SUBORDINATES:
        key = backend.generate(f"{base}-{suffix}", KeyUsage.CA_SIGNING, profile.ca_key)
        der = issue_ca_certificate(
            root, key.public_key, certificate_type, common_name=f"{brand_id} {title}", at=at
        )
        backend.store_certificate(key, der)
        ca = IssuingCA(backend, key, der, root.chain)
        exchange_key = backend.generate(
            f"{base}-{suffix}-kex", KeyUsage.KEY_EXCHANGE, profile.key_exchange_key
        )
        exchange_der = issue_ca_key_exchange(
            ca, exchange_key.public_key, kem=kem_for(exchange_key), at=at
        )
        backend.store_certificate(exchange_key, exchange_der)
        made.append(SubordinateCA(ca, exchange_key, exchange_der))
    return Brand(root, made[0], made[1], made[2])
