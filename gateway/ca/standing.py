"""Whether a CA may answer: its own certificate and key-exchange certificate still stand.

A CA whose certificate was revoked (``setpay ca revoke`` of the CA itself) or has expired
signs answers no requester trusts; one whose key-exchange certificate was revoked or has
expired asks requesters to seal their data to a key they must refuse. Either way the CA
answers no registration (``CaCertificateUnusable``: gRPC UNAVAILABLE, never a SET Error,
which the same CA would sign), and the log line says what is wrong and what to do.

Revocation is read from the trust store's revocation data, which the revocation watcher
keeps current from ``ca.db`` before every call: a revocation made in another process is
seen within the watcher's poll. Certificates are parsed once, at start.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509

from gateway.ca.errors import CaCertificateUnusable
from gateway.ca.keys import AuthorityKeys, CaSide
from setcore.pki.bci import CrlStatus
from setcore.pki.certificate import common_name_of
from setcore.pki.truststore import TrustStore

# What an operator does about each of a CA's certificates once it stops standing. No
# setpay command re-issues either yet (docs/OPERATIONS.md): the texts say so.
_REMEDY_KEY_EXCHANGE = (
    "the CA needs a new key-exchange key and certificate, which no setpay command makes yet"
)
_REMEDY_CERTIFICATE = (
    "the CA needs a new key certified by the brand root, which no setpay command makes yet"
)


@dataclass(frozen=True)
class _Own:
    """One of a CA's own certificates, as much of it as the check needs."""

    what: str
    serial: int
    issuer_thumb: bytes
    not_after: datetime
    remedy: str


def _own_certificates(keys: AuthorityKeys, side: CaSide) -> tuple[_Own, ...]:
    cert = side.issuing.certificate
    kex_der = side.credentials.key_exchange_cert
    if kex_der is None:
        raise ValueError("a CA that answers requesters has a key-exchange certificate")
    kex = x509.load_der_x509_certificate(kex_der)
    return (
        _Own(
            "certificate", cert.serial_number, keys.root.thumbprint,
            cert.not_valid_after_utc, _REMEDY_CERTIFICATE,
        ),
        _Own(
            "key-exchange certificate", kex.serial_number, side.issuing.thumbprint,
            kex.not_valid_after_utc, _REMEDY_KEY_EXCHANGE,
        ),
    )  # fmt: skip


class CaStanding:
    """The answering CAs' own certificates, checked before each registration answer."""

    def __init__(self, keys: AuthorityKeys, trust: TrustStore) -> None:
        self._trust = trust
        self._own: Mapping[int, tuple[_Own, ...]] = {
            side.ca_type: _own_certificates(keys, side) for side in keys.sides
        }
        self._names: Mapping[int, str] = {
            side.ca_type: common_name_of(side.issuing.certificate) for side in keys.sides
        }

    def require(self, ca_type: int, at: datetime) -> None:
        """Nothing when the CA of ``ca_type`` may answer at ``at``; else
        ``CaCertificateUnusable``, naming the certificate and what to do."""
        revocation = self._trust.revocation
        for own in self._own[ca_type]:
            if at > own.not_after:
                state = f"expired at {own.not_after:%Y-%m-%d %H:%M} UTC"
            elif revocation is not None and _listed(revocation.by_issuer, own):
                state = "is revoked"
            else:
                continue
            raise CaCertificateUnusable(
                f"{self._names[ca_type]}: its {own.what} {state}, so it answers no"
                f" registration; {own.remedy}"
            )


def _listed(by_issuer: Mapping[bytes, CrlStatus], own: _Own) -> bool:
    status = by_issuer.get(own.issuer_thumb)
    return status is not None and own.serial in status.revoked_serials
