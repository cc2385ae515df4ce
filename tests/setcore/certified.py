"""Merchants and a payment gateway holding real credentials on a real brand, per profile.

Built on the PKI tests' ``World`` (``tests/setcore/pki/conftest.py``): its brand tree,
gateway key-exchange certificate and revocation data. The merchants' certificates and
the gateway's signature certificate are issued here because message tests need their
private keys. Key generation (RSA especially) is slow, so each profile's parties are
made once per session and shared by every message test module.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

from hsm.base import KeyBackend, KeyUsage
from setcore.authorization import seal_cap_token
from setcore.credentials import Credentials
from setcore.envelope import Recipient
from setcore.freshness import new_id, now_ms
from setcore.pki import CertificateUsage, MerchantData, TrustStore, issue_gateway, issue_merchant
from setcore.pki.issuance import kem_for
from setcore.pki.roles import MERCHANT as MERCHANT_ROLE
from setcore.pki.verified import VerifiedCertificate
from setcore.profiles import Profile
from setcore.token_seal import TokenKey
from setpay.v1 import authorization_pb2, common_pb2

from .pki.conftest import MERCHANT, World, make_world
from .refusals import refused  # noqa: F401 - re-exported to the tests importing it from here

OTHER_MERCHANT = MerchantData("m-0002", "Other Shop", pan_allowed=False)
EUR = 978


@dataclass(frozen=True)
class Certified:
    """Two merchants and a gateway of one brand, with the gateway's token-sealing key."""

    world: World
    merchant: Credentials
    other_merchant: Credentials
    gateway: Credentials
    token_key: TokenKey

    merchant_id = MERCHANT.merchant_id
    other_merchant_id = OTHER_MERCHANT.merchant_id

    @property
    def brand_id(self) -> str:
        """The brand every certificate here belongs to."""
        return self.world.brand.root.brand_id

    def trust(self) -> TrustStore:
        """A fresh trust store pinned to the brand root, revocation data loaded."""
        return self.world.store()

    def other_merchant_certificate(self) -> VerifiedCertificate:
        """The other merchant's signature certificate, verified: to forge a request with."""
        return self.trust().resolve(
            self.other_merchant.signature_thumb,
            self.other_merchant.bundle(),
            MERCHANT_ROLE,
            CertificateUsage.SIGNATURE,
        )

    @property
    def gateway_kex(self) -> Recipient:
        """Where merchants seal their requests."""
        return recipient_of(self.gateway)

    def token(
        self,
        xid: bytes,
        auth_rrpid: bytes,
        auth_amount: int = 1999,
        *,
        merchant_id: str | None = None,
        currency: int = EUR,
        exp10: int = 2,
        token_key: TokenKey | None = None,
    ) -> bytes:
        """A capture token as the gateway seals it in AuthRes."""
        data = authorization_pb2.CapTokenData(
            xid=xid,
            auth_rrpid=auth_rrpid,
            auth_amt=eur(auth_amount, currency, exp10=exp10),
            merchant_id=merchant_id or self.merchant_id,
            merchant_cert_thumb=self.merchant.signature_thumb,
            hold_id="hold-1",
            issued_unix_ms=now_ms(),
        )
        return seal_cap_token(token_key or self.token_key, data)


def recipient_of(credentials: Credentials) -> Recipient:
    """The sealing target of a party's key-exchange certificate."""
    key, thumb = credentials.require_key_exchange()
    assert key.kem is not None
    return Recipient(key.public_key, thumb, key.kem)


def eur(amount: int, currency: int = EUR, *, exp10: int = 2) -> common_pb2.CurrencyAmount:
    """An amount in minor units (EUR, in cents, unless told)."""
    return common_pb2.CurrencyAmount(currency=currency, amount=amount, exp10=exp10)


def trans_ids(xid: bytes | None = None) -> common_pb2.TransIDs:
    """Transaction ids as the merchant chose them in PInitRes."""
    return common_pb2.TransIDs(
        lid_c=b"order-c", lid_m=b"order-m", xid=xid or new_id(), preq_date_unix_ms=now_ms()
    )


def _merchant(world: World, data: MerchantData) -> Credentials:
    mca = world.brand.merchant_ca.ca
    sig, kex = world.key(KeyUsage.SIGNATURE), world.key(KeyUsage.KEY_EXCHANGE)
    return Credentials(
        backend=world.backend,
        signature_key=sig,
        signature_cert=issue_merchant(mca, sig.public_key, CertificateUsage.SIGNATURE, data),
        chain=(mca.der,),
        key_exchange_key=kex,
        key_exchange_cert=issue_merchant(
            mca, kex.public_key, CertificateUsage.KEY_EXCHANGE, data, kem=kem_for(kex)
        ),
    )


@functools.cache
def certify(backend: KeyBackend, profile: Profile) -> Certified:
    """The parties of ``profile`` (made on first use, then shared)."""
    world = make_world(backend, profile)
    pca = world.brand.gateway_ca.ca
    sig = world.key(KeyUsage.SIGNATURE)
    gateway = Credentials(
        backend=backend,
        signature_key=sig,
        signature_cert=issue_gateway(pca, sig.public_key, CertificateUsage.SIGNATURE, "gateway-1"),
        chain=(pca.der,),
        key_exchange_key=world.gateway_kex_key,
        key_exchange_cert=world.gateway_kex,
    )
    sealing = backend.generate(
        f"{profile.name}-token-{os.urandom(4).hex()}",
        KeyUsage.TOKEN_SEALING,
        profile.key_exchange_key,
    )
    return Certified(
        world=world,
        merchant=_merchant(world, MERCHANT),
        other_merchant=_merchant(world, OTHER_MERCHANT),
        gateway=gateway,
        token_key=TokenKey.create(backend, sealing),
    )
