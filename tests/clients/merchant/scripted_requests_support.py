"""Stored requests whose every sending is answered as a test scripts it, for the order
``StoredRequests.resume`` sends them in (no gateway, no store: captures that only record
what they are asked)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from clients.merchant.outcome import UNVERIFIED_MAX_WAIT_MS
from clients.merchant.records import Money, Operation, OperationKind, OperationState
from clients.merchant.stored_requests import StoredRequests
from setcore.freshness import now_ms

EUR = 978
# A next try no round of a test reaches: the longest back-off, begun as the tests start.
# One further off was put off by a clock stepped back since, and is due at once
# (``StoredRequests.resume``).
PUT_OFF_MS = now_ms() + UNVERIFIED_MAX_WAIT_MS


def operation(name: str, retry_after_ms: int = 0) -> Operation:
    """A capture sent and waiting for its answer, named ``name`` (its RRPID, padded)."""
    return Operation(
        rrpid=name.encode().ljust(32, b"-"), xid=b"x" * 32, kind=OperationKind.CAPTURE,
        amount=Money(EUR, 100, 2), state=OperationState.SENT, request=b"", request_digest=b"",
        original_rrpid=None, result_code=0, result_amount=0, batch_id="", created_ms=0,
        retry_after_ms=retry_after_ms,
    )  # fmt: skip


class Postponing:
    """A store that only takes a request's next try put off (``outcome.pending``)."""

    def postpone(self, *_: object, **__: object) -> None:
        return None


class Scripted(StoredRequests[Operation]):
    """Waiting operations whose every sending is answered as ``answer`` says: the ended
    operation, or an exception (raised from ``_exchange``, as the gateway client would,
    and judged as ``_send`` judges any)."""

    def __init__(self, waiting: list[Operation]) -> None:
        nothing = cast(Any, None)
        super().__init__(cast(Any, Postponing()), nothing, nothing, nothing, "m")
        self.waiting = waiting
        self.sent: list[str] = []
        self.answer: Callable[[Operation], Exception | None] = lambda op: None

    def _exchange(self, request: Operation) -> Operation:
        self.sent.append(self._named(request))
        cause = self.answer(request)
        if cause is not None:
            raise cause
        self.waiting.remove(request)
        return request

    def _unanswered(self) -> list[Operation]:
        return list(self.waiting)

    def _named(self, request: Operation) -> str:
        return request.rrpid.rstrip(b"-").decode()

    def _fail(self, request: Operation, error_code: int) -> Operation:
        raise NotImplementedError

    def _rebuild(self, request: Operation, error_code: int) -> Operation | None:
        raise NotImplementedError
