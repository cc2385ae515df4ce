"""Double-entry books: every balance change is a transfer between two accounts.

Each transfer moves ``amount`` from its debit account to its credit account, in one of
four phases (TigerBeetle's two-phase transfers):

    phase     debit account                     credit account
    pending   debits_pending  += a              credits_pending += a
    post      debits_pending  -= a,             credits_pending -= a,
              debits_posted   += a              credits_posted  += a
    void      debits_pending  -= a              credits_pending -= a
    single    debits_posted   += a              credits_posted  += a

so in every currency the sum of debits equals the sum of credits, pending and posted
alike. ``check_balanced`` proves that, and that every account's running balances and every
hold's figures equal what the journal says they should be. Every transfer moves the money
of one hold; a settlement transfer (a capture, a credit, or the reversal of either) is
also filed in a batch, and a reversal names the transfer it undoes. ``check_balanced``
holds the journal to that as well: a transfer outside a hold would escape the holds'
figures, which are what bound captures and refunds.

Balances alone cannot tell whose money a transfer moved: a refund paid to another card
than its hold's, or booked the wrong way round, leaves every sum equal to its journal and
every hold's figure right. So each transfer is also held to its hold (``_POSTING_RULES``):
between the hold's own card and merchant, in the direction and phase of its kind, in the
hold's currency; a settlement transfer in a batch of the hold's merchant (the batch's
totals are what the gateway signs to that merchant), no other kind in any batch; a
reversal undoing the whole of an original of its own hold and of the kind it reverses.

Nor can they tell when a hold's money moved: a capture of a hold past its expiry, or one
posted after the hold's release, leaves the figures summing right. So each hold is also
held to its expiry (``expiry``): every capture dated before the hold expired (a decision
captures only a hold it finds unexpired by its own clock, and dates the capture by that
clock), the release at expiry posted at most once and nothing capturing, lowering or
releasing the hold after it (every one of them holds the card's lock, so the journal's
ids keep their order), and the hold ``expired`` exactly when that release is posted.

``differences`` runs the same checks and lists what each finds instead of stopping at the
first: the audit an operator runs (``setpay bank check-books``), on a snapshot, writing
nothing. ``check_balanced`` raises on the first of them, found by the same code.
"""

from __future__ import annotations

import enum
import itertools
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass

from gateway.ledger.errors import LedgerImbalance, StoreError
from gateway.ledger.exact_sums import grouped_sums
from gateway.ledger.store import Transaction


class Phase(enum.StrEnum):
    """How a transfer moves the balances of its two accounts."""

    PENDING = "pending"
    POST = "post"
    VOID = "void"
    SINGLE = "single"


class TransferKind(enum.StrEnum):
    """What a transfer records; the settlement kinds match ``TransactionKind`` values."""

    AUTHORIZATION = "authorization"
    AUTHORIZATION_REVERSAL = "authorization-reversal"
    EXPIRY = "expiry"
    CAPTURE = "capture"
    CAPTURE_REVERSAL = "capture-reversal"
    CREDIT = "credit"
    CREDIT_REVERSAL = "credit-reversal"


# Transfers filed in a settlement batch, and those among them that undo an earlier one.
_SETTLEMENT_KINDS = (
    TransferKind.CAPTURE,
    TransferKind.CAPTURE_REVERSAL,
    TransferKind.CREDIT,
    TransferKind.CREDIT_REVERSAL,
)
_REVERSAL_KINDS = (TransferKind.CAPTURE_REVERSAL, TransferKind.CREDIT_REVERSAL)

# The kinds that move money from the merchant back to the card (debit the merchant,
# credit the card); every other kind debits the hold's card and credits its merchant.
_TO_CARD_KINDS = (TransferKind.CREDIT, TransferKind.CAPTURE_REVERSAL)
# The phase each kind is posted in (``authorization``, ``expiry``, ``settlement``).
_PHASE_OF: dict[TransferKind, Phase] = {
    TransferKind.AUTHORIZATION: Phase.PENDING,
    TransferKind.AUTHORIZATION_REVERSAL: Phase.VOID,
    TransferKind.EXPIRY: Phase.VOID,
    TransferKind.CAPTURE: Phase.POST,
    TransferKind.CAPTURE_REVERSAL: Phase.SINGLE,
    TransferKind.CREDIT: Phase.SINGLE,
    TransferKind.CREDIT_REVERSAL: Phase.SINGLE,
}
# What each reversal kind undoes.
_REVERSED_KIND = {
    TransferKind.CAPTURE_REVERSAL: TransferKind.CAPTURE,
    TransferKind.CREDIT_REVERSAL: TransferKind.CREDIT,
}

