"""The merchant reaches the gateway only over mutual TLS with a certificate of setpay's CA."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from clients.errors import TransportError
from clients.merchant.gateway_client import GatewayClient
from clients.merchant.runtime import Merchant
from clients.transport import Caller, ChannelConfig, RetryPolicy, open_channel
from tests.clients.bank_support import RunningBank
from tests.clients.conftest import MerchantFactory

# One attempt: a refused handshake is not worth retrying in a test.
ONCE = RetryPolicy(attempts=1)


def _self_made_client() -> tuple[bytes, bytes]:
    """A client certificate (CN "merchant", clientAuth) from a CA nobody trusts."""
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "self-made CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "merchant")]))
        .issuer_name(ca_name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("merchant")]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    chain = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (leaf, ca))
    pem_key = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )  # fmt: skip
    return chain, pem_key


def _gateway_client(config: ChannelConfig, merchant: Merchant) -> GatewayClient:
    channel = open_channel(config, "gateway")
    return GatewayClient(
        Caller(channel, "gateway", ONCE), merchant.credentials, merchant.trust,
        merchant.config.merchant_id,
    )  # fmt: skip


def test_setpay_client_certificate_is_accepted(
    bank: RunningBank, make_merchant: MerchantFactory
) -> None:
    merchant = make_merchant("m-tls-ok")
    config = merchant.config.gateway.channel()
    answer = _gateway_client(config, merchant).gateway_certificates("setpay")
    assert answer.key_exchange is not None


def test_gateway_refuses_a_client_certificate_of_a_self_made_ca(
    bank: RunningBank, make_merchant: MerchantFactory
) -> None:
    merchant = make_merchant("m-tls-foreign")
    chain, key = _self_made_client()
    good = merchant.config.gateway.channel()
    foreign = ChannelConfig(good.target, good.ca_pem, chain, key)
    with pytest.raises(TransportError) as caught:
        _gateway_client(foreign, merchant).gateway_certificates("setpay")
    assert caught.value.status == "UNAVAILABLE"  # the TLS handshake was refused


def test_gateway_refuses_a_client_without_certificate(
    bank: RunningBank, make_merchant: MerchantFactory
) -> None:
    merchant = make_merchant("m-tls-none")
    good = merchant.config.gateway.channel()
    bare = ChannelConfig(good.target, good.ca_pem)
    with pytest.raises(TransportError) as caught:
        _gateway_client(bare, merchant).gateway_certificates("setpay")
    assert caught.value.status == "UNAVAILABLE"
