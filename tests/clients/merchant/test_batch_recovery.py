"""Batch open, close and purge whose answer is lost or does not verify, against the real
gateway: the request stays pending, and the same bytes, sent again, get the gateway's
first answer, however many send them at once; a query is never stored."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest

from clients.errors import OrderStateError, OutcomeUnknown, TransportError
from clients.merchant import batches as batches_module
from clients.merchant.records import BatchRequest, OperationState
from clients.merchant.runtime import Merchant
from setcore import gateway_admin
from setcore.errors import ErrorCode, ProtocolError
from setpay.v1 import gateway_admin_pb2
from tests.clients.bank_support import RunningBank
from tests.clients.cli_support import run_cli
from tests.clients.conftest import MerchantFactory
from tests.clients.merchant.outage_support import (
    JUST_PAST_MS,
    WELL_PAST_MS,
    GatewayOutage,
    restart,
)
from tests.clients.merchant.tampering_support import (
    EVERY_TAMPERING,
    Exchange,
    TamperingGateway,
    gateway_batches,
)
from tests.clocks import clocks_moved

OPEN = gateway_admin_pb2.BATCH_OPERATION_OPEN
CLOSE = gateway_admin_pb2.BATCH_OPERATION_CLOSE
PURGE = gateway_admin_pb2.BATCH_OPERATION_PURGE
QUERY = gateway_admin_pb2.BATCH_OPERATION_REQUEST
SUCCESS = gateway_admin_pb2.BATCH_ADMIN_STATUS_SUCCESS


def _opened(merchant: Merchant) -> str:
    """A batch the merchant opened, its answer verified."""
    result = merchant.batches.administer(OPEN)
    assert result.status == SUCCESS
    return result.batch_id


def _opened_by_command(merchant: Merchant, capsys: pytest.CaptureFixture[str]) -> str:
    """A batch opened with ``setpay merchant batch open``: its id."""
    base = ["merchant", "--dir", str(merchant.config.base_dir), "batch"]
    status, out, _ = run_cli([*base, "open"], capsys)
    assert status == 0
    return out.split()[1].rstrip(":")


def _closed(merchant: Merchant) -> str:
    batch = _opened(merchant)
    assert merchant.batches.administer(CLOSE, batch).status == SUCCESS
    return batch


# Each change: what comes before it (the batch it names, if any), the operation, and the
# batch's status in the gateway's ledger once it is applied.
CHANGES: dict[str, tuple[Callable[[Merchant], str], int, str]] = {
    "open": (lambda merchant: "", OPEN, "open"),
    "close": (_opened, CLOSE, "closed"),
    "purge": (_closed, PURGE, "purged"),
}


@pytest.mark.parametrize("name", list(CHANGES))
def test_an_unverifiable_answer_to_a_batch_change_leaves_it_pending_and_the_same_bytes_finish_it(
    bank: RunningBank,
    make_merchant: MerchantFactory,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
) -> None:
    """The gateway applied the change, but no answer the merchant gets verifies: the
    command hears "outcome unknown, will retry", and the same command given again sends
    the same request, until the gateway's true answer to it comes back (never its answer
    to a second change: BATCH_CLOSED for our own close, BATCH_ALREADY_OPEN for our own
    open)."""
    before, operation, applied = CHANGES[name]
    gateway = TamperingGateway(monkeypatch, bank)
    merchant = make_merchant(f"m-batch-{name}")
    batch = before(merchant)
    gateway.tamper("BatchAdmin", *EVERY_TAMPERING)
    with pytest.raises(OutcomeUnknown, match="outcome unknown, will retry") as caught:
        merchant.batches.administer(operation, batch)
    assert isinstance(caught.value.cause, ProtocolError)
    (sent,) = merchant.store.batch_requests(OperationState.SENT)
    assert (sent.operation, sent.batch_id) == (operation, batch)
    assert sent.rrpid.hex()[:8] in str(caught.value)
    ledger = gateway_batches(bank, merchant.config.merchant_id)
    opened = batch or next(iter(ledger))  # an open names no batch: the merchant's only one
    assert len(ledger) == 1 and ledger[opened] == applied  # the gateway did apply it
    while gateway.left("BatchAdmin"):
        with pytest.raises(OutcomeUnknown):
            merchant.batches.administer(operation, batch)

    result = merchant.batches.administer(operation, batch)
    assert (result.status, result.batch_id) == (SUCCESS, opened)
    tries = len(EVERY_TAMPERING) + 1
    assert gateway.sent("BatchAdmin")[-tries:] == [sent.request] * tries
    done = merchant.store.batch_request(sent.rrpid)
    assert (done.state, done.status) == (OperationState.SUCCEEDED, SUCCESS)
    assert merchant.store.batch_requests(OperationState.SENT) == []
    assert (opened, result.batch_status.closed) in [
        (b, closed) for b, _, closed in merchant.store.batches()
    ]


def test_a_pending_batch_change_is_sent_again_when_the_merchant_starts(
    bank: RunningBank, make_merchant: MerchantFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    gateway = TamperingGateway(monkeypatch, bank)
    merchant = make_merchant("m-batch-restart")
    batch = _opened(merchant)
    gateway.tamper("BatchAdmin", EVERY_TAMPERING[0])
    with pytest.raises(OutcomeUnknown):
        merchant.batches.administer(CLOSE, batch)
    (sent,) = merchant.store.batch_requests(OperationState.SENT)
    merchant.close()
    again = restart(merchant.config.base_dir)
    try:
        done = again.store.batch_request(sent.rrpid)
        assert (done.state, done.status) == (OperationState.SUCCEEDED, SUCCESS)
        assert (batch, SUCCESS, True) in again.store.batches()
    finally:
        again.close()
    assert gateway.sent("BatchAdmin")[-2:] == [sent.request] * 2


def test_another_change_of_a_batch_waits_for_the_pending_one(
    bank: RunningBank, make_merchant: MerchantFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A purge sent while the close is pending could reach the gateway first and be
    refused: it is refused here, naming the close, and nothing is sent."""
    gateway = TamperingGateway(monkeypatch, bank)
    merchant = make_merchant("m-batch-order")
    batch = _opened(merchant)
    gateway.tamper("BatchAdmin", EVERY_TAMPERING[0])
    with pytest.raises(OutcomeUnknown):
        merchant.batches.administer(CLOSE, batch)
    (close,) = merchant.store.batch_requests(OperationState.SENT)
    sent = len(gateway.sent("BatchAdmin"))
    with pytest.raises(OrderStateError, match=f"batch close {close.rrpid.hex()[:8]} of batch"):
        merchant.batches.administer(PURGE, batch)
    assert len(gateway.sent("BatchAdmin")) == sent
    assert merchant.batches.administer(CLOSE, batch).status == SUCCESS
    assert merchant.batches.administer(PURGE, batch).status == SUCCESS
    assert gateway_batches(bank, merchant.config.merchant_id)[batch] == "purged"


