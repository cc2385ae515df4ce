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
settling exclude each other whichever commits first. The ``outcome`` stays, for audit;
the money is not moved back: the hold, the capture or the credit stands as decided, and
the operator settles with the merchant (or its acquirer) out of band. From then on the
row is never answered (``idempotency.SettledByHand``), the pruning of key-exchange keys
no longer counts it, and retention drops it as it drops an answered row: once it was
decided more than the horizon ago (``retention``), a refund's row excepted, as ever.

Nothing here reads or shows a PAN: an outcome names accounts and holds by their ids, and
the merchant is read through the hold's merchant account. A reason is the operator's
text, shown again by ``show-unanswered``: one line, no control or bidirectional
character (``setcore.names``), and no run of digits as long as a card number, which
would put one in the ledger and in every listing (refused, not masked: the operator
says it again without).
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
from gateway.ledger.store import Row, Transaction
from setcore.names import describe, refused_character

# The longest reason kept: a sentence or two and a ticket number, not a report.
MAX_REASON_CHARS = 500
# The most decisions one listing reads: they are rare (a failure between a decision and
# its answer), and a ledger holding more needs them answered, not read through.
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
class UnansweredDecision:
    """A decision awaiting its answer, as an operator reads it: what was decided (its
    ``kind``; the merchant, amount and currency where its outcome holds them, None where
    it does not), when it was decided and checked, and whether it was settled by hand."""

    rrpid: bytes
    kind: str
    merchant_id: str | None
    amount: int | None
    currency: int | None
    decided_at_ms: int
    checked_at_ms: int
    settled_at_ms: int | None
    reason: str | None


def check_reason(reason: object) -> str:
    """``reason`` as a settling's reason: InvalidRequest, nothing read or changed, unless
    it is text holding something other than spaces, at most ``MAX_REASON_CHARS``
    characters, no control, line-breaking or bidirectional character, and no run of
    digits as long as a card number (the module docstring). The message never repeats
    the text."""
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidRequest("a reason is required: why the decision is settled by hand")
    if len(reason) > MAX_REASON_CHARS:
        raise InvalidRequest(
            f"a reason is at most {MAX_REASON_CHARS} characters (given: {len(reason)})"
        )
    refused = refused_character(reason)
    if refused is not None:
        raise InvalidRequest(
            "a reason is one line, with no control, line or paragraph separator, or"
            f" bidirectional character (given: {describe(refused)})"
        )
    if echoed(reason) != reason:
        raise InvalidRequest(
            "a reason holds no run of 13 or more digits: it would read as a card number,"
            " and the ledger keeps and shows it; say it without"
        )
    return reason


def list_unanswered(tx: Transaction, *, limit: int = MAX_LISTED) -> tuple[UnansweredDecision, ...]:
    """The decisions awaiting their answer (settled by hand or not), oldest first, at
    most ``limit``: one pass over ``requests`` (no index holds them, as
    ``gateway.pruning_ledger`` reads them), a read."""
    rows = tx.all(
        f"{_SELECTED} WHERE outcome IS NOT NULL ORDER BY created_at_ms, rrpid LIMIT ?",
        limit,
    )
    return tuple(_decision(tx, row) for row in rows)


def unanswered_decision(tx: Transaction, *, rrpid: bytes) -> UnansweredDecision:
    """The decision awaiting its answer under ``rrpid`` (settled by hand or not);
    NotUnanswered, saying what the RRPID holds, if it holds none."""
    row = tx.one(f"{_SELECTED} WHERE rrpid = ?", rrpid)
    if row is None or row["outcome"] is None:
        raise NotUnanswered(_not_awaiting(rrpid, row))
    return _decision(tx, row)


def settle(tx: Transaction, *, rrpid: bytes, reason: str, now_ms: int) -> UnansweredDecision:
    """Record that an operator settled by hand the decision awaiting its answer under
    ``rrpid``, at ``now_ms``, for ``reason`` (the module docstring), and return it.
    InvalidRequest for a reason ``check_reason`` refuses; NotUnanswered for an RRPID
    that names no decision awaiting its answer, or one settled already. Either way
    nothing changed."""
    check_reason(reason)
    # One statement that checks and marks: under READ COMMITTED (PostgreSQL) it waits for
    # an answer being stored by a retry and then finds nothing awaiting one.
    marked = tx.run(
        "UPDATE requests SET settled_at_ms = ?, settled_reason = ? WHERE rrpid = ?"
        " AND outcome IS NOT NULL AND settled_at_ms IS NULL",
        now_ms,
        reason,
        rrpid,
    )
    if not marked:
        unanswered_decision(tx, rrpid=rrpid)  # NotUnanswered if none awaits its answer
        raise NotUnanswered(
            f"request {rrpid.hex()} was settled by hand already (setpay bank"
            " show-unanswered); nothing changed"
        )
    return unanswered_decision(tx, rrpid=rrpid)


def _not_awaiting(rrpid: bytes, row: Row | None) -> str:
    """Why ``rrpid`` names no decision awaiting its answer (``row``: its row, if any)."""
    shown = rrpid.hex()
    if row is None:
        return f"the ledger holds no request {shown}; nothing changed"
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
    if merchant is None and hold_id is not None:
        merchant = _hold_merchant(tx, hold_id)
    return UnansweredDecision(
        rrpid=rrpid, kind=kind, merchant_id=merchant, amount=amount, currency=currency,
        decided_at_ms=decided, checked_at_ms=checked, settled_at_ms=settled, reason=reason,
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


def _hold_merchant(tx: Transaction, hold_id: str) -> str | None:
    """The merchant ID of the hold's merchant account, None if the ledger has no such
    hold."""
    row = tx.one(
        "SELECT m.merchant_id FROM holds h JOIN merchant_accounts m"
        " ON m.account_id = h.merchant_account_id WHERE h.id = ?",
        hold_id,
    )
    return None if row is None else str(row["merchant_id"])


__all__ = [
    "MAX_LISTED",
    "MAX_REASON_CHARS",
    "NotUnanswered",
    "UnansweredDecision",
    "check_reason",
    "list_unanswered",
    "settle",
    "unanswered_decision",
]
