"""The merchant's gateway in setcore's message tests: whose answers a merchant takes."""

from __future__ import annotations

from setcore.pki import CertificateUsage
from setcore.pki.roles import PAYMENT_GATEWAY
from setcore.signers import GatewayIdentity

from .certified import Certified


def gateway_of(c: Certified) -> GatewayIdentity:
    """The identity of ``c``'s gateway, as a PCertRes naming its signature certificate
    gives it to the merchant."""
    verified = c.trust().resolve(
        c.gateway.signature_thumb, c.gateway.bundle(), PAYMENT_GATEWAY, CertificateUsage.SIGNATURE
    )
    return GatewayIdentity.of(verified)
