"""Pruning what renewals of the gateway's keys leave: ``setpay ca prune-gateway``.

A renewal (``gateway.gateway_renewal``) keeps the key-exchange certificate it replaces as
``certs/gateway-kex.vN.der``, and the key versions it replaces stay in the key backend, so
that what was sealed to the older certificate still opens until it ends. Nothing ever
removed them: once one has ended, the bank opens with its key only the answers to
decisions left unanswered (``gateway.older_key_exchange``), and an unused private key is
only one more to lose. A pruning, on a stopped bank and under the renewal's lock
(``gateway.renewal_lock``), removes:

- each kept key-exchange certificate file whose certificate is no longer valid;
- each version of ``gateway-sig`` and ``gateway-kex`` that no valid certificate certifies,
  never the version the bank uses (the one its ``certs/`` file certifies).

Valid means unexpired and unrevoked. A certificate revoked but not yet ended counts as
ended: the bank already refuses a new envelope sealed to it (``gateway.opening_keys``)
and a merchant a signature from it, and a revocation is never lifted, so its key will
never sign or open anything new again; keeping it would only keep a key someone thought
compromised. A replaced signature key is kept while its certificate is valid, although
the bank signs with the newest only: that certificate is still the gateway's word on
the answers it signed, and a key is deleted only once nothing valid names it. A version
newer than the one in use that no valid certificate certifies is what a renewal that
did not finish left; one with a valid certificate (recorded by a renewal killed before
its renames) is kept: the next renewal revokes that certificate, the pruning after it
deletes the key.

An older key-exchange key still opens one thing after its certificate ended or was
revoked: a request the ledger decided while the certificate stood but whose answer was
never stored (the gateway failed in between) is answered, at the merchant's retry, from
those same bytes opened with that key (``gateway.servicer``). Once the key, or its kept
certificate file, is gone nothing opens them: the retry is answered UNAVAILABLE for
good, the money moved. So a pruning that would delete a key-exchange key or a kept
certificate is refused (``UnansweredDecisions``, nothing deleted; a dry run says so)
while the ledger holds a decision awaiting its answer that may be sealed to one. A row
records the request's digest, not its recipient; but one checked (``checked_at_ms``, else
its decision's time) ``SEALED_MARGIN`` after every certificate deleted stopped being
valid (its end, or its revocation if sooner) cannot be sealed to one, and is not
counted: else a decision never retried kept a compromised key for good. A deleted
key-exchange key no certificate is known for: every row counts. Signature keys alone go.

The ledger is read from its store opened read-only (as ``setpay bank check-books``
does), after the bank was found stopped, and named without a password. It must be the
bank's: ``setpay init`` makes a SQLite ``ledger.db``, and a bank on PostgreSQL by
``SETPAY_LEDGER`` in its service's environment, pruned from a shell without it, read
that empty file and deleted the key. A merchant certified by the bank's Merchant CA
(``ca.db``) had its account opened in the bank's ledger first (``gateway.ca.merchant``):
a ledger lacking one is not the bank's (``ForeignLedger``). One that cannot be read (no
SQLite file there, a database down, another schema version) refuses too
(``LedgerUnread``); both refuse a dry run as well. The ledger's side:
``gateway.pruning_ledger``.

The certificates looked at, matched to a key by its public key: those ``ca.db`` records
for the bank's gateway (its name, issued by the Payment Gateway CA, with their
revocations), the kept files, and the one stored beside each key in the backend. ``ca.db``
is read, never changed: the certificates stay recorded (``setpay ca list --all``).

Files go first, then keys: a pruning stopped between them leaves keys whose files are
gone (deleted by the next pruning), never a kept file whose key is gone. A failure says
what was deleted before it (``PruningStopped``); running the pruning again goes on.

Errors: ``gateway.bank_pki``'s ``ProvisioningError`` tree (``BankRunning``,
``KeysLocked``, ``PruningStopped``, ``UnansweredDecisions``, ``LedgerUnread``,
``ForeignLedger``); the key backend's, the CA store's and the file system's own pass.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from gateway.bank_pki import (
    GATEWAY_KEX_LABEL,
    GATEWAY_SIG_LABEL,
    BankPki,
    ProvisioningError,
    load_bank_pki,
    older_kex_files,
    open_ca_store,
)
from gateway.config import BankConfig, config_option
from gateway.gateway_renewal import check_stopped
from gateway.pruning_ledger import (
    SEALED_MARGIN,
    UnansweredCount,
    UnansweredDecisions,
    certified_merchants,
    read_unanswered,
    shown_ledger,
    unanswered_advice,
)
from gateway.renewal_lock import PRUNE_TASK, holding_keys_lock
from hsm.errors import KeyBackendError
from hsm.keystore import fsync_directory
from setcore.encoding import thumbprint
from setcore.pki import roles
from setcore.pki.certificate import common_name_of, load_certificate, public_key_of
from setcore.pki.issuance import utc
from setcore.registration import spki_of

log = logging.getLogger("setpay.provisioning")

RENEWED_LABELS = (GATEWAY_SIG_LABEL, GATEWAY_KEX_LABEL)


class PruningStopped(ProvisioningError):
    """A pruning failed part way; the message says what it had deleted."""


@dataclass(frozen=True)
class Pruned:
    """One thing a pruning deletes, a kept certificate file or a key version, and why."""

    what: str  # "certs/gateway-kex.v1.der", or "key gateway-kex v1"
    reason: str


@dataclass(frozen=True)
class Pruning:
    """What a pruning deletes (or, in a dry run, would delete): files, then keys."""

    files: tuple[Pruned, ...]
    keys: tuple[Pruned, ...]
    applied: bool
    # A dry run's: the decisions awaiting their answer that refuse it with ``apply``
    # (``UnansweredDecisions``); None when it deletes nothing that opens envelopes.
    unanswered: UnansweredCount | None = None
    # The ledger read (``shown_ledger``), None when none was: nothing deleted opens one.
    ledger: str | None = None

    @property
    def items(self) -> tuple[Pruned, ...]:
        """Everything, in the order it goes."""
        return self.files + self.keys


@dataclass(frozen=True)
class _Certificate:
    """A certificate of one of the gateway's keys, as the pruning weighs it."""

    not_after: datetime
    revoked: bool
    # When it was revoked, as ca.db records it; None when not, or not known.
    revoked_at: datetime | None = None

    def valid(self, at: datetime) -> bool:
        return not self.revoked and self.not_after > at

    @property
    def valid_until(self) -> datetime:
        """The last moment anything may have been sealed to it: its end, or its
        revocation if sooner (its end when that time is unknown)."""
        if self.revoked_at is None:
            return self.not_after
        return min(self.not_after, self.revoked_at)

    def why_not(self) -> str:
        return "revoked" if self.revoked else f"ended {self.not_after:%Y-%m-%d}"