@pytest.mark.parametrize("second", ["command", "round"])
def test_a_close_sent_again_by_a_command_and_a_round_at_once_is_answered_to_both(
    bank: RunningBank,
    make_merchant: MerchantFactory,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    second: str,
) -> None:
    """An operator gives ``batch close`` again while a serving merchant's round resends the
    same waiting close: both get the gateway's one answer, and whichever saves it second
    finds it saved. The command prints it (not a refusal, exit 1), the round counts it
    answered (not "still waiting")."""
    gateway = TamperingGateway(monkeypatch, bank)
    merchant = make_merchant(f"m-batch-race-{second}")
    batch = _opened_by_command(merchant, capsys)
    gateway.tamper("BatchAdmin", EVERY_TAMPERING[0])
    with pytest.raises(OutcomeUnknown):
        merchant.batches.administer(CLOSE, batch)
    (sent,) = merchant.store.batch_requests(OperationState.SENT)
    base = ["merchant", "--dir", str(merchant.config.base_dir), "batch"]
    heard: dict[str, Any] = {}

    def command() -> None:
        heard["command"] = run_cli([*base, "close", "--batch", batch], capsys)

    def round_() -> None:
        heard["round"] = merchant.batches.resume()

    first, then = (round_, command) if second == "command" else (command, round_)

    def then_meanwhile(response: Any, exchange: Exchange, _: TamperingGateway) -> None:
        then()  # the first has the answer and has not saved it yet; the answer is untouched

    gateway.tamper("BatchAdmin", then_meanwhile)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="setpay.merchant"):
        first()

    status, out, err = heard["command"]
    assert (status, err) == (0, "")
    assert out.startswith(f"batch {batch}: SUCCESS closed;")
    assert [r.rrpid for r in heard["round"]] == [sent.rrpid]
    done = merchant.store.batch_request(sent.rrpid)
    assert (done.state, done.status) == (OperationState.SUCCEEDED, SUCCESS)
    assert [
        r.getMessage()
        for r in caplog.records
        if r.name == "setpay.merchant" and r.levelno >= logging.WARNING
    ] == []
    assert gateway.sent("BatchAdmin")[-2:] == [sent.request] * 2
    assert gateway_batches(bank, merchant.config.merchant_id)[batch] == "closed"


