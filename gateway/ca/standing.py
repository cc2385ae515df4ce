"""Whether a CA may answer: its own certificate and key-exchange certificate still stand.

A CA whose certificate was revoked (``setpay ca revoke`` of the CA itself) or has expired
signs answers no requester trusts: it answers nothing and issues nothing
(``require_signing``). One whose key-exchange certificate was revoked or has expired
would ask requesters to seal their data to a key they must refuse: it starts no
registration and opens no new CertReq (``require``, both checks), but still answers what
needs its signature only: a CertInq (a pended request approved since, a certificate whose
answer was lost) and a retried CertReq's stored answer. Those the requester must be able
to fetch, and a bank set up before the key-exchange certificates lasted the CA's life
has them end after a year. A refusal is ``CaCertificateUnusable`` (gRPC UNAVAILABLE,
never a SET Error, which the same CA would sign), and the log line says what is wrong
and what to do.

Revocation is read from the trust store's revocation data, which the revocation watcher
keeps current from ``ca.db`` before every call: a revocation made in another process is
seen within the watcher's poll. Certificates are parsed once, at start.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509

from gateway.ca.errors import CaCertificateUnusable
from gateway.ca.keys import AuthorityKeys, CaSide
from setcore.pki.bci import CrlStatus
from setcore.pki.certificate import common_name_of
from setcore.pki.truststore import TrustStore

# A CA's certificate or key-exchange certificate this close to its end is named in the
# log, at every start and once a day by a running CA: a month leaves an operator time to
# act before registration stops.
ENDING_WARNING = timedelta(days=30)

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
    #: True for the certificate the CA signs with, False for the one requesters seal to.
    signing: bool
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
            "certificate", True, cert.serial_number, keys.root.thumbprint,
            cert.not_valid_after_utc, _REMEDY_CERTIFICATE,
        ),
        _Own(
            "key-exchange certificate", False, kex.serial_number, side.issuing.thumbprint,
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
        """Nothing when the CA of ``ca_type`` may sign and be sealed to at ``at``; else
        ``CaCertificateUnusable``, naming the certificate and what to do."""
        self._check(ca_type, at, self._own[ca_type])

    def require_signing(self, ca_type: int, at: datetime) -> None:
        """Nothing when the CA of ``ca_type`` may sign at ``at``, whatever its
        key-exchange certificate; else ``CaCertificateUnusable``."""
        self._check(ca_type, at, tuple(own for own in self._own[ca_type] if own.signing))

    def _check(self, ca_type: int, at: datetime, owns: tuple[_Own, ...]) -> None:
        revocation = self._trust.revocation
        for own in owns:
            if at > own.not_after:
                state = f"expired at {own.not_after:%Y-%m-%d %H:%M} UTC"
            elif revocation is not None and _listed(revocation.by_issuer, own):
                state = "is revoked"
            else:
                continue
            raise CaCertificateUnusable(
                f"{self._names[ca_type]}: its {own.what} {state}, so it {_stops(own)}; {own.remedy}"
            )

    def ending(self, at: datetime, within: timedelta = ENDING_WARNING) -> list[str]:
        """A line for each of the CAs' own certificates that ends within ``within`` of
        ``at`` (or has ended), for the log."""
        lines = []
        for ca_type, owns in self._own.items():
            for own in owns:
                end = own.not_after
                if end - at > within:
                    continue
                when = "has ended" if end <= at else f"ends in {(end - at).days} days"
                lines.append(
                    f"{self._names[ca_type]}: its {own.what} {when} ({end:%Y-%m-%d %H:%M} UTC);"
                    f" from then on that CA {_stops(own)}"
                )
        return lines


def _stops(own: _Own) -> str:
    """What the CA no longer does once ``own`` is unusable."""
    return "answers no registration" if own.signing else "starts no registration"


def _listed(by_issuer: Mapping[bytes, CrlStatus], own: _Own) -> bool:
    status = by_issuer.get(own.issuer_thumb)
    return status is not None and own.serial in status.revoked_serials
