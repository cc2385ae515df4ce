"""``Batches.administer`` with a batch id no gateway takes: none ("", the id of a waiting
open) for a close, purge or query, or one longer than MAX_BATCH_ID_CHARS. It used to be
signed, stored and sent, refused as DECODING_FAILURE; a close of batch "" whose answer was
lost stayed pending where a waiting open is looked up, and held up every open after it."""

from __future__ import annotations

import pytest

from setcore.capture import MAX_BATCH_ID_CHARS
from setpay.v1 import gateway_admin_pb2
from tests.clients.bank_support import RunningBank
from tests.clients.conftest import MerchantFactory
from tests.clients.merchant.tampering_support import TamperingGateway, gateway_batches

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
