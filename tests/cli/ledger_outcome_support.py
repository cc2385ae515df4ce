"""A bank's own ledger store whose one kind of operation fails as an unknown outcome: what
the tests of ``setpay bank``'s commands that cannot learn whether the ledger took their
change share."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from gateway.ledger import LedgerStore, StoreUnavailable

R = TypeVar("R")


class OutcomeUnknown:
    """The bank's ledger store, whose operation ``func`` (an ``accounts`` function) fails
    with ``raised``: after its commit (``committed``: an acknowledgement lost, as a broken
    connection to PostgreSQL or the ledger service, or a group commit that did not finish
    in time, loses it) or before it. Every other operation goes through."""

    def __init__(
        self,
        store: LedgerStore,
        func: Callable[..., Any],
        *,
        committed: bool,
        raised: BaseException | None = None,
    ) -> None:
        self._store = store
        self._func = func
        self._committed = committed
        self._raised = raised or StoreUnavailable("the ledger writer did not commit in time")

    def execute(self, work: Callable[[Any], R]) -> R:
        if getattr(work, "func", None) is not self._func:
            return self._store.execute(work)
        if self._committed:
            self._store.execute(work)
        raise self._raised

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)
