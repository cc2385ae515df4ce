"""Outcomes kept as JSON while their answer is built: every kind round-trips, and text
this code did not write is refused rather than guessed at."""

from __future__ import annotations

import json

import pytest

from gateway.ledger import (
    AuthorizationReversed,
    Authorized,
    BatchOutcome,
    BatchSummary,
    Decline,
    Declined,
    KindTotals,
    Outcome,
    Posted,
    PostingOutcome,
    ReversalDeclined,
    TransactionKind,
)
from gateway.ledger.errors import OutcomeUnreadable
from gateway.ledger.outcome_codec import dumps, loads

_SALE = Posted(TransactionKind.CAPTURE, "hold-1", 1999, 978, "batch-1", 7)
_SUMMARY = BatchSummary(
    batch_id="batch-1",
    merchant_id="m-1",
    status="closed",
    currency=978,
    opened_at_ms=1_700_000_000_000,
    closed_at_ms=1_700_000_100_000,
    totals={kind: KindTotals(count=1, amount=5) for kind in TransactionKind},
)

OUTCOMES: list[Outcome] = [
    Declined(Decline.INSUFFICIENT_FUNDS),
    Authorized("hold-1", "card-1", 1999, 978, 1_700_000_000_000, None),
    Authorized("hold-1", "card-1", 1999, 978, 1_700_000_000_000, _SALE),
    AuthorizationReversed("hold-1", 1000, 999, 978),
    ReversalDeclined(Decline.INVALID_AMOUNT, authorized=400),
    PostingOutcome((_SALE, Declined(Decline.UNKNOWN_HOLD))),
    PostingOutcome(()),
    BatchOutcome(_SUMMARY),
    BatchOutcome(BatchSummary("b", "m", "open", 840, 1, None, {})),
]


@pytest.mark.parametrize("outcome", OUTCOMES, ids=lambda o: type(o).__name__)
def test_every_outcome_comes_back_equal(outcome: Outcome) -> None:
    text = dumps(outcome)
    assert loads(text) == outcome
    assert json.loads(text)["type"] == type(outcome).__name__


def test_only_outcomes_are_written() -> None:
    with pytest.raises(TypeError, match="not an outcome"):
        dumps(_SUMMARY)  # type: ignore[arg-type]  # a part of an outcome, not one


def _declined(**changes: object) -> str:
    value: dict[str, object] = {"type": "Declined", "reason": "insufficient-funds"}
    value.update(changes)
    return json.dumps(value)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("not json", "Expecting value"),
        ("[]", "only objects belong"),
        ('{"reason": "insufficient-funds"}', "type None does not belong"),
        (_declined(type="KindTotals"), "does not belong here"),  # a class, but no outcome
        (_declined(type="Exception"), "does not belong here"),  # never a class by name
        (_declined(reason="no-such-reason"), "not a valid Decline"),
        (_declined(extra=1), "with fields"),
        ('{"type": "Declined"}', "with fields"),
        (
            json.dumps({"type": "AuthorizationReversed", "hold_id": "h", "amount": "5",
                        "released": 1, "currency": 978}),
            "expected an integer",
        ),
        (
            json.dumps({"type": "AuthorizationReversed", "hold_id": "h", "amount": True,
                        "released": 1, "currency": 978}),
            "expected an integer",
        ),
        (
            json.dumps({"type": "PostingOutcome", "items": [{"type": "AuthorizationReversed",
                        "hold_id": "h", "amount": 1, "released": 1, "currency": 978}]}),
            "does not belong here",
        ),
        (json.dumps({"type": "PostingOutcome", "items": {}}), "expected list"),
    ],
)  # fmt: skip
def test_text_this_code_did_not_write_is_refused(text: str, why: str) -> None:
    with pytest.raises(OutcomeUnreadable, match=why):
        loads(text)


def test_an_outcome_that_would_not_read_back_is_refused_when_written() -> None:
    # Caught before the decision commits, not when a retry needs its answer.
    with pytest.raises(TypeError, match="does not read back"):
        dumps(AuthorizationReversed(hold_id=5, amount=1, released=1, currency=978))  # type: ignore[arg-type]


def test_text_nested_beyond_reason_is_refused() -> None:
    with pytest.raises(OutcomeUnreadable):
        loads("[" * 100_000)
