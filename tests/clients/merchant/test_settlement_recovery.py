"""Settlement operations across crashes and gateway outages, against the real gateway."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest

from clients.merchant import gateway_client
from clients.merchant.config import load as load_merchant_config
from clients.merchant.records import OperationKind, OperationState, OrderState
from clients.merchant.runtime import Merchant
from clients.merchant.store import MerchantStore
from setcore.errors import ErrorCode, ProtocolError
from tests.clients.conftest import MerchantFactory, WalletFactory
from tests.clients.test_purchase_flow import buy, offer


class Crash(BaseException):
    """Stands for the process dying: nothing after it runs, nothing catches it."""


def _die_at_write(monkeypatch: pytest.MonkeyPatch, store: MerchantStore, number: int) -> None:
    """The process dies as it starts the store's ``number``-th write from now."""
    real = store._write
    count = itertools.count(1)

    @contextmanager
    def write() -> Iterator[object]:
        if next(count) == number:
            raise Crash
        with real() as conn:
            yield conn

    monkeypatch.setattr(store, "_write", write)


def _restart(directory: Path) -> Merchant:
    """What ``setpay merchant serve`` does at start, on the same directory."""
    merchant = Merchant.open(load_merchant_config(directory))
    try:
        merchant.serve()
    except BaseException:
        merchant.close()
        raise
    return merchant


# Writes of a full reversal: the operation stored (1), then what the gateway's answer
# changes (2, and 3 if those changes take two writes).
@pytest.mark.parametrize("dies_at", [2, 3])
def test_a_crash_after_a_full_reversal_is_answered_does_not_stop_the_next_start(
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
    dies_at: int,
) -> None:
    merchant = make_merchant(f"m-revcrash-{dies_at}")
    xid = bytes.fromhex(buy(make_wallet(merchant), offer(merchant, 700)).xid)
    directory = merchant.config.base_dir
    _die_at_write(monkeypatch, merchant.store, dies_at)
    with suppress(Crash):  # no third write: the answer was saved whole, nothing died
        merchant.settlement.reverse_authorization(xid, 0)
    monkeypatch.undo()
    merchant.close()
    # Never half: the order reversed with its operation still waiting, or the reverse.
    store = MerchantStore(directory / "merchant.db")
    try:
        (operation,) = store.operations(xid)
        reversed_ = store.order(xid).state is OrderState.REVERSED
        assert reversed_ == (operation.state is OperationState.SUCCEEDED)
    finally:
        store.close()

    again = _restart(directory)
    try:
        assert again.store.order(xid).state is OrderState.REVERSED
        (operation,) = again.store.operations(xid)
        assert operation.kind is OperationKind.AUTH_REVERSAL
        assert operation.state is OperationState.SUCCEEDED and operation.result_amount == 0
    finally:
        again.close()


def test_resume_handles_each_operation_on_its_own(
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """One unanswered operation that cannot be finished now is logged; the others are
    still resumed, and the merchant still starts."""
    merchant = make_merchant("m-resume-each")
    wallet = make_wallet(merchant)
    reversed_xid = bytes.fromhex(buy(wallet, offer(merchant, 300)).xid)
    captured_xid = bytes.fromhex(buy(wallet, offer(merchant, 400)).xid)
    for action in (
        lambda: merchant.settlement.reverse_authorization(reversed_xid, 0),
        lambda: merchant.settlement.capture(captured_xid, 400),
    ):
        _die_at_write(monkeypatch, merchant.store, 2)  # stored, sent, answer not saved
        with pytest.raises(Crash):
            action()
        monkeypatch.undo()
    directory = merchant.config.base_dir
    merchant.close()

    def unverifiable(*_: object) -> object:
        raise ProtocolError(ErrorCode.ERROR_CODE_SIGNATURE_FAILURE, "answer did not verify")

    monkeypatch.setattr(gateway_client.GatewayClient, "reverse_authorization", unverifiable)
    with caplog.at_level(logging.INFO, logger="setpay.merchant"):
        again = _restart(directory)
    try:
        assert again.port
        (reversal,) = again.store.operations(reversed_xid)
        assert reversal.state is OperationState.SENT  # still waiting, for a later start
        assert again.store.order(reversed_xid).state is OrderState.AUTHORIZED
        (capture,) = again.store.operations(captured_xid)
        assert capture.state is OperationState.SUCCEEDED and capture.result_amount == 400
        failures = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert any(reversal.rrpid.hex()[:8] in m and "SIGNATURE" in m for m in failures)
    finally:
        again.close()
