"""Who may issue whom, and what a certificate's key may be used for.

setpay's brand tree is SET's without the optional geopolitical tier::

    brand root (self-signed; also the brand CA that signs BrandCRLIdentifiers)
    ├── Cardholder CA       ── cardholder signature certificates
    ├── Merchant CA         ── merchant signature + key-exchange certificates
    └── Payment Gateway CA  ── gateway signature + key-exchange certificates

Each CA also issues its own key-exchange certificate (same certificate type as the CA,
not a CA itself) so that registration data can be sealed to it. ``issuer_type_for``
states the rule the validator enforces on every link of a chain.
"""

from __future__ import annotations

import enum

from setpay.v1 import registration_pb2

CertificateType = registration_pb2.CertificateType

CARDHOLDER = registration_pb2.CERTIFICATE_TYPE_CARDHOLDER
MERCHANT = registration_pb2.CERTIFICATE_TYPE_MERCHANT
PAYMENT_GATEWAY = registration_pb2.CERTIFICATE_TYPE_PAYMENT_GATEWAY
CARDHOLDER_CA = registration_pb2.CERTIFICATE_TYPE_CARDHOLDER_CA
MERCHANT_CA = registration_pb2.CERTIFICATE_TYPE_MERCHANT_CA
PAYMENT_GATEWAY_CA = registration_pb2.CERTIFICATE_TYPE_PAYMENT_GATEWAY_CA
BRAND_ROOT = registration_pb2.CERTIFICATE_TYPE_BRAND_ROOT

#: Types of CA certificates (a CA's own key-exchange certificate, not a CA, has them too).
CA_TYPES = frozenset({CARDHOLDER_CA, MERCHANT_CA, PAYMENT_GATEWAY_CA, BRAND_ROOT})
#: Types that are never CAs.
END_ENTITY_TYPES = frozenset({CARDHOLDER, MERCHANT, PAYMENT_GATEWAY})

# The CA type that issues each end-entity type.
_EE_ISSUER: dict[int, int] = {
    CARDHOLDER: CARDHOLDER_CA,
    MERCHANT: MERCHANT_CA,
    PAYMENT_GATEWAY: PAYMENT_GATEWAY_CA,
}


class CertificateUsage(enum.StrEnum):
    """What a certificate's key is accepted for."""

    SIGNATURE = "signature"
    KEY_EXCHANGE = "key-exchange"


def type_name(certificate_type: int) -> str:
    """The CertificateType's proto name (for reasons and logs)."""
    return str(CertificateType.Name(certificate_type))


def issuer_type_for(certificate_type: int, is_ca: bool) -> int:
    """The certificate type the issuer of such a certificate must have.

    A sub-CA certificate is issued by the brand root; an end entity by the CA of its
    kind; a CA's own key-exchange certificate by that CA; the root issues itself.
    """
    if certificate_type in _EE_ISSUER:
        return _EE_ISSUER[certificate_type]
    if certificate_type == BRAND_ROOT or not is_ca:
        return certificate_type
    return BRAND_ROOT
