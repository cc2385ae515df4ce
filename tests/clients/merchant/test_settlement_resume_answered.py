"""What a round of ``resume`` takes for the gateway's answer to a request: a verdict on
its answer, or any failure once the gateway client had it (the merchant's store failing
to save it); never a failure before anything was sent (a damaged row), nor a request not
sent at all (another thread had just tried it). Those teach nothing of the gateway: the
request keeps its place after the others, and an outage stays an outage.
"""

from __future__ import annotations

import logging
from typing import Any, cast

import pytest

from clients.errors import StoreError, TransportError
from clients.merchant import gateway_client
from clients.merchant.gateway_client import GatewayClient
from clients.merchant.records import Operation
from setcore.capture import CaptureState
from setcore.errors import ErrorCode, ProtocolError
from tests.clients.merchant.scripted_requests_support import PUT_OFF_MS, Scripted, operation

UNAVAILABLE = TransportError("gateway Capture", "UNAVAILABLE")
UNVERIFIED = ProtocolError(ErrorCode.ERROR_CODE_SIGNATURE_FAILURE, "did not verify")


class _Answering:
    """A gateway channel that answers every call (an empty response), or none."""

    def __init__(self) -> None:
        self.away = False

    def call(self, method: str, request: bytes, response_cls: type[Any], **_: Any) -> Any:
        if self.away:
            raise UNAVAILABLE
        return response_cls()


class Sending(Scripted):
    """Scripted requests, but ``how[name]`` may send nothing (``not sent``: another
    thread tried it), fail before sending (``damaged``: its row), or have the store fail
    to save the gateway's answer (``unsaved``: the capture goes through a real
    ``GatewayClient``, whose answer is opened as verified)."""

    def __init__(self, waiting: list[Operation], monkeypatch: pytest.MonkeyPatch) -> None:
        super().__init__(waiting)
        self.how: dict[str, str] = {}
        self.channel = _Answering()
        self.client = GatewayClient(cast(Any, self.channel), cast(Any, None), cast(Any, None), "m")
        monkeypatch.setattr(self.client, "gateway_identity", lambda: None)
        monkeypatch.setattr(gateway_client, "open_capture_response", lambda *_, **__: None)

    def _resend(self, request: Operation) -> Operation | None:
        if self.how.get(self._named(request)) == "not sent":
            self.sent.append(f"{self._named(request)}, not sent")
            return None
        return super()._resend(request)

    def _exchange(self, request: Operation) -> Operation:
        how = self.how.get(self._named(request))
        if how == "damaged":
            self.sent.append(f"{self._named(request)}, damaged")
            raise StoreError("merchant database damaged: its order has no AuthReq RRPID")
        if how == "unsaved":
            self.sent.append(self._named(request))
            self.client.capture(b"", CaptureState(request.rrpid, b"", ()))
            raise StoreError("the answer could not be saved")
        return super()._exchange(request)


