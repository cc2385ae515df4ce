"""Which of two verified answers about one purchase the merchant gave later
(``merchant_answers.given_after``): the one further along, when the other says it had
not decided the purchase yet; never one that would replace a decision or the wallet's
own word."""

from __future__ import annotations

import pytest

from clients.wallet.merchant_answers import NOT_BOUGHT, SHED, given_after
from clients.wallet.purchases import REFUSED, SENT

RECEIVED = "COMPLETION_CODE_ORDER_RECEIVED"
NOT_RECEIVED = "COMPLETION_CODE_ORDER_NOT_RECEIVED"
AUTHORIZED = "COMPLETION_CODE_AUTHORIZATION_PERFORMED"
CAPTURED = "COMPLETION_CODE_CAPTURE_PERFORMED"
REJECTED = "COMPLETION_CODE_ORDER_REJECTED"
RATIO = "COMPLETION_CODE_MEANINGLESS_RATIO"


@pytest.mark.parametrize(
    ("answer", "recorded"),
    [(AUTHORIZED, RECEIVED), (REJECTED, RECEIVED), (CAPTURED, NOT_RECEIVED),
     (RECEIVED, NOT_RECEIVED)],
)  # fmt: skip
def test_an_answer_further_along_was_given_after(answer: str, recorded: str) -> None:
    assert given_after(answer, recorded)


@pytest.mark.parametrize(
    ("answer", "recorded"),
    [
        (AUTHORIZED, CAPTURED),  # the inquiry heard of a capture after the PRes
        (AUTHORIZED, REJECTED),  # a decision is never replaced by another
        (RECEIVED, RECEIVED),
        (NOT_RECEIVED, RECEIVED),
        (RATIO, RECEIVED),  # says nothing of progress
        (AUTHORIZED, RATIO),
        (AUTHORIZED, SENT),  # the wallet's own word: not an answer this replaces here
        (AUTHORIZED, SHED),
        (AUTHORIZED, REFUSED),
        (AUTHORIZED, NOT_BOUGHT),
    ],
)
def test_an_answer_not_further_along_is_not_taken_for_a_later_one(
    answer: str, recorded: str
) -> None:
    assert not given_after(answer, recorded)
