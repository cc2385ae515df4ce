"""How many times a card was refused at the Cardholder CA, and when it is refused outright.

A CertReq names a card number and an expiry month; without a bound, anyone holding a card
number could try every expiry month (five years of them is sixty tries, each a CardCInit,
a RegForm and a CertReq) until one is certified. So the refusals of a card are counted,
in ``ca.db`` (every worker of the bank, and the next start, see the same count), under
the issuer's keyed hash of its number (``IssuerDirectory.card_key``), never the number.
A card refused ``CARD_FAILURE_LIMIT`` times within ``CARD_FAILURE_WINDOW_MS`` is refused
for ``CARD_REFUSAL_MS`` whatever the request says, without asking the issuer; the answer
is the one every refusal of the card gets (REJECTED_BY_ISSUER), so the requester cannot
tell a locked card from a wrong expiry either. A certified (or pended) request forgets the
card's count.

Each row is deleted once its window and refusal period have passed, at the next refusal
of any card: a requester cycling through card numbers leaves one row per number refused
within the last window, never more.
"""

from __future__ import annotations

from gateway.ca.records import CardFailures
from gateway.ca.store import StoreTransaction

# Refusals a card may collect in one window before it is refused outright: a cardholder
# mistyping the expiry month, or registering a replaced card with the old date, is
# refused once or twice; five leaves room for that and gives a guesser five of sixty
# months per window and lockout (under a tenth of the expiry space).
CARD_FAILURE_LIMIT = 5
# The window refusals are counted in: a day, so that a cardholder's mistakes yesterday do
# not count against today's attempt, while a guesser gets at most the limit per day.
CARD_FAILURE_WINDOW_MS = 24 * 60 * 60 * 1000
# How long a card past the limit is refused: a week, long enough that guessing all sixty
# months takes the better part of a year (and shows in the log), short enough that a
# cardholder locked out by mistakes can register without asking the bank.
CARD_REFUSAL_MS = 7 * 24 * 60 * 60 * 1000


def card_refused(tx: StoreTransaction, card_key: bytes, now_ms: int) -> bool:
    """True while the card is past its limit: refused without asking the issuer."""
    counted = tx.card_failures(card_key)
    return counted is not None and now_ms < counted.locked_until_ms


def count_failure(tx: StoreTransaction, card_key: bytes, now_ms: int) -> bool:
    """Count one refusal of the card (forgetting every row that has run out); True when
    this refusal puts the card past its limit."""
    tx.drop_expired_card_failures(now_ms)
    counted = tx.card_failures(card_key)
    if counted is None:
        counted = CardFailures(0, now_ms, 0)
    elif now_ms >= counted.window_start_ms + CARD_FAILURE_WINDOW_MS:
        counted = CardFailures(0, now_ms, counted.locked_until_ms)
    failures = counted.failures + 1
    locked_until = counted.locked_until_ms
    if failures >= CARD_FAILURE_LIMIT:
        locked_until = max(locked_until, now_ms + CARD_REFUSAL_MS)
    updated = CardFailures(failures, counted.window_start_ms, locked_until)
    expires = max(updated.window_start_ms + CARD_FAILURE_WINDOW_MS, locked_until)
    tx.put_card_failures(card_key, updated, expires)
    return failures == CARD_FAILURE_LIMIT


def forget_failures(tx: StoreTransaction, card_key: bytes) -> None:
    """The card was certified (or pended): its earlier refusals no longer count."""
    tx.forget_card_failures(card_key)
