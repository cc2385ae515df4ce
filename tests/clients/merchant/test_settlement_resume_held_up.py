"""A request the gateway answers UNAVAILABLE alone does not hold up the others in ``resume``.

The gateway answers UNAVAILABLE, for as long as that lasts, a request it decided but
cannot build the answer of now (``gateway.servicer``: a certificate it names revoked
since). ``resume`` ends its round at a request with no answer at all, taking the gateway
for unreachable; the oldest first, such a request ended every round before any younger
one was sent again. A request that ended a round now goes after the others in the rounds
that follow, the one that ended the latest round last; an unreachable gateway still ends
each round at the first request it fails.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from clients.errors import OutcomeUnknown, TransportError
from clients.merchant import gateway_client
from clients.merchant.records import Operation, OperationState
from gateway import settlement as gateway_settlement
from setcore.capture import build_capture_response
from setcore.errors import ErrorCode, ProtocolError
from setpay.v1 import capture_pb2
from tests.clients.bank_support import RunningBank
from tests.clients.conftest import MerchantFactory, WalletFactory
from tests.clients.merchant.scripted_requests_support import PUT_OFF_MS, Scripted, operation
from tests.clients.merchant.tampering_support import gateway_hold
from tests.clients.test_purchase_flow import buy, offer


def test_a_capture_the_gateway_cannot_answer_does_not_hold_up_a_younger_one(
    bank: RunningBank,
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    merchant = make_merchant("m-held-up")
    wallet = make_wallet(merchant)
    stuck_xid = bytes.fromhex(buy(wallet, offer(merchant, 1000)).xid)
    xid = bytes.fromhex(buy(wallet, offer(merchant, 500)).xid)
    real_build = build_capture_response

    def build(credentials: Any, verified: Any, decisions: Any) -> bytes:
        # The gateway decided the capture but cannot build its answer now: every sending
        # of its bytes is answered UNAVAILABLE ("answer unavailable").
        if verified.items[0].item.trans_ids.xid == stuck_xid:
            raise ProtocolError(ErrorCode.ERROR_CODE_REVOKED_CERTIFICATE, "revoked since")
        result: bytes = real_build(credentials, verified, decisions)
        return result

    monkeypatch.setattr(gateway_settlement, "build_capture_response", build)
    with pytest.raises(OutcomeUnknown, match="answer unavailable"):
        merchant.settlement.capture(stuck_xid, 1000)
    real_capture = gateway_client.GatewayClient.capture

    def unreachable(*_: object) -> capture_pb2.CaptureResponse:
        raise TransportError("gateway Capture", "UNAVAILABLE")

    monkeypatch.setattr(gateway_client.GatewayClient, "capture", unreachable)
    with pytest.raises(OutcomeUnknown):
        merchant.settlement.capture(xid, 500)  # never reached the gateway
    monkeypatch.setattr(gateway_client.GatewayClient, "capture", real_capture)
    (stuck,) = merchant.store.operations(stuck_xid)
    (younger,) = merchant.store.operations(xid)

    assert merchant.settlement.resume() == []  # the older first: it ends the round
    assert merchant.store.operation(younger.rrpid).state is OperationState.SENT
    (done,) = merchant.settlement.resume()  # now after the younger one
    assert done.rrpid == younger.rrpid
    assert done.state is OperationState.SUCCEEDED and done.result_amount == 500
    assert merchant.store.operation(stuck.rrpid).state is OperationState.SENT
    assert gateway_hold(bank, xid).transfers["capture"] == 1
    assert gateway_hold(bank, stuck_xid).transfers["capture"] == 1


# -- the order of a round, on requests of a kind that only records what it is asked ------


def _unavailable(*names: str) -> Callable[[Operation], Exception | None]:
    """No answer (UNAVAILABLE) for the operations named; the others are answered."""

    def answer(op: Operation) -> Exception | None:
        named = op.rrpid.rstrip(b"-").decode()
        return TransportError("gateway Capture", "UNAVAILABLE") if named in names else None

    return answer


def test_an_outage_ends_each_round_at_its_first_request_and_they_take_turns() -> None:
    """Unreachable, the gateway costs one request's retries per round, as before; the
    requests take turns being that one, and once it is back, one it still cannot
    answer goes last and the others end."""
    a, b, c = operation("a"), operation("b"), operation("c")
    requests = Scripted([a, b, c])
    requests.answer = _unavailable("a", "b", "c")
    for _ in range(3):
        assert requests.resume() == []
    assert requests.sent == ["a", "b", "c"]

    requests.sent.clear()
    requests.answer = _unavailable("a")  # back, but for the one it cannot answer
    assert requests.resume() == []  # a ended the longest-ago round: it goes first
    assert requests.resume() == [b, c]
    assert requests.sent == ["a", "b", "c", "a"]
    assert requests.waiting == [a]


def test_a_request_answered_again_goes_back_to_its_place() -> None:
    """A request that ended a round, once the gateway answers it again (here an answer
    that did not verify: it still waits), is no longer put after the others: it goes
    back to its place, oldest first."""
    a, b, d = operation("a"), operation("b"), operation("d")
    requests = Scripted([a, b])
    requests.answer = _unavailable("a")
    assert requests.resume() == []
    requests.waiting.append(d)  # stored since: younger than a

    def answer(op: Operation) -> Exception | None:
        if op is a:
            return ProtocolError(ErrorCode.ERROR_CODE_SIGNATURE_FAILURE, "did not verify")
        return None

    requests.answer = answer
    requests.sent.clear()
    assert requests.resume() == [b, d]
    assert requests.sent == ["b", "d", "a"]  # a after the others: it ended the last round
    requests.waiting.append(operation("e"))
    requests.sent.clear()
    assert [op.rrpid[:1] for op in requests.resume()] == [b"e"]
    assert requests.sent == ["a", "e"]  # answered last round: back in its place


def test_a_round_that_ends_at_its_last_request_has_asked_every_one() -> None:
    """Once a round has asked every waiting request, later rounds send only those due
    (``outcome.next_try``): a round that ended at its last request asked them all."""
    unverified = operation("late", retry_after_ms=PUT_OFF_MS)  # put off: not due again
    stuck = operation("stuck")
    requests = Scripted([unverified, stuck])

    def answer(op: Operation) -> Exception | None:
        if op is unverified:  # an answer that did not verify: it stays waiting
            return ProtocolError(ErrorCode.ERROR_CODE_SIGNATURE_FAILURE, "did not verify")
        return TransportError("gateway Capture", "UNAVAILABLE")

    requests.answer = answer
    assert requests.resume(due_at_ms=1) == []
    assert requests.sent == ["late", "stuck"]
    requests.sent.clear()
    assert requests.resume(due_at_ms=1) == []
    assert requests.sent == ["stuck"]  # the one put off is not due yet


def test_a_round_the_gateway_answered_nothing_of_has_not_asked_them_all() -> None:
    """A round whose every request got no answer at all proves nothing of any: a start
    with the gateway away still sends even those put off once it is back."""
    late = operation("late", retry_after_ms=PUT_OFF_MS)
    requests = Scripted([late])
    requests.answer = _unavailable("late")
    assert requests.resume(due_at_ms=1) == []
    requests.answer = lambda op: None  # back
    assert requests.resume(due_at_ms=1) == [late]
    assert requests.sent == ["late", "late"]