# How many differences ``differences`` lists at most: a badly damaged ledger has one for
# nearly every row, and a list nobody can read through says no more than its first page.
MAX_DIFFERENCES = 100

# (debits_pending, debits_posted) deltas of the debit account per unit, and likewise
# (credits_pending, credits_posted) of the credit account: the table in the docstring.
_DELTAS: dict[Phase, tuple[int, int]] = {
    Phase.PENDING: (1, 0),
    Phase.POST: (-1, 1),
    Phase.VOID: (-1, 0),
    Phase.SINGLE: (0, 1),
}


@dataclass(frozen=True)
class CurrencyTotals:
    """The four balance sums over every account of one currency."""

    currency: int
    debits_pending: int
    debits_posted: int
    credits_pending: int
    credits_posted: int


def post_transfer(
    tx: Transaction,
    *,
    kind: TransferKind,
    phase: Phase,
    debit_account_id: str,
    credit_account_id: str,
    amount: int,
    currency: int,
    now_ms: int,
    hold_id: str | None = None,
    rrpid: bytes | None = None,
    reverses_id: int | None = None,
    batch_id: str | None = None,
    batch_seq: int | None = None,
) -> int:
    """Journal one transfer and apply it to both accounts' balances; return its id."""
    row = tx.one(
        "INSERT INTO transfers (kind, phase, debit_account_id, credit_account_id, amount,"
        " currency, hold_id, rrpid, reverses_id, batch_id, batch_seq, created_at_ms)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        kind.value,
        phase.value,
        debit_account_id,
        credit_account_id,
        amount,
        currency,
        hold_id,
        rrpid,
        reverses_id,
        batch_id,
        batch_seq,
        now_ms,
    )
    if row is None:  # INSERT ... RETURNING always yields the new row
        raise StoreError("a transfer's INSERT ... RETURNING returned no row")
    pending, posted = _DELTAS[phase]
    tx.run(
        "UPDATE accounts SET debits_pending = debits_pending + ?,"
        " debits_posted = debits_posted + ? WHERE id = ?",
        pending * amount,
        posted * amount,
        debit_account_id,
    )
    tx.run(
        "UPDATE accounts SET credits_pending = credits_pending + ?,"
        " credits_posted = credits_posted + ? WHERE id = ?",
        pending * amount,
        posted * amount,
        credit_account_id,
    )
    return int(row["id"])


def totals(tx: Transaction) -> tuple[CurrencyTotals, ...]:
    """The balance sums per currency, ordered by currency: exact past int64 on every
    store (``exact_sums``), as every account fits it but their sum need not."""
    rows = grouped_sums(
        tx,
        "SELECT currency, COALESCE(SUM(debits_pending), 0) AS dp,"
        " COALESCE(SUM(debits_posted), 0) AS dd, COALESCE(SUM(credits_pending), 0) AS cp,"
        " COALESCE(SUM(credits_posted), 0) AS cd FROM accounts GROUP BY currency"
        " ORDER BY currency",
        "SELECT currency, debits_pending AS dp, debits_posted AS dd,"
        " credits_pending AS cp, credits_posted AS cd FROM accounts",
        ("currency",),
        ("dp", "dd", "cp", "cd"),
    )
    return tuple(
        CurrencyTotals(
            currency=int(r["currency"]),
            debits_pending=int(r["dp"]),
            debits_posted=int(r["dd"]),
            credits_pending=int(r["cp"]),
            credits_posted=int(r["cd"]),
        )
        for r in rows
    )


def check_balanced(tx: Transaction) -> None:
    """Raise LedgerImbalance unless the books and the holds agree with the journal: at
    the first difference ``differences`` would list."""
    for problem in _differences(tx, rows_per_rule=1):
        raise LedgerImbalance(problem)


