"""``Batches.administer`` with a batch id no gateway takes: none ("", the id of a waiting
open) for a close, purge or query, or one longer than MAX_BATCH_ID_CHARS. It used to be
signed, stored and sent, refused as DECODING_FAILURE; a close of batch "" whose answer was
lost stayed pending where a waiting open is looked up, and held up every open after it.
One an earlier release left there is advised away by serve, not by a command the command
line refuses."""

from __future__ import annotations

import pytest

from clients.errors import OrderStateError
from clients.merchant import renewal
from clients.merchant.records import OperationState
from setcore.capture import MAX_BATCH_ID_CHARS
from setcore.gateway_admin import TransactionPage
from setpay.v1 import gateway_admin_pb2
from tests.clients.bank_support import RunningBank
from tests.clients.conftest import MerchantFactory
from tests.clients.merchant.tampering_support import TamperingGateway, gateway_batches
from tests.clients.merchant.test_renewal_in_flight import _clocks

OPEN = gateway_admin_pb2.BATCH_OPERATION_OPEN
CLOSE = gateway_admin_pb2.BATCH_OPERATION_CLOSE
PURGE = gateway_admin_pb2.BATCH_OPERATION_PURGE
QUERY = gateway_admin_pb2.BATCH_OPERATION_REQUEST
TOO_LONG = "b" * (MAX_BATCH_ID_CHARS + 1)


@pytest.mark.parametrize(
    ("operation", "batch_id"),
    [(CLOSE, ""), (PURGE, ""), (QUERY, ""), (CLOSE, TOO_LONG), (QUERY, TOO_LONG)],
    ids=["close-none", "purge-none", "query-none", "close-too-long", "query-too-long"],
)
def test_administer_refuses_a_batch_id_no_gateway_takes(
    bank: RunningBank,
    make_merchant: MerchantFactory,
    monkeypatch: pytest.MonkeyPatch,
    operation: int,
    batch_id: str,
) -> None:
    """Nothing signed, stored or sent; and an open, which names no batch, still goes."""
    merchant = make_merchant(f"m-batch-id-{operation}-{len(batch_id)}")
    gateway = TamperingGateway(monkeypatch, bank)  # records every request sent
    with pytest.raises(ValueError, match="batch") as refused:
        merchant.batches.administer(operation, batch_id)
    assert TOO_LONG not in str(refused.value)
    assert merchant.store.batch_requests() == []
    assert not any(gateway.exchanges.values())
    opened = merchant.batches.administer(OPEN)
    assert opened.status == gateway_admin_pb2.BATCH_ADMIN_STATUS_SUCCESS
    assert gateway_batches(bank, merchant.config.merchant_id) == {opened.batch_id: "open"}


@pytest.mark.parametrize("operation", [CLOSE, PURGE], ids=["close", "purge"])
def test_a_change_of_no_batch_left_by_an_earlier_release_advises_serve(
    bank: RunningBank,
    make_merchant: MerchantFactory,
    operation: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A close (or purge) of batch "" an earlier release stored, its answer lost, waits
    where an open does. The advice used to be to give it again, which the command line
    now refuses; it names serve, whose resume round sends it and ends it, after which an
    open goes."""
    merchant = make_merchant(f"m-batch-none-left-{operation}")
    page = TransactionPage(0, 0)
    merchant.store.add_batch_request(merchant.batches._build(operation, "", True, page))
    name = "close" if operation == CLOSE else "purge"
    with pytest.raises(OrderStateError) as held:
        merchant.batches.administer(OPEN)
    said = str(held.value)
    assert f"batch {name} " in said and "of no batch" in said
    assert "let serve send it (its start-up round" in said and "before open" in said
    assert "no command can give it again" in said
    assert f"give batch {name} again" not in said
    # Left by an earlier release, so stored long before this release's round sends it
    # again: no earlier sending can still be decided, and the refusal is final
    # (``outcome.undecided``). The merchant's clock moves, not the gateway's.
    with monkeypatch.context() as later:
        _clocks(later, 0, renewal.decidable_until(0) + 1_000)
        [ended] = merchant.batches.resume()  # what serve's rounds do
    assert ended.state is OperationState.FAILED and ended.batch_id == ""
    assert merchant.store.batch_requests(OperationState.SENT) == []
    opened = merchant.batches.administer(OPEN)
    assert opened.status == gateway_admin_pb2.BATCH_ADMIN_STATUS_SUCCESS


def test_a_change_of_a_named_batch_still_advises_giving_it_again(
    bank: RunningBank, make_merchant: MerchantFactory
) -> None:
    """A close of a named batch waiting holds up a purge of it: giving the close again is
    still the advice, since the command line takes it."""
    merchant = make_merchant("m-batch-named-waits")
    page = TransactionPage(0, 0)
    merchant.store.add_batch_request(merchant.batches._build(CLOSE, "b-1", True, page))
    with pytest.raises(OrderStateError) as held:
        merchant.batches.administer(PURGE, "b-1")
    said = str(held.value)
    assert "of batch b-1" in said
    assert "give batch close again, or let serve send it, before purge" in said
    assert "no command can give it again" not in said
