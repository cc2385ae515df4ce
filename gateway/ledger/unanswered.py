"""Decisions awaiting their answer, as the bank's operator lists them and settles them by
hand (``setpay bank show-unanswered`` and ``settle-unanswered``, ``cli.bank_unanswered``).

A decision is committed before its answer is signed (``idempotency``); a gateway that
fails in between leaves it in ``requests`` with an empty ``response`` and its
``outcome``, and the merchant's retry of the same bytes answers it. Some can never be
answered: the merchant is gone (its certificate revoked, so it never retries, or its
retry fails its checks), a certificate the request names was revoked since, the
key-exchange key it is sealed to was lost. Each such row stays, the retry answered
UNAVAILABLE for ever, and keeps ``setpay ca prune-gateway`` from deleting the older
key-exchange keys (``gateway.pruning_ledger``).

``settle`` records that an operator settled one by hand: when (``settled_at_ms``) and
why (``settled_reason``, schema version 8), in one statement that finds the row still
awaiting its answer and not settled, so an answer stored meanwhile by a retry and the
settling exclude each other whichever commits first. The ``outcome`` stays, for audit.
The settling moves no money, and does not keep it where it was decided either: a capture
or a credit stands as posted, but an authorization's hold stays only until it lapses at
its expiry, when the sweeper gives the money back to the card, and the merchant, never
answered, holds no capture token and can never capture it. So the listing shows, for an
authorization, its hold's state and expiry (``HoldState``), and the operator settles
with the merchant (or its acquirer) out of band knowing which. From then on the row is
never answered (``idempotency.SettledByHand``), the pruning of key-exchange keys no
longer counts it, and retention keeps it for good, as it keeps a refund's row: settled
decisions are rare, and the reason and outcome kept for audit would otherwise go with
it, and a resend of a settled declined credit be refused MESSAGE_TOO_OLD, which the
merchant takes as "nothing happened" and builds afresh (``retention``).

The settling reads no key, so it cannot tell whether an answer could still be built; a
decision milliseconds old is usually one whose answer is on its way. So ``settle``
refuses, in the same statement, one decided less than ``settle_age.SETTLE_MIN_AGE_MS``
ago by the ledger's own record (``created_at_ms``; one dated ahead of the clock too),
unless its caller passes no minimum: the operator's say-so (``settle_age`` says why
12 minutes 30 s).

Nothing here reads or shows a PAN: an outcome names accounts and holds by their ids, and
the merchant is read through the hold's merchant account. A reason is the operator's
text, shown again by ``show-unanswered``: one line, no control or bidirectional
character (``setcore.names``), text UTF-8 encodes (no lone surrogate), and nothing that
could be a card number (``gateway.ledger.reason_filter``): ``MIN_PAN_DIGITS`` to
``MAX_PAN_DIGITS`` digits passing the Luhn check, whatever separates them (a lone letter
beyond ASCII too), in a stretch that no word, no ASCII letter and no mark ending a number
(``: # ; ! ? =``) breaks. That would put a card number in the ledger and in every
listing (refused, not masked: the operator says it again without). A colon or an equals
sign typed between a card number's groups ends the stretch all the same: a trade-off, so
that a time or a pair is kept. A timestamp, a date range or a list of tickets is usually
kept; one refused (about one date range or list in five typed with nothing but spaces,
commas or slashes between its numbers holds whole groups passing the Luhn check) is
reworded, with a word or a number sign between its numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.ledger import outcome_codec
from gateway.ledger.errors import InvalidRequest, LedgerError, OutcomeUnreadable
from gateway.ledger.outcomes import (
    AuthorizationReversed,
    Authorized,
    BatchOutcome,
    Declined,
    Outcome,
    Posted,
    PostingOutcome,
    ReversalDeclined,
)
from gateway.ledger.pan import echoed
from gateway.ledger.reason_filter import could_hold_a_card_number
from gateway.ledger.settle_age import DecisionTooYoung, young_refusal
from gateway.ledger.store import Row, Transaction
from setcore.names import describe, refused_character
from setcore.pan import MAX_PAN_DIGITS, MIN_PAN_DIGITS

# The longest reason kept: a sentence or two and a ticket number, not a report.
MAX_REASON_CHARS = 500
# The most decisions one listing shows: they are rare (a failure between a decision and
# its answer), and a ledger holding more needs them answered, not read through. Those
# settled by hand are listed apart (``list_unanswered``), so they never push one still
# awaiting an answer off the list.
MAX_LISTED = 1000
# What a batch outcome's state says its request was.
_BATCH_KINDS = {"open": "batch open", "closed": "batch close", "purged": "batch purge"}

_SELECTED = (
    "SELECT rrpid, response, outcome, created_at_ms, checked_at_ms, settled_at_ms,"
    " settled_reason FROM requests"
)


class NotUnanswered(LedgerError):
    """The RRPID names no decision awaiting its answer that may be settled: unknown, its
    answer stored, a fence, or settled by hand already. Nothing changed."""


@dataclass(frozen=True)
class HoldState:
    """An authorization's hold as the ledger holds it: ``status`` as stored
    (``pending``, ``closed`` or ``expired``), what it still holds and what was captured,
    and when it lapses (``expires_at_ms``). A settled authorization's money is not kept
    by the settling: the hold lapses then and the sweeper gives it back to the card."""

    status: str
    pending: int
    captured: int
    expires_at_ms: int

    def lapsed(self, now_ms: int) -> bool:
        """Whether the hold has lapsed as of ``now_ms``, swept or not
        (``holds.is_expired``)."""
        return self.status == "expired" or (
            self.status == "pending" and self.expires_at_ms <= now_ms
        )


@dataclass(frozen=True)
class UnansweredDecision:
    """A decision awaiting its answer, as an operator reads it: what was decided (its
    ``kind``; the merchant, amount and currency where its outcome holds them, None where
    it does not), when it was decided and checked, whether it was settled by hand, and
    for an authorization (no capture) its hold (None for every other decision)."""

    rrpid: bytes
    kind: str
    merchant_id: str | None
    amount: int | None
    currency: int | None
    decided_at_ms: int
    checked_at_ms: int
    settled_at_ms: int | None
    reason: str | None
    hold: HoldState | None = None


def check_reason(reason: object) -> str:
    """``reason`` as a settling's reason: InvalidRequest, nothing read or changed, unless
    it is text holding something other than spaces, at most ``MAX_REASON_CHARS``
    characters, UTF-8 encodable, no control, line-breaking or bidirectional character,
    and nothing that could be a card number (the module docstring). The message never
    repeats the text."""
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidRequest("a reason is required: why the decision is settled by hand")
    if len(reason) > MAX_REASON_CHARS:
        raise InvalidRequest(
            f"a reason is at most {MAX_REASON_CHARS} characters (given: {len(reason)})"
        )
    try:
        reason.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidRequest(
            "a reason is text UTF-8 can encode, with no lone surrogate (given:"
            f" U+{ord(reason[exc.start]):04X} at character {exc.start + 1})"
        ) from None
    refused = refused_character(reason)
    if refused is not None:
        raise InvalidRequest(
            "a reason is one line, with no control, line or paragraph separator, or"
            f" bidirectional character (given: {describe(refused)})"
        )
    if could_hold_a_card_number(reason):
        raise InvalidRequest(
            f"a reason holds no run of {MIN_PAN_DIGITS} or more digits that could be a card"
            f" number ({MIN_PAN_DIGITS} to {MAX_PAN_DIGITS} of them passing the Luhn check,"
            " whatever separates them: only a word, a letter a-z or one of # ; ! ? = and the"
            " colon end a run), which the ledger would keep and show; say it without"
        )
    return reason


@dataclass(frozen=True)
class Listing:
    """One listing: the decisions shown (of one sort, at most its ``limit``), and how
    many the ledger holds of each sort: ``awaiting`` not settled by hand, ``settled``
    settled by hand (kept for good, so a count that only grows)."""

    decisions: tuple[UnansweredDecision, ...]
    awaiting: int
    settled: int


def list_unanswered(tx: Transaction, *, settled: bool = False, limit: int = MAX_LISTED) -> Listing:
    """The decisions awaiting their answer not settled by hand, oldest first, or with
    ``settled`` those settled by hand, the most recently settled first; at most
    ``limit``, and the count of each sort. Settled decisions are kept for good
    (``retention``): listed with the others, they would fill a listing cut at ``limit``
    for good. Two passes over ``requests`` (no index holds these rows, as
    ``gateway.pruning_ledger`` reads them), one read."""
    counted = tx.one(
        "SELECT COUNT(*) AS decided, COUNT(settled_at_ms) AS settled FROM requests"
        " WHERE outcome IS NOT NULL"
    )
    decided = 0 if counted is None else int(counted["decided"])
    settled_count = 0 if counted is None else int(counted["settled"])
    if settled:
        chosen = "settled_at_ms IS NOT NULL ORDER BY settled_at_ms DESC, rrpid"
    else:
        chosen = "settled_at_ms IS NULL ORDER BY created_at_ms, rrpid"
    rows = tx.all(f"{_SELECTED} WHERE outcome IS NOT NULL AND {chosen} LIMIT ?", limit)
    return Listing(
        decisions=tuple(_decision(tx, row) for row in rows),
        awaiting=decided - settled_count,
        settled=settled_count,
    )


def unanswered_decision(tx: Transaction, *, rrpid: bytes) -> UnansweredDecision:
    """The decision awaiting its answer under ``rrpid`` (settled by hand or not);
    NotUnanswered, saying what the RRPID holds, if it holds none."""
    row = tx.one(f"{_SELECTED} WHERE rrpid = ?", rrpid)
    if row is None or row["outcome"] is None:
        raise NotUnanswered(_not_awaiting(rrpid, row))
    return _decision(tx, row)


_SETTLE = (
    "UPDATE requests SET settled_at_ms = ?, settled_reason = ? WHERE rrpid = ?"
    " AND outcome IS NOT NULL AND settled_at_ms IS NULL"
)


def settle(
    tx: Transaction, *, rrpid: bytes, reason: str, now_ms: int, min_age_ms: int | None
) -> UnansweredDecision:
    """Record that an operator settled by hand the decision awaiting its answer under
    ``rrpid``, at ``now_ms``, for ``reason`` (the module docstring), and return it.
    InvalidRequest for a reason ``check_reason`` refuses; NotUnanswered for an RRPID
    that names no decision awaiting its answer, or one settled already;
    DecisionTooYoung for one decided less than ``min_age_ms`` before ``now_ms`` by the
    ledger's own record, or after it (``settle_age``; None: whatever its age, the
    operator said so). Either way nothing changed."""
    check_reason(reason)
    # One statement that checks and marks: under READ COMMITTED (PostgreSQL) it waits for
    # an answer being stored by a retry and then finds nothing awaiting one.
    # And, unless the operator said otherwise, that it was decided long enough ago by the
    # ledger's own record: never after ``now_ms`` (a clock set back), so no age under 0.
    marking = _SETTLE if min_age_ms is None else _SETTLE + " AND created_at_ms <= ?"
    bounds = () if min_age_ms is None else (now_ms - max(min_age_ms, 0),)
    marked = tx.run(marking, now_ms, reason, rrpid, *bounds)
    if not marked:
        found = unanswered_decision(tx, rrpid=rrpid)  # NotUnanswered if none awaits
        if found.settled_at_ms is not None or min_age_ms is None:
            raise NotUnanswered(
                f"request {rrpid.hex()} was settled by hand already (setpay bank"
                " show-unanswered); nothing changed"
            )
        raise DecisionTooYoung(young_refusal(rrpid, found.decided_at_ms, now_ms, min_age_ms))
    return unanswered_decision(tx, rrpid=rrpid)


def _not_awaiting(rrpid: bytes, row: Row | None) -> str:
    """Why ``rrpid`` names no decision awaiting its answer (``row``: its row, if any)."""
    shown = rrpid.hex()
    if row is None:
        # Masked as an id the ledger was given is (``pan.echoed``): none it holds, so it
        # may be a card number typed into ``--rrpid`` by mistake, all its digits hex.
        return f"the ledger holds no request {echoed(shown)}; nothing changed"
    if not bytes(row["response"]):
        return (
            f"request {shown} was refused as too old and fenced, never decided: there is"
            " nothing to settle; nothing changed"
        )
    return f"request {shown} was answered: there is nothing to settle; nothing changed"


def _decision(tx: Transaction, row: Row) -> UnansweredDecision:
    """A row of ``requests`` awaiting its answer, read as ``UnansweredDecision``."""
    rrpid = bytes(row["rrpid"])
    decided = int(row["created_at_ms"])
    checked = decided if row["checked_at_ms"] is None else int(row["checked_at_ms"])
    settled = None if row["settled_at_ms"] is None else int(row["settled_at_ms"])
    reason = None if row["settled_reason"] is None else str(row["settled_reason"])
    try:
        outcome = outcome_codec.loads(str(row["outcome"]))
    except OutcomeUnreadable:
        kind, hold_id, merchant, amount, currency = "unreadable outcome", None, None, None, None
    else:
        kind, hold_id, merchant, amount, currency = _described(outcome)
    hold_row = None if hold_id is None else _hold(tx, hold_id)
    if merchant is None and hold_row is not None:
        merchant = str(hold_row["merchant_id"])
    hold = None
    if kind == "authorization" and hold_row is not None:
        hold = HoldState(
            status=str(hold_row["status"]), pending=int(hold_row["pending"]),
            captured=int(hold_row["captured"]), expires_at_ms=int(hold_row["expires_at_ms"]),
        )  # fmt: skip
    return UnansweredDecision(
        rrpid=rrpid, kind=kind, merchant_id=merchant, amount=amount, currency=currency,
        decided_at_ms=decided, checked_at_ms=checked, settled_at_ms=settled, reason=reason,
        hold=hold,
    )  # fmt: skip


_Described = tuple[str, str | None, str | None, int | None, int | None]


def _described(outcome: Outcome) -> _Described:
    """What ``outcome`` decided: (kind, hold id, merchant id, amount, currency), each
    None where the outcome does not hold it."""
    if isinstance(outcome, Authorized):
        kind = "authorization" if outcome.capture is None else "sale"
        return kind, outcome.hold_id, None, outcome.amount, outcome.currency
    if isinstance(outcome, AuthorizationReversed):
        return "authorization reversal", outcome.hold_id, None, outcome.released, outcome.currency
    if isinstance(outcome, ReversalDeclined):
        return f"authorization reversal declined ({outcome.reason.value})", *_NOTHING
    if isinstance(outcome, Declined):
        return f"declined ({outcome.reason.value})", *_NOTHING
    if isinstance(outcome, BatchOutcome):
        summary = outcome.summary
        kind = _BATCH_KINDS.get(summary.status, f"batch {summary.status}")
        return kind, None, summary.merchant_id, None, summary.currency
    return _posting(outcome)


_NOTHING: tuple[None, None, None, None] = (None, None, None, None)


def _posting(outcome: PostingOutcome) -> _Described:
    """A capture, credit or reversal: its kind, and its posted items' sum where they are
    of one kind and currency."""
    posted = [item for item in outcome.items if isinstance(item, Posted)]
    if not posted:
        return f"settlement of {len(outcome.items)} item(s), every one declined", *_NOTHING
    kinds = sorted({item.kind.value for item in posted})
    currencies = {item.currency for item in posted}
    kind = "/".join(kinds)
    if len(posted) < len(outcome.items):
        kind += f" ({len(outcome.items) - len(posted)} of {len(outcome.items)} declined)"
    if len(currencies) != 1 or len(kinds) != 1:
        return kind, posted[0].hold_id, None, None, None
    return kind, posted[0].hold_id, None, sum(item.amount for item in posted), currencies.pop()


def _hold(tx: Transaction, hold_id: str) -> Row | None:
    """The hold's state and its merchant account's merchant ID (no PAN: the card
    account is not read), None if the ledger has no such hold."""
    return tx.one(
        "SELECT m.merchant_id, h.status, h.pending, h.captured, h.expires_at_ms FROM holds h"
        " JOIN merchant_accounts m ON m.account_id = h.merchant_account_id WHERE h.id = ?",
        hold_id,
    )


__all__ = [
    "MAX_LISTED",
    "MAX_REASON_CHARS",
    "HoldState",
    "Listing",
    "NotUnanswered",
    "UnansweredDecision",
    "check_reason",
    "list_unanswered",
    "settle",
    "unanswered_decision",
]
