"""Retention: what of ``requests`` and ``pi_uses`` may be dropped, and when it provably may.

Both tables take a row per decision (at 1,000 authorizations a second, 86 million a day
each) and neither is the books: holds, transfers, accounts and batches are kept for ever.
But each row guards something, so a row goes only once what it guards is provably over.

``requests`` (one row per RRPID decided, with its stored answer). A retry of the same
bytes whose date has aged out of the freshness window is answered from that row
(``gateway.servicer``); once the row is gone, the same retry is refused MESSAGE_TOO_OLD,
and a merchant takes that refusal as proof that nothing was committed and builds the
request afresh under a new RRPID and date (``clients.merchant.renewal``). The same bytes
can never be applied again (their date never passes the window again); the danger is the
request built afresh. What it does, once its original's row is older than the horizon
(at least ``MIN_RETENTION_DAYS``, longer than any hold lives):

    authorization      the same PI, so the same XID: refused MESSAGE_TOO_OLD by the
                       gateway once the PI is older than its bound (``PI_MAX_AGE_MS``),
                       and by the ledger, should it be asked: PI_PREVIOUSLY_USED while
                       ``pi_uses`` keeps it; once ``pi_uses`` has dropped it (below), the
                       card's expiry month is over and it is declined EXPIRED_CARD. No
                       second hold.
    capture            its hold lived at most ``limits.MAX_HOLD_LIFETIME_MS`` from before
                       the original's decision: it is expired (HOLD_EXPIRED) or closed
                       (nothing pending). No second capture.
    authorization      the hold is expired (HOLD_EXPIRED), or its amount already stands
    reversal           where the original left it (INVALID_AMOUNT). Nothing moves.
    capture or credit  each original is reversed at once at most (a unique index):
    reversal           ORIGINAL_REVERSED.
    batch close, purge the batch is no longer open, or gone: declined.
    batch open         a second empty batch at most, once the first was closed: no money.
    credit (refund)    NOTHING bounds it: a refund built afresh would be posted a second
                       time while the hold has refundable money left.

So a request that posted a refund (a ``transfers`` row of kind ``credit`` under its RRPID)
is never dropped, nor is a decision while it awaits its answer (``outcome`` not NULL: a
retry answers it, or an operator resolves it, ``idempotency``); once answered, it goes as
the others do. Nor is a decision an operator settled by hand (``unanswered.settle``: it
will never be answered), kept for good as a refund's row is: its reason and its outcome
are kept for audit and would go with it, and a resend of it, answered UNAVAILABLE while
the row stands, would once it went be refused MESSAGE_TOO_OLD, which a merchant takes as
"nothing happened": a settled declined credit would be built afresh and posted. Such
rows are rare (a failure between a decision and its answer, then an operator's
command), so keeping them costs nothing that matters. A fence (a refusal as too old made
final, ``idempotency.fence``) has no outcome and goes as an answered row does: long
before the horizon, no sending of its bytes can still be decided. Every other row goes
once it was created more than the horizon ago. A retry of a dropped request, and the
request built afresh, are refused or declined by the ledger's own rules above and change
nothing. (A guard at the gateway, refusing a retry dated before the horizon with another
code than MESSAGE_TOO_OLD, would let refunds and settled decisions go too; it belongs to
the servicer, not the ledger.)

``pi_uses`` (every XID decided, the replay guard). The gateway refuses a PI whose signed
order date is older than ``setcore.freshness.PI_MAX_AGE_MS``, but by its own clock and
before the ledger is asked: the ledger, whose guard this is, does not lean on that. It
bounds a PI's age itself: an authorization is declined EXPIRED_CARD unless the PI's card
expiry is the one on file and its month is not over (UTC, ``accounts.card_expired``).
So once the month after the PI's own expiry has begun, no decision can approve the PI
again, whatever its XID, and whatever expiry the card has on file then (it is set when
the account opens and never changed, one account per PAN; a later change would not
matter: the PI's expiry would have to equal it, and that month is over). Each row keeps that moment
(``dead_after_ms``, schema version 4) and goes once it is more than the horizon past;
rows written before version 4 have none and are kept. A PI replayed after its row went
is declined EXPIRED_CARD: refused, nothing held.

The horizon is ``[ledger] retention_days`` (``DEFAULT_RETENTION_DAYS``, at least
``MIN_RETENTION_DAYS``). Pruning runs in transactions of at most ``RETENTION_BATCH``
rows, each as short as a small group of authorizations, with a pause after a full one:
by the hold sweeper's thread when the ledger is given a horizon (``sweeper``), or by
``setpay bank prune-ledger`` beside a running bank. ``requests`` rows that are kept
(refunds, settled and unanswered decisions) would otherwise be read again by every
batch, so a mark (``retention_marks``) records how far the scan has gone, in
(created_at_ms, rrpid) order; two pruners at once take turns on it (its row is locked).
A decision the scan passed unanswered keeps a mark of its own and is looked at again
once a day (``UNANSWERED_REVISIT_MS``) until it is answered and goes, or is settled by
hand and kept for good (its mark then goes): past the scan's mark, nothing else would
ever look at it again.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass

from gateway.ledger.errors import InvalidRequest
from gateway.ledger.limits import MAX_HOLD_LIFETIME_MS
from gateway.ledger.store import Transaction

DAY_MS = 24 * 3600 * 1000

# Retention a bank gets unless it says otherwise: over a year, so a merchant's retry
# after a long outage, and a dispute's look at what was answered, find the stored answer.
DEFAULT_RETENTION_DAYS = 400
# The shortest retention allowed: the longest a hold may live (``MAX_HOLD_LIFETIME_MS``,
# 30 days) plus a day. Past it, the hold behind any dropped capture or reversal has
# expired, so a request built afresh after its original's answer was dropped is declined;
# the day covers the freshness window (5 minutes), the merchant's renewal margin and
# clocks that differ between hosts.
MIN_RETENTION_DAYS = -(-MAX_HOLD_LIFETIME_MS // DAY_MS) + 1
# The longest retention a setting may ask: a century, far beyond any need, and small
# enough that the horizon stays a 64-bit millisecond count.
MAX_RETENTION_DAYS = 36_500
# Rows deleted in one transaction. Each row is a random key (an RRPID, an XID), so each
# delete touches pages of its own: on the development machine (SQLite, a ledger of 60,000
# rows, other tests running) a batch of 50 took a median of 2 to 6 ms of the writer, and
# of 100, 13 to 22 ms. 50 keeps a batch near what a group of authorizations costs.
RETENTION_BATCH = 50
# The most rows a caller may ask of one prune transaction (tests ask fewer): at the
# figures above, well under a second of the writer, far inside the group commit's 30 s.
MAX_RETENTION_BATCH = 1000
# The pause after a full batch: with a few milliseconds a batch, a backlog takes a fifth
# of the writer's time or less, and still goes at about 2,000 rows a second per table,
# twice what a bank authorizing 1,000 a second adds.
RETENTION_PAUSE_SECONDS = 0.02

_REQUESTS_MARK = "requests"


def check_prune_limit(limit: object) -> None:
    """Rows one prune transaction may touch: 1 to ``MAX_RETENTION_BATCH``."""
    if (
        isinstance(limit, bool)
        or not isinstance(limit, int)
        or not 1 <= limit <= MAX_RETENTION_BATCH
    ):
        raise InvalidRequest(f"limit must be 1 to {MAX_RETENTION_BATCH} rows")


def check_retention_days(days: object) -> int:
    """``days`` as a retention in days; ValueError naming the bounds unless it is an
    integer from ``MIN_RETENTION_DAYS`` to ``MAX_RETENTION_DAYS``."""
    if isinstance(days, bool) or not isinstance(days, int):
        raise ValueError("must be a whole number of days")
    if not MIN_RETENTION_DAYS <= days <= MAX_RETENTION_DAYS:
        raise ValueError(
            f"must be between {MIN_RETENTION_DAYS} (the longest hold, 30 days, and a day)"
            f" and {MAX_RETENTION_DAYS} days"
        )
    return days


# The first moment the calendar arithmetic below can name (1 January of year 1, UTC).
# ``accounts.validate_expiry`` accepts any four digits for the year, so a ledger's
# stored PI could carry year 0000 (the gateway refuses a PI outside 2000-2099 before its
# ledger sees it, ``setcore.pan.check_expiry``, but not one stored before that check),
# whose months ended before that moment: such a PI counts as dead from it, later than
# its true end (its XID is only kept longer, never dropped early) and some two thousand
# years before any clock, so the XID goes at the next prune.
_EARLIEST_DEAD_AFTER_MS = calendar.timegm((1, 1, 1, 0, 0, 0)) * 1000


def pi_dead_after_ms(pan_expiry: str) -> int:
    """The moment from which no decision approves a PI of card expiry ``pan_expiry``
    (YYYYMM): the first millisecond of the next month, UTC (for year 0000, the earliest
    moment the calendar names)."""
    year, month = int(pan_expiry[:4]), int(pan_expiry[4:])
    if year < 1:
        return _EARLIEST_DEAD_AFTER_MS
    # The month's start plus its length, never the next month's start: after December
    # 9999 (an expiry validation accepts) comes year 10000, which the calendar cannot name.
    start_ms = calendar.timegm((year, month, 1, 0, 0, 0)) * 1000
    return start_ms + calendar.monthrange(year, month)[1] * DAY_MS


@dataclass(frozen=True)
class Pruned:
    """One batch: the rows it looked at and the rows it deleted."""

    examined: int
    deleted: int


@dataclass(frozen=True)
class Prunable:
    """What a prune as of now would delete (``setpay bank prune-ledger --dry-run``)."""

    requests: int
    pi_uses: int


# What becomes of a request row ``r``: kept for good (it posted a refund, or its decision
# was settled by hand: ``settled_at_ms`` is set only on a row with an outcome, which no
# answer ever replaces), kept while its decision awaits an answer, or deleted
# ('prunable'). The rule is written here once: a batch deletes the rows it names
# 'prunable', and the dry run counts the same rows.
_FATE_OF = (
    "CASE WHEN EXISTS (SELECT 1 FROM transfers t WHERE t.kind = 'credit'"
    " AND t.rrpid = r.rrpid) THEN 'refund'"
    " WHEN r.settled_at_ms IS NOT NULL THEN 'settled'"
    " WHEN r.outcome IS NOT NULL THEN 'unanswered'"
    " ELSE 'prunable' END"
)
_FATE = f"{_FATE_OF} AS fate"
# The rows of ``requests r`` the scan has still to look at: created before the cutoff
# (the first parameter) and past the mark (the next two).
_PAST_MARK = "r.created_at_ms < ? AND (r.created_at_ms, r.rrpid) > (?, ?)"
# Requests looked at by one batch, in the mark's order, and what becomes of each.
_REQUEST_BATCH = (
    f"SELECT r.rrpid, r.created_at_ms, {_FATE} FROM requests r WHERE {_PAST_MARK}"  # noqa: S608  constants, no input
    " ORDER BY r.created_at_ms, r.rrpid LIMIT ?"
)
_ONE_REQUEST = f"SELECT {_FATE} FROM requests r WHERE r.rrpid = ?"  # noqa: S608  a constant
# A decision the scan passed unanswered may be answered later (a retry builds its answer)
# and may then go, but the scan's mark is past it. So each such row keeps a mark of its own
# in ``retention_marks``: this prefix and its RRPID in hex, and in ``through_ms`` the
# horizon of the batch that last looked at it. Unanswered decisions are rare (a failure
# between a decision and its answer), so these marks are few.
_UNANSWERED = "unanswered:"
# Their LIKE pattern, given as a parameter: the PostgreSQL store reads every % in a
# statement's text as a placeholder.
_UNANSWERED_NAMES = _UNANSWERED + "%"
# How often a row the scan passed unanswered is looked at again: once a day each, so a
# decision left unanswered for good costs a read a day, and one answered late goes within
# a day of its answer.
UNANSWERED_REVISIT_MS = DAY_MS
# The marks of rows the scan passed unanswered that are due to be looked at again (the
# pattern, then the cutoff less ``UNANSWERED_REVISIT_MS``).
_DUE_MARKS = "SELECT name, through_key FROM retention_marks WHERE name LIKE ? AND through_ms <= ?"
_DUE_UNANSWERED = f"{_DUE_MARKS} ORDER BY through_ms, name LIMIT ?"


def _mark(tx: Transaction, *, lock: bool) -> tuple[int, bytes]:
    suffix = tx.row_lock if lock else ""
    row = tx.one(
        f"SELECT through_ms, through_key FROM retention_marks WHERE name = ?{suffix}",  # noqa: S608  lock suffix only
        _REQUESTS_MARK,
    )
    if row is None:  # written by migration 4; an empty scan start if someone removed it
        return -1, b""
    return int(row["through_ms"]), bytes.fromhex(str(row["through_key"]))


def prune_requests(tx: Transaction, *, cutoff_ms: int, limit: int) -> Pruned:
    """Delete the stored answers created before ``cutoff_ms`` that may go (the module
    docstring), looking at ``limit`` rows at most: the unanswered ones due to be looked at
    again, then those past the mark; move the mark on."""
    through_ms, through_key = _mark(tx, lock=True)
    revisited, deleted = _revisit_unanswered(tx, cutoff_ms=cutoff_ms, limit=limit)
    # The batch's rows are shared: what is left after the revisits goes to the scan.
    rows = tx.all(_REQUEST_BATCH, cutoff_ms, through_ms, through_key, limit - revisited)
    for row in rows:
        rrpid = bytes(row["rrpid"])
        if row["fate"] == "prunable":
            deleted += tx.run("DELETE FROM requests WHERE rrpid = ?", rrpid)
        elif row["fate"] == "unanswered":
            tx.run(
                "INSERT INTO retention_marks (name, through_ms, through_key) VALUES (?, ?, ?)"
                " ON CONFLICT (name) DO NOTHING",
                _UNANSWERED + rrpid.hex(),
                cutoff_ms,
                rrpid.hex(),
            )
    if rows:
        last = rows[-1]
        tx.run(
            "UPDATE retention_marks SET through_ms = ?, through_key = ? WHERE name = ?",
            int(last["created_at_ms"]),
            bytes(last["rrpid"]).hex(),
            _REQUESTS_MARK,
        )
    return Pruned(examined=revisited + len(rows), deleted=deleted)


def _revisit_unanswered(tx: Transaction, *, cutoff_ms: int, limit: int) -> tuple[int, int]:
    """Look again at up to ``limit`` rows the scan passed unanswered, not looked at for
    ``UNANSWERED_REVISIT_MS``: delete those answered since, and drop the marks of those
    answered or settled by hand since (a settled row stays for good); return (looked at,
    deleted)."""
    due = tx.all(_DUE_UNANSWERED, _UNANSWERED_NAMES, cutoff_ms - UNANSWERED_REVISIT_MS, limit)
    deleted = 0
    for entry in due:
        rrpid = bytes.fromhex(str(entry["through_key"]))
        row = tx.one(_ONE_REQUEST, rrpid)
        if row is not None and row["fate"] == "unanswered":
            tx.run(
                "UPDATE retention_marks SET through_ms = ? WHERE name = ?",
                cutoff_ms,
                entry["name"],
            )
            continue
        if row is not None and row["fate"] == "prunable":
            deleted += tx.run("DELETE FROM requests WHERE rrpid = ?", rrpid)
        tx.run("DELETE FROM retention_marks WHERE name = ?", entry["name"])
    return len(due), deleted


def prune_pi_uses(tx: Transaction, *, cutoff_ms: int, limit: int) -> Pruned:
    """Delete up to ``limit`` XIDs whose PI has been unapprovable since before ``cutoff_ms``."""
    deleted = tx.run(
        "DELETE FROM pi_uses WHERE xid IN (SELECT xid FROM pi_uses"
        " WHERE dead_after_ms < ? ORDER BY dead_after_ms LIMIT ?)",
        cutoff_ms,
        limit,
    )
    return Pruned(examined=deleted, deleted=deleted)


def anything_left(tx: Transaction, *, cutoff_ms: int) -> tuple[bool, bool]:
    """Whether ``requests`` has rows created before ``cutoff_ms`` past the mark, and
    ``pi_uses`` XIDs that may go (a read: two index probes, so an idle round writes
    nothing)."""
    through_ms, through_key = _mark(tx, lock=False)
    requests = tx.one(
        f"SELECT 1 AS found FROM requests r WHERE {_PAST_MARK} LIMIT 1",  # noqa: S608  a constant
        cutoff_ms,
        through_ms,
        through_key,
    )
    if requests is None:
        requests = tx.one(_DUE_UNANSWERED, _UNANSWERED_NAMES, cutoff_ms - UNANSWERED_REVISIT_MS, 1)
    pi_uses = tx.one("SELECT 1 AS found FROM pi_uses WHERE dead_after_ms < ? LIMIT 1", cutoff_ms)
    return requests is not None, pi_uses is not None


def count_prunable(tx: Transaction, *, cutoff_ms: int) -> Prunable:
    """How many rows a prune as of ``cutoff_ms`` would delete (a read, one full range of
    each index: for an operator's dry run, not for a loop)."""
    through_ms, through_key = _mark(tx, lock=False)
    requests = tx.one(
        f"SELECT COUNT(*) AS n FROM requests r WHERE {_PAST_MARK}"  # noqa: S608  constants
        f" AND {_FATE_OF} = 'prunable'",
        cutoff_ms,
        through_ms,
        through_key,
    )
    # The rows the scan passed unanswered that are due to be looked at again, and have
    # been answered since: few, looked up one by one.
    answered_since = sum(
        1
        for entry in tx.all(
            _DUE_MARKS,
            _UNANSWERED_NAMES,
            cutoff_ms - UNANSWERED_REVISIT_MS,
        )
        if (row := tx.one(_ONE_REQUEST, bytes.fromhex(str(entry["through_key"]))))
        and row["fate"] == "prunable"
    )
    pi_uses = tx.one("SELECT COUNT(*) AS n FROM pi_uses WHERE dead_after_ms < ?", cutoff_ms)
    return Prunable(
        requests=answered_since + (0 if requests is None else int(requests["n"])),
        pi_uses=0 if pi_uses is None else int(pi_uses["n"]),
    )
