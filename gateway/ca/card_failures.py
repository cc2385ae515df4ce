"""How many times a card was refused at the Cardholder CA, and when it is refused outright.

A CertReq names a card number and an expiry month; without a bound, anyone holding a card
number could try every expiry month (five years of them is sixty tries, each a CardCInit,
a RegForm and a CertReq) until one is certified. So the refusals of a card are counted,
in ``ca.db`` (every worker of the bank, and the next start, see the same count), under
the issuer's keyed hash of its number (``IssuerDirectory.card_key``), never the number.

The count runs from the card's first refusal after its last certification (or pend), for
as long as refusals keep coming less than ``CARD_FAILURE_MEMORY_MS`` apart: however slowly
a guesser goes, its tries add up. The ``CARD_FAILURE_LIMIT``-th refusal, and every one
after it, refuses the card for ``CARD_REFUSAL_MS`` whatever the request says: the issuer
is still asked first (only its word says whether the card has a code), and its answer
then not used. The answer is the one every refusal of the card gets
(REJECTED_BY_ISSUER), so the requester cannot tell a locked card from a wrong expiry
either. Past the limit a guesser gets one try per refusal period: finding the expiry
takes months, not days. A certified (or pended) request forgets the card's count, and so
does the bank's ``setpay bank release-card`` (``release``).

Only a card without an enrolment code is locked (``gateway.ca.enrolment``): for one with
a code, the code's 80 bits make guessing the expiry hopeless, and a lock would let whoever
holds the number keep its holder from registering (a refusal is counted whoever sent it).
Its refusals are still counted (counted, never locked): the same reads and writes of
``ca.db`` for every refusal, so that how long a refusal takes does not tell whether the
number is a card of this bank with a code. A card opened before codes existed still pays
the price of a lock until the bank gives it a code (``setpay bank
issue-enrolment-code``), which also frees it from one; until then the holder's recourse
is the bank, which releases the card.

Each row is deleted once a refusal period and ``CARD_FAILURE_MEMORY_MS`` have passed since
its last refusal, at the next refusal of any card: a requester cycling through card
numbers leaves one row per number refused within that time, never more.
"""

from __future__ import annotations

from gateway.ca.records import CardFailures
from gateway.ca.store import StoreTransaction

# Refusals a card may collect before it is refused outright: a cardholder mistyping the
# expiry month, or registering a replaced card with the old date, is refused once or
# twice; five leaves room for that and gives a guesser five of sixty months before the
# first refusal period (under a tenth of the expiry space).
CARD_FAILURE_LIMIT = 5
# How long a refusal counts: until this long after the card's latest refusal, so the count
# is not restarted by the calendar (a guesser pacing itself under any daily rate still
# reaches the limit) but by a quiet month. Over four refusal periods, so that waiting
# out a refusal period never clears the count: the next wrong try refuses the card again.
# A cardholder who mistyped once or twice and comes back a month later starts afresh.
CARD_FAILURE_MEMORY_MS = 30 * 24 * 60 * 60 * 1000
# How long a card at or past the limit is refused: a week, so that past the limit a
# guesser gets one try a week (the fifty-five months left take a year, and show in the
# log), short enough that a cardholder locked out by its own mistakes can register
# without asking the bank.
CARD_REFUSAL_MS = 7 * 24 * 60 * 60 * 1000


def card_refused(tx: StoreTransaction, card_key: bytes, now_ms: int) -> bool:
    """True while the card is refused outright: refused whatever the issuer answers."""
    counted = tx.card_failures(card_key)
    return counted is not None and now_ms < counted.locked_until_ms


def count_failure(
    tx: StoreTransaction, card_key: bytes, now_ms: int, *, lockable: bool = True
) -> bool:
    """Count one refusal of the card (forgetting every row that has run out first); True
    when this refusal refuses the card outright for the refusal period, which only a
    ``lockable`` card (one without an enrolment code) ever is."""
    tx.drop_expired_card_failures(now_ms)
    counted = tx.card_failures(card_key) or CardFailures(0, now_ms, 0)
    failures = counted.failures + 1
    locked_until = counted.locked_until_ms
    locks = lockable and failures >= CARD_FAILURE_LIMIT
    if locks:
        locked_until = max(locked_until, now_ms + CARD_REFUSAL_MS)
    updated = CardFailures(failures, counted.window_start_ms, locked_until)
    tx.put_card_failures(card_key, updated, max(now_ms + CARD_FAILURE_MEMORY_MS, locked_until))
    return locks


def forget_failures(tx: StoreTransaction, card_key: bytes) -> None:
    """The card was certified (or pended): its earlier refusals no longer count."""
    tx.forget_card_failures(card_key)


def release(tx: StoreTransaction, card_key: bytes) -> CardFailures | None:
    """Forget the card's refusals at the bank's word (the holder asked: ``setpay bank
    release-card``); what was counted, None if nothing was."""
    counted = tx.card_failures(card_key)
    if counted is not None:
        tx.forget_card_failures(card_key)
    return counted
