"""Transport (TLS) certificates for gRPC, issued by setpay's transport CA.

These are not SET certificates: they carry no setpay certificateType, so the SET chain
validator refuses them for any protocol role, and a SET key is never a TLS key. Their
private keys are ordinary software EC P-256 keys handed out as PEM because gRPC loads
transport keys from PEM; they protect the channel, not the payment.

The transport CA is a root of its own, with standard extensions only. The SET brand root
carries setpay's extensions under a UUID (X.667) arc whose 128-bit component Go's x509
parser cannot read, so a brand-root TLS trust store would make Go tools (grpcurl,
Prometheus, most service meshes) refuse the whole bundle; a separate transport root also
keeps TLS key compromise and SET key compromise apart. Its key stays in the key backend.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from hsm.base import KeyBackend, KeyHandle
from setcore.errors import ConfigurationError
from setcore.pki.issuance import (
    CLOCK_SKEW,
    IssuingCA,
    key_usage,
    random_serial,
    sign_with_backend,
    utc,
)

# Transport certificates are cheap to re-issue at start-up, so they live shortly: a
# stolen transport key is useless after 90 days even if nobody revokes it.
TLS_LIFETIME = timedelta(days=90)
# The transport root lives as long as the brand root (ten years).
TRANSPORT_CA_LIFETIME = timedelta(days=3650)
# How a notAfter is shown to operators: ISO 8601 in UTC, to the second (a certificate's
# times have no finer resolution).
NOT_AFTER_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


@dataclass(frozen=True)
class TransportCA:
    """setpay's TLS root: self-signed, standard extensions only, key in the key backend."""

    backend: KeyBackend
    key: KeyHandle
    der: bytes
    certificate: x509.Certificate = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "certificate", x509.load_der_x509_certificate(self.der))

    @property
    def chain(self) -> tuple[bytes, ...]:
        """Just the root: transport leaves are issued directly by it."""
        return (self.der,)

    @property
    def root_der(self) -> bytes:
        """The transport root (what TLS peers trust)."""
        return self.der


def create_transport_ca(
    backend: KeyBackend,
    key: KeyHandle,
    brand_id: str,
    *,
    lifetime: timedelta = TRANSPORT_CA_LIFETIME,
) -> TransportCA:
    """The self-signed transport root for ``brand_id``, signed through the backend."""
    now = utc(None)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, f"setpay {brand_id}"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"setpay {brand_id} transport CA"),
        ]
    )
    public = key.public_key
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(random_serial())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + lifetime)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(key_usage(ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
    )
    cert = sign_with_backend(builder, backend, key)
    return TransportCA(backend, key, cert.public_bytes(serialization.Encoding.DER))


# Client names become a DNS subjectAltName and the CommonName (ub-common-name 64).
_CLIENT_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,62}[A-Za-z0-9])?")
# A server's DNS name: letters, digits and hyphens in dot-separated labels (RFC 1123), at
# most 253 characters, no wildcard; ``setpay ca issue-tls`` also names its files after it,
# so nothing in it can lead them out of their directory.
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_SERVER_NAME = re.compile(rf"(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*")


@dataclass(frozen=True)
class TlsCredentials:
    """A transport certificate chain and its private key, as PEM for gRPC."""

    #: The leaf followed by the issuing CAs below the root (what a TLS peer sends).
    certificate_chain_pem: bytes
    #: PKCS#8 PEM of the transport key (unencrypted: gRPC takes it that way).
    private_key_pem: bytes = field(repr=False)
    #: The brand root, which the other side of the channel trusts.
    root_certificate_pem: bytes
    certificate_der: bytes = field(repr=False)


def _pem(der: bytes) -> bytes:
    cert = x509.load_der_x509_certificate(der)
    return cert.public_bytes(serialization.Encoding.PEM)


def _issue(
    ca: IssuingCA | TransportCA,
    common_name: str,
    san: Sequence[x509.GeneralName],
    purpose: x509.ObjectIdentifier,
    lifetime: timedelta,
) -> TlsCredentials:
    key = ec.generate_private_key(ec.SECP256R1())
    now = utc(None)
    not_after = min(now + lifetime, ca.certificate.not_valid_after_utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(random_serial())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(key_usage(signature=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([purpose]), critical=False)
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key), False)
    )
    cert = sign_with_backend(builder, ca.backend, ca.key)
    der = cert.public_bytes(serialization.Encoding.DER)
    below_root = ca.chain[:-1]
    return TlsCredentials(
        certificate_chain_pem=b"".join(_pem(c) for c in (der, *below_root)),
        private_key_pem=key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        root_certificate_pem=_pem(ca.root_der),
        certificate_der=der,
    )


def issue_tls_server(
    ca: IssuingCA | TransportCA,
    *,
    dns_names: Sequence[str] = ("localhost",),
    ip_addresses: Sequence[str] = ("127.0.0.1",),
    lifetime: timedelta = TLS_LIFETIME,
) -> TlsCredentials:
    """A serverAuth certificate for the given DNS names and IP addresses."""
    if not dns_names and not ip_addresses:
        raise ConfigurationError("a TLS server certificate needs at least one name or address")
    if not all(_SERVER_NAME.fullmatch(name) for name in dns_names):
        raise ConfigurationError(
            "TLS server names are DNS names: letters, digits and '-' in dot-separated labels"
        )
    try:
        ips = [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
    except ValueError as exc:
        raise ConfigurationError(f"bad IP address for a TLS certificate: {exc}") from exc
    san: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names]
    san.extend(ips)
    common_name = dns_names[0] if dns_names else str(ip_addresses[0])
    return _issue(ca, common_name, san, ExtendedKeyUsageOID.SERVER_AUTH, lifetime)


def issue_tls_client(
    ca: IssuingCA | TransportCA, name: str, *, lifetime: timedelta = TLS_LIFETIME
) -> TlsCredentials:
    """A clientAuth certificate naming the client (for merchant-to-gateway mutual TLS)."""
    if not _CLIENT_NAME.fullmatch(name):
        raise ConfigurationError("TLS client names are DNS-style labels of 1..64 characters")
    return _issue(ca, name, [x509.DNSName(name)], ExtendedKeyUsageOID.CLIENT_AUTH, lifetime)


def chain_not_after(certificate_chain_pem: bytes) -> datetime:
    """When the leaf (first certificate) of a PEM chain ends (notAfter, UTC); the chain
    as ``TlsCredentials.certificate_chain_pem`` holds it and gRPC serves it."""
    try:
        leaf = x509.load_pem_x509_certificates(certificate_chain_pem)[0]
    except ValueError as exc:
        raise ConfigurationError(f"not a PEM certificate chain: {exc}") from exc
    return leaf.not_valid_after_utc
