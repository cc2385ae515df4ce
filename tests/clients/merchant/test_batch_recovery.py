"""Batch open, close and purge whose answer is lost or does not verify, against the real
gateway: the request stays pending, and the same bytes, sent again, get the gateway's
first answer; a query is never stored."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from clients.errors import OrderStateError, OutcomeUnknown, TransportError
from clients.merchant.records import OperationState
from clients.merchant.runtime import Merchant
from setcore.errors import ErrorCode, ProtocolError
from setpay.v1 import gateway_admin_pb2
from tests.clients.bank_support import RunningBank
from tests.clients.conftest import MerchantFactory
from tests.clients.merchant.outage_support import (
    JUST_PAST_MS,
    WELL_PAST_MS,
    GatewayOutage,
    restart,
)
from tests.clients.merchant.tampering_support import (
    EVERY_TAMPERING,
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
    return result.data.batch_id


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
    assert (result.status, result.data.batch_id) == (SUCCESS, opened)
    tries = len(EVERY_TAMPERING) + 1
    assert gateway.sent("BatchAdmin")[-tries:] == [sent.request] * tries
    done = merchant.store.batch_request(sent.rrpid)
    assert (done.state, done.status) == (OperationState.SUCCEEDED, SUCCESS)
    assert merchant.store.batch_requests(OperationState.SENT) == []
    assert (opened, result.data.batch_status.closed) in [
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
        outage.stop()


def test_a_query_is_not_stored(
    bank: RunningBank, make_merchant: MerchantFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A query changes nothing: an answer that does not verify is an error, not a
    request left pending, and asking again is a new query."""
    gateway = TamperingGateway(monkeypatch, bank)
    merchant = make_merchant("m-batch-query")
    batch = _opened(merchant)
    gateway.tamper("BatchAdmin", EVERY_TAMPERING[0])
    with pytest.raises(ProtocolError):
        merchant.batches.administer(QUERY, batch)
    assert merchant.batches.administer(QUERY, batch).status == SUCCESS
    first, second = gateway.sent("BatchAdmin")[-2:]
    assert first != second
    assert [r.operation for r in merchant.store.batch_requests()] == [OPEN]
