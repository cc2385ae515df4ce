"""A PReq the merchant shed unread at every attempt bought nothing: the wallet says so
(exit 1, not "outcome unknown"), keeps no record of it, and the same order can be bought
again once the merchant has room.

Real merchant, wallets and bank; the merchant takes one call at a time (one thread, a
limit of one), and its gateway holds Authorize until the test lets it go, so that a
purchase waiting on it keeps the merchant full while another wallet's PReq arrives.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from clients.errors import ClientError, PurchaseOutcomeUnknown
from clients.merchant.gateway_client import AUTHORIZE_DEADLINE_SECONDS
from clients.merchant.runtime import Merchant
from clients.merchant.servicer import ANSWER_MARGIN_SECONDS
from clients.transport import RetryPolicy
from clients.wallet import purchases
from clients.wallet.purchases import PurchaseBook
from clients.wallet.runtime import Wallet
from setcore.admission import SHED_RETRY_SECONDS
from setpay.v1 import purchase_pb2
from tests.clients.bank_support import WALLET_PASSPHRASE, RunningBank, new_wallet
from tests.clients.merchant.outage_support import HeldAuthorize, held_gateway
from tests.clients.test_purchase_flow import buy, offer

# The shed PReq's retries, quick: the merchant stays full for all of them here.
QUICK = RetryPolicy(attempts=4, first_backoff=0.01, max_backoff=0.05)
# Every wait is bounded; a purchase takes a second or so, a loaded CI machine far more.
WAIT_SECONDS = 60.0


def test_a_purchase_request_shed_unread_bought_nothing_and_can_be_bought_again(
    bank: RunningBank, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # raising=False: the test must fail on its assertions, not here, where the policy
    # does not exist.
    monkeypatch.setattr(purchases, "PURCHASE_RETRIES", QUICK, raising=False)
    with held_gateway(bank, tmp_path / "m", "m-shed", threads=1, max_concurrent_rpcs=1) as (
        merchant,
        held,
    ):
        target = f"127.0.0.1:{merchant.port}"
        first, second = (
            new_wallet(bank, tmp_path / "wa", target),
            new_wallet(bank, tmp_path / "wb", target),
        )
        try:
            _run(merchant, held, first, second)
        finally:
            first.close()
            second.close()


def _run(merchant: Merchant, held: HeldAuthorize, first: Wallet, second: Wallet) -> None:
    wanted = offer(merchant, 100)
    paused, go_on = threading.Event(), threading.Event()
    outcome: dict[str, object] = {}

    def hold_before_sending(_: purchase_pb2.PurchaseRequest) -> None:
        paused.set()  # the second wallet's PInit was answered; its PReq is built
        assert go_on.wait(WAIT_SECONDS)

    def buy_second() -> None:
        try:
            outcome["second"] = second.shopper(WALLET_PASSPHRASE).purchase(
                second.config.require_merchant(), wanted, unsafe_rewrite=hold_before_sending
            )
        except Exception as exc:  # examined below
            outcome["second"] = exc

    def buy_first() -> None:
        outcome["first"] = buy(first, offer(merchant, 200))

    threads = [threading.Thread(target=buy_second), threading.Thread(target=buy_first)]
    threads[0].start()
    assert paused.wait(WAIT_SECONDS)
    threads[1].start()
    held.wait_entered(1)  # the first purchase holds the merchant's only place
    go_on.set()
    threads[0].join(WAIT_SECONDS)
    held.release.set()
    threads[1].join(WAIT_SECONDS)
    refused = outcome["second"]
    assert not isinstance(refused, PurchaseOutcomeUnknown), refused
    assert isinstance(refused, ClientError) and "too busy" in str(refused)
    book = PurchaseBook(second.config.purchases_file)
    assert book.all() == []  # not SENT for ever: nothing was sent the merchant read
    # The merchant never read it: the same order is bought again as if new.
    record = buy(second, wanted)
    assert record.completion == purchase_pb2.CompletionCode.Name(
        purchase_pb2.COMPLETION_CODE_AUTHORIZATION_PERFORMED
    )
    assert [r.xid for r in book.all()] == [record.xid]


def test_the_purchase_request_waits_out_a_busy_merchant_and_leaves_the_gateway_its_time() -> None:
    # The transport's default gives up within about a second of shedding; a PReq's retries
    # wait longer, but never into the time the merchant may wait on the gateway.
    policy = purchases.PURCHASE_RETRIES
    longest = sum(
        SHED_RETRY_SECONDS + min(policy.max_backoff, policy.first_backoff * 2 ** (n - 1))
        for n in range(1, policy.attempts)
    )
    assert longest > 5 * RetryPolicy().max_backoff
    # The merchant answers a margin before the wallet's deadline (``ANSWER_MARGIN_SECONDS``):
    # the retries, the gateway's own deadline and that margin must all fit in it.
    assert longest < (
        purchases.PURCHASE_DEADLINE_SECONDS - AUTHORIZE_DEADLINE_SECONDS - ANSWER_MARGIN_SECONDS
    )
