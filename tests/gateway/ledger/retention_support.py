"""What the retention tests share: the horizon they prune to, a card whose XIDs may go
before it, a row count, and a decision left awaiting its answer."""

from __future__ import annotations

from gateway.ledger.outcomes import Decline, Outcome
from gateway.ledger.retention import MIN_RETENTION_DAYS
from tests.gateway.ledger.ledger_support import Backend, Bank

# The shortest retention a bank may set: the horizon every retention test prunes to.
DAYS = MIN_RETENTION_DAYS
# A card whose expiry month is over before the tests' clock reaches the horizon (the clock
# starts in October 2025), so its XIDs may go as well.
SHORT_EXPIRY = "202511"
# The first moment of the month after SHORT_EXPIRY, UTC (2025-12-01).
SHORT_DEAD_AFTER_MS = 1_764_547_200_000


def count_rows(backend: Backend, table: str) -> int:
    """How many rows ``table`` holds, read over a connection of its own."""
    ((n,),) = backend.raw_query(f"SELECT COUNT(*) FROM {table}")
    assert isinstance(n, int)
    return n


def unsigned(outcome: Outcome) -> bytes:
    """A ``respond`` whose signature fails: the decision stays without its answer."""
    raise RuntimeError("the signing key went away")


def decline(bank: Bank, rrpid: bytes, *, answered: bool) -> None:
    """A decline under ``rrpid``; unanswered (its signature fails) unless ``answered``, as
    a retry of the same request answers it."""
    respond = bank.respond if answered else unsigned
    bank.ledger.decline(
        Decline.AMOUNT_MISMATCH, rrpid=rrpid, request_digest=b"digest", respond=respond
    )