def test_two_commands_closing_a_batch_at_once_send_one_close(
    bank: RunningBank,
    make_merchant: MerchantFactory,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Two ``batch close`` given at once each look for a waiting close and find none. The
    second to store its own finds the first's stored meanwhile and sends that one again,
    instead of a second close the gateway would refuse as BATCH_CLOSED (the first one,
    its answer lost, did close the batch)."""
    gateway = TamperingGateway(monkeypatch, bank)
    merchant = make_merchant("m-batch-two-commands")
    batch = _opened_by_command(merchant, capsys)
    close = ["merchant", "--dir", str(merchant.config.base_dir), "batch", "close", "--batch", batch]
    real_build = gateway_admin.build_batch_admin_request
    started: list[bool] = []
    other: list[tuple[int, str, str]] = []

    def other_command_meanwhile(*args: Any, **kwargs: Any) -> Any:
        if not started:
            # This command has looked for a waiting close; the other one runs whole now,
            # and its answer is lost on the way.
            started.append(True)
            gateway.tamper("BatchAdmin", EVERY_TAMPERING[0])
            other.append(run_cli(close, capsys))
        return real_build(*args, **kwargs)

    monkeypatch.setattr(batches_module, "build_batch_admin_request", other_command_meanwhile)
    status, out, err = run_cli(close, capsys)

    ((other_status, _, other_err),) = other
    assert other_status == 4 and "outcome unknown, will retry" in other_err
    assert (status, err) == (0, "")
    assert out.startswith(f"batch {batch}: SUCCESS closed;")
    closes: list[BatchRequest] = [
        r for r in merchant.store.batch_requests() if r.operation == CLOSE
    ]
    assert [(r.state, r.status) for r in closes] == [(OperationState.SUCCEEDED, SUCCESS)]
    assert gateway.sent("BatchAdmin")[-2:] == [closes[0].request] * 2
    assert gateway_batches(bank, merchant.config.merchant_id)[batch] == "closed"


def test_a_close_sent_in_a_long_outage_is_built_afresh_once_it_is_too_old(
    bank: RunningBank, make_merchant: MerchantFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The gateway never saw the close: once its date is too old the gateway refuses it,
    which proves it never applied it; the merchant waits out the margin, then builds the
    close afresh under a new RRPID."""
    outage = GatewayOutage(bank)
    merchant = make_merchant("m-batch-stale", gateway_target=outage.target)
    try:
        batch = _opened(merchant)
        outage.stop()
        with pytest.raises(OutcomeUnknown, match="outcome unknown, will retry") as caught:
            merchant.batches.administer(CLOSE, batch)
        assert isinstance(caught.value.cause, TransportError)
        clocks_moved(monkeypatch, JUST_PAST_MS)
        outage.end(merchant)
        assert merchant.batches.resume() == []
        (stale,) = merchant.store.batch_requests(OperationState.SENT)
        monkeypatch.undo()
        clocks_moved(monkeypatch, WELL_PAST_MS)
        (fresh,) = merchant.batches.resume()
        assert fresh.rrpid != stale.rrpid and fresh.state is OperationState.SUCCEEDED
        failed = merchant.store.batch_request(stale.rrpid)
        assert failed.state is OperationState.FAILED
        assert failed.error_code == ErrorCode.ERROR_CODE_MESSAGE_TOO_OLD
        assert gateway_batches(bank, merchant.config.merchant_id)[batch] == "closed"
    finally:
        merchant.close()
        outage.release()


def test_a_query_is_not_stored(
    bank: RunningBank, make_merchant: MerchantFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A query changes nothing: an answer that does not verify is an error, not a
    request left pending, and asking again is a new query."""
    gateway = TamperingGateway(monkeypatch, bank)
    merchant = make_merchant("m-batch-query")
    batch = _opened(merchant)
    gateway.tamper("BatchAdmin", EVERY_TAMPERING[0])  # its AEAD tag flipped
    with pytest.raises(ProtocolError) as refused:
        merchant.batches.administer(QUERY, batch)
    assert refused.value.code == ErrorCode.ERROR_CODE_DECRYPTION_FAILURE
    assert merchant.batches.administer(QUERY, batch).status == SUCCESS
    first, second = gateway.sent("BatchAdmin")[-2:]
    assert first != second
    assert [r.operation for r in merchant.store.batch_requests()] == [OPEN]
