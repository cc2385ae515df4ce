"""The store seam: what a ledger database must offer, and what the ledger rules see of it.

The money rules (``authorization``, ``settlement``, ``batches``, ``accounts``) are written
once, as plain SQL against a ``Transaction``, so SQLite and PostgreSQL cannot drift apart
in semantics. A store contributes only transaction mechanics:

- ``execute(work)`` runs ``work`` in a transaction of its own and returns only after that
  transaction is durably committed. A failure inside ``work`` rolls back ``work`` alone.
  The SQLite store groups many ``execute`` calls into one commit (group commit); the
  PostgreSQL store commits each and retries on serialization failures and deadlocks, so
  ``work`` must be safe to run more than once (it is: it is all database statements;
  responses are signed outside, ``idempotency``).
- ``read(query)`` runs ``query`` on a read-only snapshot, never blocking the writer.

Statements use ``?`` placeholders (the PostgreSQL store converts them). The only other
dialect difference the rules see is ``Transaction.row_lock``: a row lock clause where the
database has concurrent writers (PostgreSQL), empty where one writer owns the database at a
time (SQLite, serialized by its write lock).

Locking order (PostgreSQL; SQLite has a single writer): cards, then merchants, each in
id order, so that no two transactions wait for each other in a cycle.

- A transaction that changes a card account or its holds first locks the card's
  ``accounts`` row, cards in id order when it touches several.
- A hold row is locked only under its card's lock, so no transaction waits for a hold
  (it waited for the card), and holds may be locked anywhere after their card.
- Merchants come after every card. A transaction that changes several merchants'
  balances (one that releases due holds of other merchants than its own: ``expiry``)
  locks all their ``accounts`` rows before it changes the first, in one ``SELECT ...
  ORDER BY id`` with the row lock (``expiry.lock_merchants``). One that changes a single
  merchant may lock it at its first change (settlement locks it before its holds, an
  authorization reaches it through its posting), since it waits for no other merchant
  while holding it. A merchant's batches change only under its lock.

Merchant balances change only through atomic ``UPDATE ... SET x = x + ?`` statements. A
deadlock here is a rule out of this order: the PostgreSQL store retries it, but only
after the server's ``deadlock_timeout`` (1 s by default) has passed.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

R = TypeVar("R")

Row = Mapping[str, Any]
"""A result row by column name."""


class Transaction(abc.ABC):
    """One open database transaction, as the ledger rules see it."""

    row_lock: str = ""
    """Suffix that locks the selected rows until commit (``" FOR NO KEY UPDATE"`` or empty)."""

    @abc.abstractmethod
    def one(self, sql: str, *params: object) -> Row | None:
        """The first row of a query, or None."""

    @abc.abstractmethod
    def all(self, sql: str, *params: object) -> list[Row]:
        """Every row of a query."""

    @abc.abstractmethod
    def run(self, sql: str, *params: object) -> int:
        """Execute a statement; return the number of rows it changed."""


@dataclass(frozen=True)
class CommitStats:
    """One durable commit: how long it took, how many operations it carried, and how many
    attempts failed on serialization failures, deadlocks or key races before it (PostgreSQL;
    always 0 for SQLite's single writer)."""

    seconds: float
    operations: int
    retries: int = 0


CommitObserver = Callable[[CommitStats], None]
"""Called after each durable commit (metrics hook; must be quick and must not raise)."""


class LedgerStore(abc.ABC):
    """A database holding the issuer ledger: durable writes, snapshot reads."""

    @abc.abstractmethod
    def execute(self, work: Callable[[Transaction], R]) -> R:
        """Run ``work`` in its own transaction; return once it is durably committed."""

    @abc.abstractmethod
    def read(self, query: Callable[[Transaction], R]) -> R:
        """Run ``query`` on a consistent read-only snapshot."""

    @abc.abstractmethod
    def close(self) -> None:
        """Finish queued work, then release every connection; later calls raise."""

    def __enter__(self) -> LedgerStore:
        """Use the store as a context manager that closes it."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the store."""
        self.close()
