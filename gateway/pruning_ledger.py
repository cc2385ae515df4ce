"""The bank's ledger as ``setpay ca prune-gateway`` reads it (``gateway.gateway_pruning``):
whether it is the bank's, and its decisions awaiting their answer.

A request the ledger decided while a key-exchange certificate stood, but whose answer was
never stored (the gateway failed in between), is answered at the merchant's retry from
those same bytes opened with that certificate's key (``gateway.servicer``). A pruning that
would delete such a key, or a kept certificate file, is refused (``UnansweredDecisions``)
while the ledger holds one that may be sealed to it: one checked ``SEALED_MARGIN`` after
every certificate deleted stopped being valid cannot be, and is not counted.

The ledger is read from its store opened read-only, and named without a password
(``shown_ledger``). It must be the bank's: a merchant the bank's Merchant CA certified had
its account opened in the bank's ledger first (``gateway.ca.merchant``), so a ledger
lacking one is not the bank's (``ForeignLedger``). The merchants counted are those of the
merchant certificates ``ca.db`` records as issued by the Merchant CA the bank holds now
(its signature certificate's thumbprint): a merchant certificate another Merchant CA
issued (an earlier one of the brand, a row copied in) says nothing of this bank's ledger.
They are read through ``ca.db``'s index on the issuer, never the other certificates (a
bank holds one per cardholder). A ledger that cannot be read refuses too
(``LedgerUnread``).

Errors: ``gateway.bank_pki``'s ``ProvisioningError`` tree (``UnansweredDecisions``,
``LedgerUnread``, ``ForeignLedger``); the CA store's own pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict

from gateway.bank_pki import BankPki, ProvisioningError, open_ca_store
from gateway.config import BankConfig, config_option
from gateway.ledger import LedgerError, LedgerStore, PostgresLedgerStore, SqliteLedgerStore
from gateway.ledger.postgres_refusals import connect_secrets
from gateway.ledger.store import Transaction
from setcore.pki import roles
from setcore.pki.bci import BCI_LIFETIME

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


def shown_ledger(url: str) -> str:
    """Which ledger ``url`` names, never with a password: a SQLite URL as it is; for
    PostgreSQL, the parts libpq reads that say where, or ``URL_WITHHELD`` when one would
    quote a secret (a password libpq reads in part as a host, a port, a database or a
    query parameter: ``gateway.ledger.postgres_refusals``)."""
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


def certified_merchants(config: BankConfig, pki: BankPki) -> frozenset[str]:
    """The merchant IDs the bank's Merchant CA certified (ca.db), whose settlement accounts
    the bank's ledger therefore holds: those of the merchant certificates issued by the
    Merchant CA the bank holds (see the module docstring), revoked or ended ones too."""
    store = open_ca_store(config)
    try:
        with store.read() as tx:
            return tx.subjects_issued(pki.mca.signature_thumb, roles.MERCHANT)
    finally:
        store.close()


def read_unanswered(
    config: BankConfig, shown: str, merchants: frozenset[str], before_ms: int | None
) -> UnansweredCount:
    """The decisions awaiting their answer in the bank's ledger (``shown``: its
    ``shown_ledger``) checked before ``before_ms`` (None: all), read from its store opened
    ``read_only`` (nothing made, migrated or locked); else LedgerUnread, or ForeignLedger
    when it lacks an account of the ``merchants``. One pass over ``requests`` (no index
    holds the unanswered ones): a row whose answer was stored has no ``outcome``, nor has
    a fence; a decision settled by hand (``gateway.ledger.unanswered``) keeps its
    outcome but is never answered, so no key opens anything for it, and is not counted."""
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
    answer (none settled by hand), counted when checked before ``before_ms`` (a row written before
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
        " FROM requests WHERE outcome IS NOT NULL AND settled_at_ms IS NULL",
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
        " bank so that the merchants' retries are answered, find any left with `setpay bank"
        f" {config_option(config)} show-unanswered` (OPERATIONS {UNANSWERED_SECTION}),"
        " settle by hand one that can never be answered (`setpay bank settle-unanswered`),"
        f" and run `setpay ca prune-gateway {config_option(config)} --yes` again once none"
        " is left"
    )


def _minute(ms: int) -> str:
    return f"{datetime.fromtimestamp(ms / 1000, tz=UTC):%Y-%m-%d %H:%M} UTC"