@dataclass(frozen=True)
class _Plan:
    pruning: Pruning
    paths: tuple[Path, ...]
    versions: tuple[tuple[str, int], ...]
    # Until when each certificate of a deleted key-exchange key or kept file was valid;
    # None for such a key that no certificate known certifies.
    sealing: tuple[datetime | None, ...] = ()

    @property
    def opens_envelopes(self) -> bool:
        """Whether it deletes a kept key-exchange certificate or a key-exchange key: what
        opens a decided request's envelope to answer it."""
        return bool(self.paths) or any(label == GATEWAY_KEX_LABEL for label, _ in self.versions)

    @property
    def sealed_before_ms(self) -> int | None:
        """A decision checked from this moment on cannot be sealed to anything deleted
        (the module docstring); None: any may be."""
        if not self.sealing or None in self.sealing:
            return None
        last = max(ends for ends in self.sealing if ends is not None)
        return int((last + SEALED_MARGIN).timestamp() * 1000)


def prune_gateway_keys(config: BankConfig, *, apply: bool, at: datetime | None = None) -> Pruning:
    """What to delete of the gateway's older keys and kept certificates on a stopped
    bank, deleted when ``apply`` (else a dry run); see the module for what goes."""
    # Before the lock as well as under it, as ``renew_gateway_keys`` does and for its
    # reason: a dry run on a running bank must not make a restarted worker fail.
    check_stopped(config, before="pruning its keys")
    with holding_keys_lock(config, PRUNE_TASK) as locked:
        check_stopped(config, before="pruning its keys")
        # Refuses an incomplete bank, not one whose certificates no peer accepts
        # (gateway.bank_presented): pruning runs on it.
        pki = load_bank_pki(config, locked=locked, judge_presented=False)
        try:
            plan = _plan(config, pki, utc(at))
            unanswered, ledger = None, None
            if plan.opens_envelopes:
                ledger = shown_ledger(config.ledger_url())
                merchants = certified_merchants(config, pki)
                unanswered = read_unanswered(config, ledger, merchants, plan.sealed_before_ms)
            if unanswered is not None and unanswered.count and apply:
                advice = unanswered_advice(config, unanswered, ledger)
                raise UnansweredDecisions(f"{advice}; nothing deleted")
            if apply:
                _delete(config, pki, plan)
        finally:
            pki.close()
    if not apply:
        found = unanswered if unanswered is not None and unanswered.count else None
        return Pruning(plan.pruning.files, plan.pruning.keys, False, found, ledger)
    return Pruning(plan.pruning.files, plan.pruning.keys, True, ledger=ledger)