def differences(tx: Transaction, limit: int = MAX_DIFFERENCES) -> tuple[str, ...]:
    """Each difference ``check_balanced`` looks for that the books hold, in the order it
    looks (at most ``limit``; empty when the books balance). Each names a currency, an
    account, a hold or a transfer by its id, never a card number."""
    if limit < 1:
        raise ValueError(f"a limit of differences is at least 1, not {limit}")
    return tuple(itertools.islice(_differences(tx, rows_per_rule=limit), limit))


def _differences(tx: Transaction, rows_per_rule: int) -> Iterator[str]:
    """Every difference, lazily: ``check_balanced`` reads no further than the first. A
    rule over the transfers lists at most ``rows_per_rule`` of the rows breaking it."""
    for t in totals(tx):
        if t.debits_pending != t.credits_pending or t.debits_posted != t.credits_posted:
            yield f"currency {t.currency}: debits and credits differ"
    yield from _account_differences(tx)
    yield from _transfer_differences(tx, rows_per_rule)
    yield from _posting_differences(tx, rows_per_rule)
    yield from _hold_differences(tx)


# What every transfer of the listed kinds must have (all kinds when none are listed), and
# what a row lacking it is: checked in this order by ``_transfer_differences``.
_TRANSFER_RULES: tuple[tuple[tuple[TransferKind, ...], str, str], ...] = (
    ((), "hold_id IS NULL", "belongs to no hold"),
    (_SETTLEMENT_KINDS, "(batch_id IS NULL OR batch_seq IS NULL)", "is in no batch"),
    (_REVERSAL_KINDS, "reverses_id IS NULL", "names no original"),
)


def _transfer_differences(tx: Transaction, rows: int) -> Iterator[str]:
    """Every transfer names its hold; settlement ones their batch; reversals their original
    (up to ``rows`` transfers named per rule)."""
    for kinds, lacking, problem in _TRANSFER_RULES:
        of_kind = f"kind IN ({_marks(len(kinds))}) AND " if kinds else ""
        for row in tx.all(
            f"SELECT id, kind FROM transfers WHERE {of_kind}{lacking}"  # noqa: S608  fixed text
            " ORDER BY id LIMIT ?",
            *(kind.value for kind in kinds),
            rows,
        ):
            yield f"transfer {row['id']} ({row['kind']}) {problem}"


def _marks(count: int) -> str:
    return ", ".join("?" for _ in range(count))


_KINDS_IN_PHASE = " OR ".join("(t.kind = ? AND t.phase = ?)" for _ in _PHASE_OF)
_UNREVERSED = [k.value for k in TransferKind if k not in _REVERSED_KIND]
_UNSETTLED = [k.value for k in TransferKind if k not in _SETTLEMENT_KINDS]
_TO_CARD = [k.value for k in _TO_CARD_KINDS]