@pytest.mark.parametrize("how", ["not sent", "damaged"])
def test_a_request_neither_sent_nor_answered_keeps_its_place_last(
    how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request that ended a round with no answer goes after the others, until the
    gateway answers it: not sending it, or failing before it is sent, is no answer."""
    a, b = operation("a"), operation("b")
    requests = Sending([a, b], monkeypatch)
    requests.answer = lambda op: UNAVAILABLE if op is a else UNVERIFIED
    assert requests.resume() == []
    assert requests.sent == ["a"]  # a ends the round: last from now on
    requests.how["a"] = how
    for _ in range(2):
        requests.sent.clear()
        assert requests.resume() == []
        assert requests.sent == ["b", f"a, {how}"]


def test_an_answer_the_merchant_failed_to_save_is_an_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The gateway answered, and the store failed to save it: the gateway can answer the
    request again, so it goes with the others, oldest first."""
    a, b = operation("a"), operation("b")
    requests = Sending([a, b], monkeypatch)
    requests.answer = lambda op: UNAVAILABLE if op is a else UNVERIFIED
    assert requests.resume() == []
    requests.how["a"] = "unsaved"
    requests.sent.clear()
    assert requests.resume() == []
    assert requests.sent == ["b", "a"]
    requests.sent.clear()
    assert requests.resume() == []
    assert requests.sent == ["a", "b"]
    # The gateway away: the same call is no answer, and the request goes last again.
    requests.channel.away = True
    requests.answer = lambda op: UNAVAILABLE
    requests.sent.clear()
    assert requests.resume() == []
    assert requests.sent == ["a"]
    requests.channel.away = False
    requests.answer = lambda op: UNVERIFIED
    requests.how.clear()
    requests.sent.clear()
    assert requests.resume() == []
    assert requests.sent == ["b", "a"]


def test_a_request_failing_before_it_is_sent_leaves_an_outage_an_outage(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The gateway away throughout, one request's row damaged: every round is logged as
    the outage it is, and none counts as having asked every request, so the one put off
    after answers that did not verify still goes in every round once the gateway is back."""
    d, x = operation("d"), operation("x")
    late = operation("late", retry_after_ms=PUT_OFF_MS)
    requests = Sending([d, x, late], monkeypatch)
    requests.how["d"] = "damaged"
    requests.answer = lambda op: UNAVAILABLE
    caplog.set_level(logging.WARNING, logger="setpay.merchant")
    for _ in range(3):
        caplog.clear()
        assert requests.resume(due_at_ms=1) == []
        ends = [m for m in caplog.messages if m.startswith("gateway ")]
        assert len(ends) == 1 and ends[0].startswith("gateway unreachable"), ends
    requests.answer = lambda op: UNVERIFIED  # back
    requests.sent.clear()
    assert requests.resume(due_at_ms=1) == []
    assert "late" in requests.sent


def test_what_a_round_remembers_is_only_of_requests_still_waiting() -> None:
    """A merchant resumes for months: which requests a round reached is kept for those
    still waiting alone, not for every request it ever resumed."""
    many = [operation(f"r{n}") for n in range(50)]
    stuck = operation("stuck")
    requests = Scripted([*many, stuck])
    requests.answer = lambda op: UNAVAILABLE if op is stuck else UNVERIFIED
    assert requests.resume(due_at_ms=1) == []  # every one reached, stuck ending it
    requests.answer = lambda op: UNAVAILABLE if op is stuck else None  # the others end
    assert requests.resume(due_at_ms=1) == many
    assert requests.resume(due_at_ms=1) == []
    assert requests._reached == {stuck.rrpid}


def test_only_a_call_the_gateway_answered_is_heard(monkeypatch: pytest.MonkeyPatch) -> None:
    """``answers_heard`` moves once the gateway answered, even when its answer then fails
    to open; not for a call that got no answer."""
    requests = Sending([], monkeypatch)
    state = CaptureState(b"r" * 32, b"", ())
    heard = gateway_client.answers_heard()
    requests.channel.away = True
    with pytest.raises(TransportError):
        requests.client.capture(b"", state)
    assert gateway_client.answers_heard() == heard

    def unverified(*_: object, **__: object) -> None:
        raise UNVERIFIED

    monkeypatch.setattr(gateway_client, "open_capture_response", unverified)
    requests.channel.away = False
    with pytest.raises(ProtocolError):
        requests.client.capture(b"", state)
    assert gateway_client.answers_heard() == heard + 1


def test_the_gateway_away_through_a_real_client_is_logged_unreachable(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A request the merchant would fail to save goes through the gateway client, which
    the gateway does not answer: the round ends as the outage it is."""
    a, b = operation("a"), operation("b")
    requests = Sending([a, b], monkeypatch)
    requests.how["a"] = "unsaved"
    requests.channel.away = True
    requests.answer = lambda op: UNAVAILABLE
    caplog.set_level(logging.WARNING, logger="setpay.merchant")
    assert requests.resume() == []
    assert requests.sent == ["a"]
    ends = [m for m in caplog.messages if m.startswith("gateway ")]
    assert len(ends) == 1 and ends[0].startswith("gateway unreachable"), ends
