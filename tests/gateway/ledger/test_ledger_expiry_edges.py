"""Card expiries at the ends of the four-digit years, which validation accepts (any year,
a month from 01 to 12), are decided like any other (every store): December 9999 is
approved while its month is not over, year 0000 is declined EXPIRED_CARD, and the XID's
end of life (``retention.pi_dead_after_ms``) is recorded for both, never an exception."""

from __future__ import annotations

from gateway.ledger import Authorized, Decline, Declined
from gateway.ledger.pruning import prune
from gateway.ledger.retention import MIN_RETENTION_DAYS
from tests.gateway.ledger.ledger_support import EUR, PAN_A, PAN_C, Backend, Bank

LAST_EXPIRY = "999912"
# The first millisecond of year 10000, UTC: when a PI of LAST_EXPIRY stops being approvable.
YEAR_10000_MS = 253_402_300_800_000
FIRST_EXPIRY = "000001"


def _dead_after(backend: Backend) -> list[object]:
    return [row[0] for row in backend.raw_query("SELECT dead_after_ms FROM pi_uses")]


def test_a_card_expiring_in_december_9999_is_approved_every_time(
    bank: Bank, backend: Backend
) -> None:
    card = bank.ledger.open_card_account(PAN_C, LAST_EXPIRY, 10_000, EUR)
    for _ in range(2):
        outcome = bank.authorize(pan=PAN_C, pan_expiry=LAST_EXPIRY, amount=100)
        assert isinstance(outcome, Authorized), outcome
    assert _dead_after(backend) == [YEAR_10000_MS, YEAR_10000_MS]
    assert bank.ledger.card_account(card.account_id).available == 10_000 - 200


def test_a_pi_of_year_0000_is_declined_expired_and_its_xid_goes_at_the_next_prune(
    bank: Bank, backend: Backend
) -> None:
    card = bank.ledger.find_card_account(PAN_A)
    assert bank.authorize(pan=PAN_A, pan_expiry=FIRST_EXPIRY) == Declined(Decline.EXPIRED_CARD)
    assert bank.ledger.card_account(card.account_id).available == card.available
    ((dead_after_ms,),) = backend.raw_query("SELECT dead_after_ms FROM pi_uses")
    assert isinstance(dead_after_ms, int) and dead_after_ms < 0  # long before any clock
    assert prune(bank.ledger, MIN_RETENTION_DAYS, pause_seconds=0).pi_uses == 1


def test_a_card_on_file_with_year_0000_is_declined_expired(bank: Bank) -> None:
    bank.ledger.open_card_account(PAN_C, FIRST_EXPIRY, 10_000, EUR)
    outcome = bank.authorize(pan=PAN_C, pan_expiry=FIRST_EXPIRY)
    assert outcome == Declined(Decline.EXPIRED_CARD)