# Each rule: the rows of ``transfers t`` (with its hold ``h``) that break it, the values
# its placeholders take, and what such a row is. Checked in this order, by
# ``_posting_differences``, after ``_transfer_differences`` has looked for rows lacking a
# hold, batch or original where their kind needs one (a join finds no such row here).
_POSTING_RULES: tuple[tuple[str, tuple[object, ...], str], ...] = (
    (
        "JOIN holds h ON h.id = t.hold_id WHERE NOT ("
        f"(t.kind IN ({_marks(len(_TO_CARD))}) AND t.debit_account_id = h.merchant_account_id"
        " AND t.credit_account_id = h.card_account_id) OR"
        f" (t.kind NOT IN ({_marks(len(_TO_CARD))}) AND t.debit_account_id = h.card_account_id"
        " AND t.credit_account_id = h.merchant_account_id))",
        (*_TO_CARD, *_TO_CARD),
        "does not move money between its hold's card and merchant the way its kind does",
    ),
    (
        f"WHERE NOT ({_KINDS_IN_PHASE})",
        tuple(v for kind, phase in _PHASE_OF.items() for v in (kind.value, phase.value)),
        "is not in the phase of its kind",
    ),
    (
        "JOIN holds h ON h.id = t.hold_id WHERE t.currency <> h.currency",
        (),
        "is not in its hold's currency",
    ),
    (
        f"WHERE t.kind IN ({_marks(len(_UNSETTLED))})"
        " AND (t.batch_id IS NOT NULL OR t.batch_seq IS NOT NULL)",
        tuple(_UNSETTLED),
        "is filed in a batch, which settles captures, credits and their reversals only",
    ),
    (
        "JOIN holds h ON h.id = t.hold_id JOIN batches b ON b.id = t.batch_id"
        " WHERE b.merchant_account_id <> h.merchant_account_id",
        (),
        "is filed in a batch of another merchant than its hold's",
    ),
    (
        f"WHERE t.kind IN ({_marks(len(_UNREVERSED))}) AND t.reverses_id IS NOT NULL",
        tuple(_UNREVERSED),
        "names an original, which only a reversal undoes",
    ),
    (
        "JOIN transfers o ON o.id = t.reverses_id WHERE o.hold_id <> t.hold_id"
        " OR o.amount <> t.amount OR NOT ("
        + " OR ".join("(t.kind = ? AND o.kind = ?)" for _ in _REVERSED_KIND)
        + ")",
        tuple(v for kind, undone in _REVERSED_KIND.items() for v in (kind.value, undone.value)),
        "does not undo the whole of an original of its hold and of the kind it reverses",
    ),
)


def _posting_differences(tx: Transaction, rows: int) -> Iterator[str]:
    """Every transfer moves its own hold's money as its kind says (``_POSTING_RULES``; up
    to ``rows`` transfers named per rule)."""
    for where, values, problem in _POSTING_RULES:
        for row in tx.all(
            f"SELECT t.id, t.kind FROM transfers t {where} ORDER BY t.id LIMIT ?",  # noqa: S608  fixed text
            *values,
            rows,
        ):
            yield f"transfer {row['id']} ({row['kind']}) {problem}"


def _account_differences(tx: Transaction) -> Iterator[str]:
    """Every account's running balances are what its transfers made them. The journal's
    sums may pass int64 where the balances do not: every authorization ever made between a
    card and a merchant adds to one pending sum, each void takes it back (``exact_sums``)."""
    expected: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    journal = grouped_sums(
        tx,
        "SELECT debit_account_id, credit_account_id, phase, currency,"
        " SUM(amount) AS total FROM transfers"
        " GROUP BY debit_account_id, credit_account_id, phase, currency",
        "SELECT debit_account_id, credit_account_id, phase, currency, amount AS total"
        " FROM transfers",
        ("debit_account_id", "credit_account_id", "phase", "currency"),
        ("total",),
    )
    currencies = {
        str(r["id"]): int(r["currency"]) for r in tx.all("SELECT id, currency FROM accounts")
    }
    for r in journal:
        pending, posted = _DELTAS[Phase(r["phase"])]
        amount = int(r["total"])
        debit, credit = str(r["debit_account_id"]), str(r["credit_account_id"])
        if currencies.get(debit) != int(r["currency"]) or currencies.get(credit) != int(
            r["currency"]
        ):
            yield f"a transfer between {debit} and {credit} crosses currencies"
        expected[debit][0] += pending * amount
        expected[debit][1] += posted * amount
        expected[credit][2] += pending * amount
        expected[credit][3] += posted * amount
    for r in tx.all(
        "SELECT id, debits_pending, debits_posted, credits_pending, credits_posted FROM accounts"
    ):
        actual = [
            int(r["debits_pending"]),
            int(r["debits_posted"]),
            int(r["credits_pending"]),
            int(r["credits_posted"]),
        ]
        if actual != expected.get(str(r["id"]), [0, 0, 0, 0]):
            yield f"account {r['id']}: balances differ from its transfers"


@dataclass(frozen=True)
class _KindOnHold:
    """The transfers of one kind on one hold, as ``_hold_differences`` reads them."""

    total: int
    count: int
    first_id: int
    last_id: int
    last_at_ms: int


