"""The merchant's own failures once a request may have reached the gateway (its key
backend opening the answer, its store saving it) leave the request pending, outcome
unknown: never refused, never failed, since the gateway may have applied it.

The gateway is the real one, and it applies every request here; the failures are the
merchant's own, set off as the gateway's answer arrives: a key backend whose next
decapsulation fails as a pulled token's would, a store whose next write fails as a
failing disk's would.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from clients.errors import StoreError
from clients.merchant.config import AnswerMode
from clients.merchant.records import OperationState, OrderState
from clients.merchant.store import MerchantStore
from hsm.errors import TransientBackendError
from hsm.software import SoftwareBackend
from tests.clients.bank_support import RunningBank
from tests.clients.cli_support import run_cli
from tests.clients.conftest import MerchantFactory, WalletFactory
from tests.clients.merchant.tampering_support import (
    Exchange,
    TamperingGateway,
    gateway_batches,
    gateway_hold,
)
from tests.clients.test_purchase_flow import buy, offer

# What the command says when its own key backend or store failed on the answer.
COULD_NOT = "outcome unknown, will retry (the merchant could not open or save the answer: "


class OwnFailure:
    """One failure of the merchant's own, set off by the next gateway answer it is given
    to (``TamperingGateway.tamper``, the answer left as it is)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
        self.kind = kind
        self._armed = False
        if kind == "key backend":
            decapsulate = SoftwareBackend.decapsulate

            def failing(backend: SoftwareBackend, *args: Any) -> bytes:
                if self._fire():
                    raise TransientBackendError("the token is gone")
                return decapsulate(backend, *args)

            monkeypatch.setattr(SoftwareBackend, "decapsulate", failing)
        else:
            write = MerchantStore._write

            @contextmanager
            def failing_write(store: MerchantStore) -> Iterator[Any]:
                if self._fire():
                    raise StoreError("merchant database write failed: disk I/O error")
                with write(store) as conn:
                    yield conn

            monkeypatch.setattr(MerchantStore, "_write", failing_write)

    def _fire(self) -> bool:
        fire, self._armed = self._armed, False
        return fire

    def on_answer(self, response: Any, exchange: Exchange, _: TamperingGateway) -> None:
        """A ``Tamper`` that tampers with nothing: the merchant's next decapsulation (it
        opens this answer) or write (it saves it) fails."""
        self._armed = True


FAILURES = ["key backend", "store"]


@pytest.mark.parametrize("kind", FAILURES)
def test_a_capture_whose_answer_the_merchant_cannot_open_or_save_exits_4(
    bank: RunningBank,
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    kind: str,
) -> None:
    """The gateway captured; the command says the outcome is unknown (exit 4, not 1: the
    gateway refused nothing), the capture stays sent, and the next resume, sending the
    same bytes, settles it: captured once."""
    gateway = TamperingGateway(monkeypatch, bank)
    failure = OwnFailure(monkeypatch, kind)
    merchant = make_merchant(f"m-own-capture-{kind.replace(' ', '-')}")
    record = buy(make_wallet(merchant), offer(merchant, 1000))
    xid = bytes.fromhex(record.xid)
    gateway.tamper("Capture", failure.on_answer)
    status, out, err = run_cli(
        ["merchant", "--dir", str(merchant.config.base_dir), "capture", record.xid[:8]], capsys
    )
    (sent,) = merchant.store.operations(xid)
    assert (status, out) == (4, "")
    assert err.startswith(f"setpay merchant: capture {sent.rrpid.hex()[:8]} for order ")
    assert COULD_NOT in err
    assert sent.state is OperationState.SENT and sent.unverified == 0
    assert gateway_hold(bank, xid).captured == 1000  # the gateway did capture

    (done,) = merchant.settlement.resume()
    assert (done.rrpid, done.state, done.result_amount) == (
        sent.rrpid, OperationState.SUCCEEDED, 1000,
    )  # fmt: skip
    assert gateway.sent("Capture") == [sent.request] * 2
    assert gateway_hold(bank, xid).transfers["capture"] == 1


@pytest.mark.parametrize("kind", FAILURES)
def test_a_batch_close_whose_answer_the_merchant_cannot_open_or_save_exits_4(
    bank: RunningBank,
    make_merchant: MerchantFactory,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    kind: str,
) -> None:
    """The gateway closed the batch; the command says the outcome is unknown (exit 4),
    and given again it sends the same close and prints the gateway's answer to it."""
    gateway = TamperingGateway(monkeypatch, bank)
    failure = OwnFailure(monkeypatch, kind)
    merchant = make_merchant(f"m-own-batch-{kind.replace(' ', '-')}")
    base = ["merchant", "--dir", str(merchant.config.base_dir), "batch"]
    status, out, _ = run_cli([*base, "open"], capsys)
    assert status == 0
    batch = out.split()[1].rstrip(":")
    close = [*base, "close", "--batch", batch]
    gateway.tamper("BatchAdmin", failure.on_answer)
    status, out, err = run_cli(close, capsys)
    (sent,) = merchant.store.batch_requests(OperationState.SENT)
    assert (status, out) == (4, "")
    assert err.startswith(f"setpay merchant: batch close {sent.rrpid.hex()[:8]} of batch {batch}")
    assert COULD_NOT in err
    assert gateway_batches(bank, merchant.config.merchant_id)[batch] == "closed"

    status, out, err = run_cli(close, capsys)
    assert (status, err) == (0, "")
    assert out.startswith(f"batch {batch}: SUCCESS closed;")
    assert gateway.sent("BatchAdmin")[-2:] == [sent.request] * 2


@pytest.mark.parametrize("kind", FAILURES)
def test_an_authorization_whose_answer_the_merchant_cannot_open_or_save_stays_authorizing(
    bank: RunningBank,
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
) -> None:
    """The gateway authorized (a hold is on the card): the order stays authorizing, not
    failed nor an error to whoever asked, and the same AuthReq, sent again, authorizes
    it: one hold."""
    gateway = TamperingGateway(monkeypatch, bank)
    failure = OwnFailure(monkeypatch, kind)
    merchant = make_merchant(f"m-own-auth-{kind.replace(' ', '-')}", AnswerMode.ORDER_RECEIVED)
    merchant.authorizer.stop(timeout=10)  # the order is authorized here, by the test
    record = buy(make_wallet(merchant), offer(merchant, 800))
    xid = bytes.fromhex(record.xid)
    assert merchant.store.order(xid).state is OrderState.PURCHASED
    gateway.tamper("Authorize", failure.on_answer)

    pending = merchant.authorizer.authorize(xid)
    assert pending.state is OrderState.AUTHORIZING and pending.error_code == 0
    assert merchant.store.order(xid).state is OrderState.AUTHORIZING
    assert gateway_hold(bank, xid).amount == 800  # the gateway did authorize

    done = merchant.authorizer.authorize(xid)
    assert done.state is OrderState.AUTHORIZED and done.auth_rrpid == pending.auth_rrpid
    assert gateway.sent("Authorize") == [pending.auth_request] * 2
    hold = gateway_hold(bank, xid)
    assert (hold.amount, hold.transfers) == (800, {"authorization": 1})
