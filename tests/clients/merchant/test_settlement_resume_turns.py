"""When a round of ``resume`` has asked every waiting request, and what it counts as an
answer and keys a request by, with requests the gateway cannot answer taking turns.

Once a round has asked every request waiting, later rounds send only those due
(``outcome.next_try``): one put off after answers that did not verify waits out its
back-off. Requests the gateway cannot answer (UNAVAILABLE for one alone, for as long as
that lasts) go after the others, the one that ended the latest round last; with two of
them, each round ends at whichever ended the oldest round, never at the last request.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from clients.errors import OutcomeUnknown, TransportError
from clients.merchant.records import Money, Operation, Order, OrderState
from clients.merchant.stored_requests import StoredRequests
from setcore.errors import ErrorCode, PeerError, ProtocolError
from tests.clients.merchant.scripted_requests_support import (
    EUR,
    PUT_OFF_MS,
    Postponing,
    Scripted,
    operation,
)


def _stuck_or_unverified(
    late: Operation, *stuck: Operation
) -> Callable[[Operation], Exception | None]:
    """No answer at all for ``stuck``, one that does not verify for ``late``, and the
    others answered."""

    def answer(op: Operation) -> Exception | None:
        if any(op is one for one in stuck):
            return TransportError("gateway Capture", "UNAVAILABLE")
        if op is late:
            return ProtocolError(ErrorCode.ERROR_CODE_SIGNATURE_FAILURE, "did not verify")
        return None

    return answer


def test_two_requests_the_gateway_cannot_answer_let_a_back_off_apply() -> None:
    """Two stuck requests take turns ending the rounds, neither ever the last; once each
    was reached with the gateway answering the others, the rounds have asked them all,
    and the one put off is no longer sent every round."""
    s1, s2 = operation("s1"), operation("s2")
    late = operation("late", retry_after_ms=PUT_OFF_MS)
    requests = Scripted([s1, s2, late])
    requests.answer = _stuck_or_unverified(late, s1, s2)
    rounds = []
    for _ in range(6):
        requests.sent.clear()
        assert requests.resume(due_at_ms=1) == []
        rounds.append(list(requests.sent))
    assert rounds[:2] == [["s1"], ["s2"]]  # away for both, ending one round each
    assert rounds[2] == ["late", "s1"]  # s1 reached, the gateway answering late
    assert rounds[3] == ["late", "s2"]  # s2 reached too: all were asked
    assert all("late" not in sent for sent in rounds[4:]), rounds


def test_a_round_ended_midway_after_an_answer_has_not_asked_them_all() -> None:
    """A round the gateway answered one request of, ended at a request before the last,
    never reached those after it: the one put off among them still goes next round."""
    a, b = operation("a"), operation("b")
    late = operation("late", retry_after_ms=PUT_OFF_MS)  # not reached below
    requests = Scripted([a, b, late])
    requests.answer = lambda op: TransportError("g", "UNAVAILABLE") if op is b else None
    assert requests.resume(due_at_ms=1) == [a]
    assert requests.sent == ["a", "b"]
    requests.answer = lambda op: None
    requests.sent.clear()
    assert requests.resume(due_at_ms=1) == [late, b]  # late never asked: it goes now


def test_one_the_gateway_answered_nothing_of_then_is_not_reached() -> None:
    """A request that ended a round of an outage was sent, but not reached: once the
    gateway is back, a round that ends at a stuck one before it has not asked it."""
    x, y = operation("x"), operation("y")
    late = operation("late", retry_after_ms=PUT_OFF_MS)
    requests = Scripted([x, late, y])
    requests.answer = lambda op: TransportError("g", "UNAVAILABLE")  # away
    assert requests.resume(due_at_ms=1) == []  # x ends it
    assert requests.resume(due_at_ms=1) == []  # late ends it
    requests.answer = _stuck_or_unverified(late, x)  # back, but for x
    requests.sent.clear()
    assert requests.resume(due_at_ms=1) == [y]
    assert requests.sent == ["y", "x"]  # late, after x, not reached since the outage
    requests.sent.clear()
    assert requests.resume(due_at_ms=1) == []
    assert requests.sent == ["late", "x"]  # so it goes, and now all were asked
    requests.sent.clear()
    assert requests.resume(due_at_ms=1) == []
    assert requests.sent == ["x"]


class NotSent(Scripted):
    """``other`` is not sent when resumed: as ``Authorizer._resend`` returns None for an
    order another thread tried since ``resume`` read it, or the order itself when it
    ended meanwhile (``ended``)."""

    def __init__(self, waiting: list[Operation], *, ended: bool) -> None:
        super().__init__(waiting)
        self.ended = ended

    def _resend(self, request: Operation) -> Operation | None:
        if request.rrpid.startswith(b"other"):
            self.sent.append("other, not sent")
            return request if self.ended else None
        return super()._resend(request)


def _not_sent_is_no_answer(ended: bool) -> None:
    other = operation("other")
    late = operation("late", retry_after_ms=PUT_OFF_MS)
    requests = NotSent([other, late], ended=ended)
    requests.answer = lambda op: TransportError("g", "UNAVAILABLE")  # away
    assert requests.resume(due_at_ms=1) == ([other] if ended else [])
    assert requests.sent == ["other, not sent", "late"]
    requests.waiting.remove(other)
    requests.answer = lambda op: None  # back
    requests.sent.clear()
    # The gateway answered nothing last round: late was not asked, and goes now.
    assert requests.resume(due_at_ms=1) == [late]
    assert requests.sent == ["late"]


def test_a_request_another_thread_tried_meanwhile_is_no_answer_of_the_gateway() -> None:
    _not_sent_is_no_answer(ended=False)


def test_a_request_ended_meanwhile_is_no_answer_of_the_gateway() -> None:
    _not_sent_is_no_answer(ended=True)


class Renewing(Scripted):
    """``a`` refused as too old, built afresh as ``a2`` inside the same sending
    (``_renew``), which gets no answer at all."""

    def __init__(self, waiting: list[Operation]) -> None:
        super().__init__(waiting)
        self._store = cast(Any, _NoUnreadable())

    def _rebuild(self, request: Operation, error_code: int) -> Operation | None:
        fresh = operation(self._named(request) + "2")
        self.waiting[self.waiting.index(request)] = fresh
        return fresh


class _NoUnreadable(Postponing):
    def unreadable_answers(self, *_: object) -> int:
        return 0


def test_a_request_built_afresh_in_the_round_it_ends_goes_after_the_others() -> None:
    """The request in flight when the round ended is the one built afresh, under its own
    RRPID: it goes after the others next round, as the one it replaced would have."""
    a, b = operation("a"), operation("b")
    requests = Renewing([a, b])

    def answer(op: Operation) -> Exception | None:
        if op is a:
            return PeerError(ErrorCode.ERROR_CODE_MESSAGE_TOO_OLD, "too old")
        if op.rrpid.startswith(b"a2"):
            return TransportError("gateway Capture", "UNAVAILABLE")
        return None

    requests.answer = answer
    assert requests.resume() == []
    assert requests.sent == ["a", "a2"]
    requests.sent.clear()
    assert requests.resume() == [b]
    assert requests.sent == ["b", "a2"]


# -- orders, keyed by XID: an order's AuthReq has no RRPID until it is built ------------


def _order(name: str) -> Order:
    return Order(
        xid=name.encode().ljust(32, b"-"), lid_m=b"", trans_ids=b"", chall_m=b"",
        description=b"", amount=Money(EUR, 100, 2), brand_id="b",
        state=OrderState.PURCHASED, created_ms=0, updated_ms=0,
    )  # fmt: skip


class Orders(StoredRequests[Order]):
    """Orders purchased, their AuthReqs not built yet: ``unbuilt``'s cannot be built
    now for want of an answer (``authorizer._stored``: nothing sent, no answer at all),
    the others are built and authorized."""

    def __init__(self, waiting: list[Order], unbuilt: Order) -> None:
        nothing = cast(Any, None)
        super().__init__(cast(Any, Postponing()), nothing, nothing, nothing, "m")
        self.waiting = waiting
        self.unbuilt = unbuilt
        self.sent: list[str] = []

    def _resend(self, request: Order) -> Order | None:
        if request is self.unbuilt:
            self.sent.append(f"{self._named(request)}, not built")
            reason = TransportError("gateway certificates", "UNAVAILABLE")
            raise OutcomeUnknown(self._named(request), "AuthReq not built", reason)
        return self._send(request)

    def _exchange(self, request: Order) -> Order:
        self.sent.append(self._named(request))
        self.waiting.remove(request)
        return request

    def _unanswered(self) -> list[Order]:
        return list(self.waiting)

    def _named(self, request: Order) -> str:
        return request.xid.rstrip(b"-").decode()

    def _fail(self, request: Order, error_code: int) -> Order:
        raise NotImplementedError

    def _rebuild(self, request: Order, error_code: int) -> Order | None:
        raise NotImplementedError


def test_an_order_that_ended_a_round_goes_after_the_others_by_its_xid() -> None:
    """Two orders with no AuthReq yet (no RRPID either): the one whose AuthReq could not
    be built ended the round, and only it goes after the other."""
    x, y = _order("x"), _order("y")
    requests = Orders([x, y], unbuilt=x)
    assert requests.resume() == []
    assert requests.sent == ["x, not built"]
    assert requests.resume() == [y]
    assert requests.sent == ["x, not built", "y", "x, not built"]