_NONE_OF_KIND = _KindOnHold(total=0, count=0, first_id=0, last_id=0, last_at_ms=0)
# The kinds besides a release that change what a hold authorizes: none follows its release.
_NOT_AFTER_RELEASE = (TransferKind.CAPTURE, TransferKind.AUTHORIZATION_REVERSAL)


def _expiry_differences(
    hold_id: str, status: str, expires_at_ms: int, kinds: dict[TransferKind, _KindOnHold]
) -> Iterator[str]:
    """A hold's journal keeps to its expiry (the module docstring)."""
    captures, releases = kinds[TransferKind.CAPTURE], kinds[TransferKind.EXPIRY]
    if captures.count and captures.last_at_ms >= expires_at_ms:
        yield f"hold {hold_id}: captured at or after its expiry"
    if releases.count > 1:
        yield f"hold {hold_id}: released at its expiry more than once"
    if releases.count and any(
        kinds[kind].count and kinds[kind].last_id > releases.first_id for kind in _NOT_AFTER_RELEASE
    ):
        yield f"hold {hold_id}: captured or lowered after its release at expiry"
    if (status == "expired") != (releases.count > 0):
        yield f"hold {hold_id}: status {status} does not fit its releases at expiry"


def _hold_differences(tx: Transaction) -> Iterator[str]:
    """Every hold's figures and status are what its transfers say, it keeps to its expiry,
    and every account's pending balance is what its pending holds hold."""
    on_hold: dict[tuple[str, str], _KindOnHold] = {
        (str(r["hold_id"]), str(r["kind"])): _KindOnHold(
            total=int(r["total"]),
            count=int(r["n"]),
            first_id=int(r["first_id"]),
            last_id=int(r["last_id"]),
            last_at_ms=int(r["last_at"]),
        )
        # Within int64, unlike the sums ``exact_sums`` guards: one hold's captures, credits
        # and reversals of either are each within a posted sum of its card, which only
        # grows and which the store keeps within it (``limits``); its authorization and
        # its release are one transfer each, its authorization reversals within them.
        for r in tx.all(
            "SELECT hold_id, kind, SUM(amount) AS total, COUNT(*) AS n, MIN(id) AS first_id,"
            " MAX(id) AS last_id, MAX(created_at_ms) AS last_at FROM transfers"
            " WHERE hold_id IS NOT NULL GROUP BY hold_id, kind"
        )
    }
    held_per_account: dict[str, int] = defaultdict(int)
    for h in tx.all("SELECT * FROM holds"):
        hold_id = str(h["id"])
        kinds = {kind: on_hold.get((hold_id, kind.value), _NONE_OF_KIND) for kind in TransferKind}

        def journal(kind: TransferKind, kinds: dict[TransferKind, _KindOnHold] = kinds) -> int:
            return kinds[kind].total

        authorized = journal(TransferKind.AUTHORIZATION) - journal(
            TransferKind.AUTHORIZATION_REVERSAL
        )
        pending = authorized - journal(TransferKind.CAPTURE) - journal(TransferKind.EXPIRY)
        figures = {
            "amount": authorized,
            "pending": pending,
            "captured": journal(TransferKind.CAPTURE),
            "capture_reversed": journal(TransferKind.CAPTURE_REVERSAL),
            "credited": journal(TransferKind.CREDIT),
            "credit_reversed": journal(TransferKind.CREDIT_REVERSAL),
        }
        for column, value in figures.items():
            if int(h[column]) != value:
                yield f"hold {hold_id}: {column} differs from its transfers"
        open_amount = int(h["amount"]) - int(h["captured"])
        if (h["status"] == "pending") != (pending > 0) or (pending > 0 and pending != open_amount):
            yield f"hold {hold_id}: status {h['status']} does not fit its figures"
        yield from _expiry_differences(hold_id, str(h["status"]), int(h["expires_at_ms"]), kinds)
        held_per_account[str(h["card_account_id"])] += pending
        held_per_account[str(h["merchant_account_id"])] += pending
    for r in tx.all("SELECT id, kind, debits_pending, credits_pending FROM accounts"):
        held = int(r["debits_pending"] if r["kind"] == "card" else r["credits_pending"])
        if held != held_per_account.get(str(r["id"]), 0):
            yield f"account {r['id']}: pending balance differs from its holds"