def _recorded(config: BankConfig, pki: BankPki) -> dict[bytes, tuple[bytes, _Certificate]]:
    """ca.db's certificates of the bank's gateway, by thumbprint: public key and standing."""
    subject = common_name_of(load_certificate(pki.gateway.signature_cert))
    store = open_ca_store(config)
    try:
        with store.read() as tx:
            listed = list(tx.listed_certificates(subject=subject))
    finally:
        store.close()
    found = {}
    for cert, revoked_ms in listed:
        # Matched by issuer and type, never by name alone: the Payment Gateway CA
        # certifies other gateways too.
        if cert.issuer_thumb != pki.pca.signature_thumb:
            continue
        if cert.certificate_type != roles.PAYMENT_GATEWAY:
            continue
        ends = datetime.fromtimestamp(cert.not_after_ms / 1000, tz=UTC)
        spki = spki_of(public_key_of(load_certificate(cert.der)))
        revoked = None if revoked_ms is None else datetime.fromtimestamp(revoked_ms / 1000, UTC)
        found[cert.thumb] = (spki, _Certificate(ends, revoked_ms is not None, revoked))
    return found


def _standing(der: bytes, recorded: dict[bytes, tuple[bytes, _Certificate]]) -> _Certificate:
    """A certificate's standing: as ca.db records it, else from the certificate itself
    (unrevoked, for all that can be told: kept rather than deleted)."""
    known = recorded.get(thumbprint(der))
    if known is not None:
        return known[1]
    return _Certificate(load_certificate(der).not_valid_after_utc, revoked=False)


def _plan(config: BankConfig, pki: BankPki, at: datetime) -> _Plan:
    recorded = _recorded(config, pki)
    by_key: dict[bytes, list[_Certificate]] = {}
    for spki, cert in recorded.values():
        by_key.setdefault(spki, []).append(cert)

    certs = config.path(config.certs_dir)
    files, paths = [], []
    sealing: list[datetime | None] = []
    for _, path in older_kex_files(certs):
        der = path.read_bytes()
        cert = _standing(der, recorded)
        by_key.setdefault(spki_of(public_key_of(load_certificate(der))), []).append(cert)
        # The current certificate kept under its older name too (a renewal stopped
        # after keeping it) is the current one: never gone.
        if der == pki.gateway.key_exchange_cert or cert.valid(at):
            continue
        files.append(Pruned(f"{certs.name}/{path.name}", f"its certificate {cert.why_not()}"))
        paths.append(path)
        sealing.append(cert.valid_until)

    in_use = {
        (key.label, key.version)
        for key in (pki.gateway.signature_key, pki.gateway.key_exchange_key)
        if key is not None
    }
    keys, versions = [], []
    for key in pki.backend.list_keys():
        if key.label not in RENEWED_LABELS or (key.label, key.version) in in_use:
            continue
        spki = spki_of(key.public_key)
        beside = pki.backend.certificate(key)
        standing = by_key.get(spki, []) + ([_standing(beside, recorded)] if beside else [])
        if any(cert.valid(at) for cert in standing):
            continue
        keys.append(Pruned(f"key {key.label} v{key.version}", _why_key(standing)))
        versions.append((key.label, key.version))
        if key.label == GATEWAY_KEX_LABEL:
            sealing.extend([cert.valid_until for cert in standing] or [None])
    pruning = Pruning(tuple(files), tuple(keys), applied=False)
    return _Plan(pruning, tuple(paths), tuple(versions), tuple(sealing))


def _why_key(standing: Iterable[_Certificate]) -> str:
    reasons = sorted({cert.why_not() for cert in standing})
    if not reasons:
        return "no certificate certifies it (a renewal that did not finish?)"
    return f"its certificate {', '.join(reasons)}"


def _delete(config: BankConfig, pki: BankPki, plan: _Plan) -> None:
    done: list[Pruned] = []
    try:
        for path, item in zip(plan.paths, plan.pruning.files, strict=True):
            path.unlink(missing_ok=True)
            done.append(item)
        if plan.paths:
            fsync_directory(config.path(config.certs_dir))
        for (label, version), item in zip(plan.versions, plan.pruning.keys, strict=True):
            pki.backend.delete(label, version)
            done.append(item)
    except (KeyBackendError, OSError) as exc:
        deleted = ", ".join(item.what for item in done) or "nothing"
        raise PruningStopped(
            f"the pruning failed ({type(exc).__name__}: {exc}) after deleting {deleted};"
            f" the bank starts as it is: run `setpay ca prune-gateway {config_option(config)}`"
            " again once the cause is fixed"
        ) from exc
    for item in done:
        log.info("pruned %s: %s", item.what, item.reason)
