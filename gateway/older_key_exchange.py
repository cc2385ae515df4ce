"""The gateway's older key-exchange keys, loaded at start (``gateway.bank_pki``).

A renewal keeps each key-exchange certificate it replaces (``certs/gateway-kex.vN.der``)
with its key version, so that envelopes sealed to it still open until it ends
(``gateway.opening_keys``). Two kinds are loaded:

- ``lasting``: its certificate has not ended. It opens what is sealed to it while it
  stays valid (revocation is checked when an envelope names it). A key that is gone
  (deleted by hand) is skipped with a warning; one that is not the key its file
  certifies, or that does not accept the key transport its certificate names, stops the
  start (``BankIncomplete``), the refusal advising the ``setpay keys delete`` that lets
  the bank start without it.
- ``ended``: its certificate has ended. It opens nothing new: a fresh envelope sealed to
  it gets the refusal it got before this kind was loaded, with the newest credentials
  (WRONG_RECIPIENT). It is kept for one thing only, the answer to a request the ledger
  decided while the certificate stood and whose answer was never stored (the gateway
  failed in between): the merchant's retry is answered from those same bytes opened with
  that key (``gateway.servicer``), where it was answered UNAVAILABLE at every retry once
  a restart had skipped the key. ``setpay ca prune-gateway`` keeps such a key while the
  ledger holds such a decision, and deletes it and its kept file once none is left.

An ended one the bank can do without: one that cannot be used (its key gone, not the
key its file certifies, or accepting another key transport) is skipped, and one warning
names them all, and why, with no key material; the bank starts. The key versions are
listed once for all of them (one read of the backend, however many ended files are
kept, and none when there is none), never looked up one by one: a token re-reads its
objects at every version it misses.

Errors: ``BankIncomplete`` (a kept file that cannot be read or is no certificate, a
lasting key refused as above); the key backend's own pass through (a backend that cannot
be read stops the start as it does for the bank's other keys).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography import x509

from gateway.bank_errors import BankIncomplete
from hsm.base import KeyBackend, KeyHandle
from hsm.errors import KeyNotFound
from setcore.credentials import check_key_exchange_pair
from setcore.errors import ConfigurationError, ProtocolError
from setcore.pki.certificate import load_certificate, public_key_of
from setcore.registration import spki_of

log = logging.getLogger("setpay.bank")

# How many ended versions the start's log lines name one by one; the rest are counted.
LOGGED_VERSIONS = 10


@dataclass(frozen=True)
class OlderKeyExchange:
    """The older key-exchange keys with their certificates, by kind (module docstring)."""

    lasting: tuple[tuple[KeyHandle, bytes], ...] = ()
    ended: tuple[tuple[KeyHandle, bytes], ...] = ()


@dataclass(frozen=True)
class _Ended:
    """A kept certificate found ended at start, not yet matched to its key."""

    version: int
    name: str
    der: bytes
    parsed: x509.Certificate


def load_older_key_exchange(
    backend: KeyBackend,
    label: str,
    kept: Sequence[tuple[int, Path]],
    newest_der: bytes,
    remedy: Callable[[int], str],
    now: datetime,
) -> OlderKeyExchange:
    """The older keys under ``label`` for the kept certificate files ``kept`` (key
    version, path), all but the one ``newest_der`` is, judged ended as of ``now``;
    ``remedy(version)`` is what the refusal of a lasting key advises."""
    lasting = []
    ends = []
    ended: list[_Ended] = []
    for version, path in kept:
        try:
            der = path.read_bytes()
        except OSError as exc:
            raise BankIncomplete(f"cannot read {path.name} in {path.parent}: {exc}") from exc
        if der == newest_der:
            continue
        try:
            cert = load_certificate(der)
        except ProtocolError as exc:
            raise BankIncomplete(f"{path.name} in {path.parent} is no certificate: {exc}") from exc
        end = cert.not_valid_after_utc
        if end <= now:
            ended.append(_Ended(version, path.name, der, cert))
            continue
        found = _lasting(backend, label, version, path.name, der, cert, remedy)
        if found is not None:
            lasting.append(found)
            ends.append(f"v{version} until {end:%Y-%m-%d}")
    if lasting:
        log.info("older gateway key-exchange certificates still open envelopes: %s",
                 ", ".join(ends))  # fmt: skip
    return OlderKeyExchange(tuple(lasting), _ended_keys(backend, label, ended))


def _lasting(
    backend: KeyBackend,
    label: str,
    version: int,
    name: str,
    der: bytes,
    cert: x509.Certificate,
    remedy: Callable[[int], str],
) -> tuple[KeyHandle, bytes] | None:
    """A lasting certificate's key; None (warned) if it is gone."""
    try:
        key = backend.get(label, version)
    except KeyNotFound:
        log.warning("%s kept, but key %r v%d is gone: not used", name, label, version)
        return None
    if spki_of(key.public_key) != spki_of(public_key_of(cert)):
        raise BankIncomplete(f"key {label!r} v{version} is not the key {name} certifies")
    try:
        # As Credentials checks the newest; an older one the bank can do without.
        check_key_exchange_pair(key, der, remedy(version))
    except ConfigurationError as exc:
        raise BankIncomplete(f"{name}: {exc}") from exc
    return key, der


def _ended_keys(
    backend: KeyBackend, label: str, ended: Sequence[_Ended]
) -> tuple[tuple[KeyHandle, bytes], ...]:
    """The keys of the ended certificates ``ended``; those that cannot be used are
    skipped, named in one warning."""
    if not ended:
        return ()
    held = {key.version: key for key in backend.list_keys() if key.label == label}
    kept: list[tuple[KeyHandle, bytes]] = []
    skipped: list[str] = []
    for cert in ended:
        key = held.get(cert.version)
        problem = None
        if key is None:
            problem = f"key {label!r} v{cert.version} is gone"
        elif spki_of(key.public_key) != spki_of(public_key_of(cert.parsed)):
            problem = f"key {label!r} v{cert.version} is not the key it certifies"
        else:
            try:
                check_key_exchange_pair(key, cert.der)
            except ConfigurationError:
                # Its message is not repeated: it advises a start this refuses nothing of.
                problem = (
                    f"key {label!r} v{cert.version} does not accept the key transport"
                    " the certificate names"
                )
        if problem is None and key is not None:
            kept.append((key, cert.der))
        else:
            skipped.append(f"{cert.name} ({problem})")
    if skipped:
        log.warning(
            "ended older gateway key-exchange certificates not used, so a decision left"
            " unanswered that was sealed to one stays unanswered: %s",
            _some(skipped),
        )
    if kept:
        log.info(
            "ended older gateway key-exchange certificates kept, opening only the answers"
            " to decisions left unanswered: %s",
            _some([f"v{key.version}" for key, _ in kept]),
        )
    return tuple(kept)


def _some(items: Sequence[str]) -> str:
    """``items`` joined, the first ``LOGGED_VERSIONS`` named and the rest counted."""
    shown = ", ".join(items[:LOGGED_VERSIONS])
    more = len(items) - LOGGED_VERSIONS
    return f"{shown} and {more} more" if more > 0 else shown
