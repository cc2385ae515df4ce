"""Pruning what renewals of the gateway's keys leave: ``setpay ca prune-gateway``.

A renewal (``gateway.gateway_renewal``) keeps the key-exchange certificate it replaces as
``certs/gateway-kex.vN.der``, and the key versions it replaces stay in the key backend, so
that what was sealed to the older certificate still opens until it ends. Nothing ever
removed them: the bank skips a kept certificate that has ended, and an unused private key
is only one more to lose. A pruning, on a stopped bank and under the renewal's lock
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
(``LedgerUnread``); both refuse a dry run as well.

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
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict

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
from gateway.ledger import LedgerError, LedgerStore, PostgresLedgerStore, SqliteLedgerStore
from gateway.ledger.postgres_refusals import connect_secrets
from gateway.ledger.store import Transaction
from gateway.renewal_lock import PRUNE_TASK, holding_keys_lock
from hsm.errors import KeyBackendError
from hsm.keystore import fsync_directory
from setcore.encoding import thumbprint
from setcore.pki import roles
from setcore.pki.bci import BCI_LIFETIME
from setcore.pki.certificate import common_name_of, load_certificate, public_key_of
from setcore.pki.issuance import utc
from setcore.registration import spki_of

log = logging.getLogger("setpay.provisioning")

RENEWED_LABELS = (GATEWAY_SIG_LABEL, GATEWAY_KEX_LABEL)


# Where an operator finds the decisions awaiting their answer, and what answers them.
UNANSWERED_SECTION = '"A token that fails between a decision and its answer"'
# How long after a key-exchange certificate stopped being valid a process may still have
# opened an envelope sealed to it. A revocation reaches each within a second of its next
# request (``gateway.ca.watcher.POLL_INTERVAL_S``), but one whose reads of ca.db fail keeps
# the revocation data it holds until that lapses: a BCI's lifetime at most, then it
# answers nothing (``RevocationStale``). Ten minutes more for clocks apart.
SEALED_MARGIN = BCI_LIFETIME + timedelta(minutes=10)
# What a PostgreSQL URL is shown as when showing its parts would quote a secret.
URL_WITHHELD = "a PostgreSQL ledger (its URL withheld: showing it would quote a secret)"
# The parts of a PostgreSQL URL that say which ledger, none of them a secret.
_SHOWN_PARTS = ("user", "host", "hostaddr", "port", "dbname", "service", "options")


class PruningStopped(ProvisioningError):
    """A pruning failed part way; the message says what it had deleted."""


class UnansweredDecisions(ProvisioningError):
    """A pruning that would delete a key-exchange key or kept certificate, while the
    ledger holds decisions awaiting their answer; nothing deleted."""


class LedgerUnread(ProvisioningError):
    """The ledger could not be read to see whether a decision awaits its answer; a
    pruning of key-exchange keys or kept certificates deleted nothing."""


class ForeignLedger(ProvisioningError):
    """The ledger read lacks accounts of merchants the bank certified: not the bank's; a
    pruning of key-exchange keys or kept certificates deleted nothing."""


@dataclass(frozen=True)
class UnansweredCount:
    """The ledger's decisions whose answer was never stored that may be sealed to a key
    this pruning deletes: how many, the oldest's time; and those checked from
    ``before_ms`` on (None: every one counted), which cannot be, and are not counted."""

    count: int
    oldest_ms: int | None
    later: int = 0
    before_ms: int | None = None


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
                merchants = _certified_merchants(config, pki)
                unanswered = _unanswered(config, ledger, merchants, plan.sealed_before_ms)
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


def shown_ledger(url: str) -> str:
    """Which ledger ``url`` names, never with a password: a SQLite URL as it is; for
    PostgreSQL, the parts libpq reads that say where, or ``URL_WITHHELD`` when one would
    quote a secret (a password holding an unescaped ``@``, ``:`` or ``/`` is read as a
    host, a port or a database: ``gateway.ledger.postgres_refusals``)."""
    if url.startswith("sqlite:"):
        return url
    try:
        parts = conninfo_to_dict(url)
    except psycopg.Error:
        return "a PostgreSQL ledger (its URL unreadable to libpq)"
    values = [(k, str(parts[k])) for k in _SHOWN_PARTS if parts.get(k)]
    secrets = connect_secrets(url, psycopg.Error())  # no connection: the URL's own
    # Judged on the values as libpq read them, before ``repr`` escapes a backslash, a
    # quote or a control character that a secret's own text would then no longer match.
    if any(secret in value for secret in secrets for _, value in values):
        return URL_WITHHELD
    shown = " ".join(f"{k}={value!r}" for k, value in values)
    return f"PostgreSQL {shown}"


def _certified_merchants(config: BankConfig, pki: BankPki) -> frozenset[str]:
    """The merchant IDs the bank's Merchant CA certified (ca.db, read-only), whose
    settlement accounts the bank's ledger therefore holds. Every certificate is read:
    ca.db has no index by type (a pruning is rare, and reads ``requests`` whole too)."""
    store = open_ca_store(config)
    try:
        with store.read() as tx:
            return frozenset(
                cert.subject
                for cert, _ in tx.listed_certificates()
                if cert.certificate_type == roles.MERCHANT
                and cert.issuer_thumb == pki.mca.signature_thumb
            )
    finally:
        store.close()


def _unanswered(
    config: BankConfig, shown: str, merchants: frozenset[str], before_ms: int | None
) -> UnansweredCount:
    """The decisions awaiting their answer in the bank's ledger (``shown``: its
    ``shown_ledger``) checked before ``before_ms`` (None: all), read from its store opened
    ``read_only`` (nothing made, migrated or locked); else LedgerUnread, or ForeignLedger
    when it lacks an account of the ``merchants``. One pass over ``requests`` (no index
    holds the unanswered ones): a row whose answer was stored has no ``outcome``, nor has
    a fence."""
    url = config.ledger_url()
    try:
        store: LedgerStore
        if url.startswith("sqlite:"):
            path = Path(url[len("sqlite:") :])
            if not path.is_file():  # opened as it is, SQLite would not name the file
                raise LedgerUnread(
                    f"no ledger at {path} (ledger.store, or SETPAY_LEDGER as the bank has"
                    " it): cannot tell whether a decided request awaits its answer sealed to"
                    " a key-exchange key this pruning deletes; nothing deleted"
                )
            store = SqliteLedgerStore(path, read_only=True)
        else:
            store = PostgresLedgerStore(url, read_only=True)
        try:
            held, unanswered = store.read(lambda tx: _read_ledger(tx, before_ms))
        finally:
            store.close()
    except LedgerError as exc:
        raise LedgerUnread(
            f"cannot read the ledger ({shown}: {exc}) to tell whether a decided request"
            " awaits its answer sealed to a key-exchange key this pruning deletes; nothing"
            " deleted"
        ) from exc
    missing = merchants - held
    if missing:
        raise ForeignLedger(
            f"the ledger read ({shown}) holds no settlement account for {len(missing)} of"
            f" the {len(merchants)} merchants the bank's Merchant CA certified (ca.db),"
            " whose accounts the bank's ledger holds: it is not the ledger the bank decides"
            " in, and cannot tell whether a decided request awaits its answer sealed to a"
            " key-exchange key this pruning deletes. Set SETPAY_LEDGER (or ledger.store) as"
            " the bank's service has it, and run `setpay ca prune-gateway"
            f" {config_option(config)}` again; nothing deleted"
        )
    return unanswered


def _read_ledger(tx: Transaction, before_ms: int | None) -> tuple[frozenset[str], UnansweredCount]:
    """The merchant IDs the ledger holds accounts for, and its decisions awaiting their
    answer, counted when checked before ``before_ms`` (a row written before
    ``checked_at_ms`` existed by its decision's time, a few milliseconds later)."""
    accounts = tx.all("SELECT merchant_id FROM merchant_accounts")
    held = frozenset(str(row["merchant_id"]) for row in accounts)
    limit = 2**62 if before_ms is None else before_ms  # None: every row, none this late
    row = tx.one(
        "SELECT COUNT(*) AS total,"
        " SUM(CASE WHEN COALESCE(checked_at_ms, created_at_ms) < ? THEN 1 ELSE 0 END)"
        " AS count,"
        " MIN(CASE WHEN COALESCE(checked_at_ms, created_at_ms) < ? THEN created_at_ms END)"
        " AS oldest_ms"
        " FROM requests WHERE outcome IS NOT NULL",
        limit,
        limit,
    )
    if row is None or not row["total"]:
        return held, UnansweredCount(0, None, 0, before_ms)
    count, oldest = int(row["count"] or 0), row["oldest_ms"]
    later = int(row["total"]) - count
    return held, UnansweredCount(count, None if oldest is None else int(oldest), later, before_ms)


def unanswered_advice(
    config: BankConfig, unanswered: UnansweredCount, ledger: str | None = None
) -> str:
    """Why the pruning of key-exchange keys waits, and what to do: the refusal's text."""
    oldest = ""
    if unanswered.oldest_ms is not None:
        oldest = f", the oldest decided {_minute(unanswered.oldest_ms)}"
    many = "request" if unanswered.count == 1 else "requests"
    where = "" if ledger is None else f" ({ledger})"
    counted = ""
    if unanswered.before_ms is not None:
        hours, minutes = divmod(int(SEALED_MARGIN.total_seconds()) // 60, 60)
        counted = (
            f", checked before {_minute(unanswered.before_ms)} (while a certificate"
            f" of a key-exchange key this pruning deletes was valid, or {hours} h {minutes}"
            f" min after; {unanswered.later} checked later not counted)"
        )
    return (
        f"the ledger{where} holds {unanswered.count} decided {many} whose answer was never"
        f" stored{counted}{oldest}; the ledger does not record which key-exchange"
        " certificate a request was sealed to, and one sealed to a key this pruning deletes"
        " would never be answered (UNAVAILABLE at every retry, its money moved): start the"
        " bank so that the merchants' retries are answered, find any left with the query in"
        f" OPERATIONS {UNANSWERED_SECTION}, and run `setpay ca prune-gateway"
        f" {config_option(config)} --yes` again once none is left"
    )


def _minute(ms: int) -> str:
    return f"{datetime.fromtimestamp(ms / 1000, tz=UTC):%Y-%m-%d %H:%M} UTC"


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
