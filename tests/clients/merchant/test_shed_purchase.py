"""A PReq the merchant shed unread at every attempt: the wallet says what the merchant
said (too busy to read it: a status it did not sign, so the request may have been read all
the same), keeps the purchase's record as SHED, refuses to buy the same order again until
an inquiry has settled it, and the merchant's signed UNKNOWN_XID to that inquiry does:
the record says NOT_BOUGHT and the order is bought once the merchant has room.

Real merchant, wallets and bank; the merchant takes one call at a time (one thread, a
limit of one), and its gateway holds Authorize until the test lets it go, so that a
purchase waiting on it keeps the merchant full while another wallet's PReq arrives.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from cli.purchase_lines import record_line
from clients.errors import PurchaseNotRead, PurchaseOutcomeUnknown, ShedUnsettled
from clients.merchant.gateway_client import AUTHORIZE_DEADLINE_SECONDS
from clients.merchant.runtime import Merchant
from clients.merchant.servicer import ANSWER_MARGIN_SECONDS
from clients.transport import RetryPolicy
from clients.wallet import purchases
from clients.wallet.merchant_answers import NOT_BOUGHT, SHED
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


def test_a_purchase_request_shed_unread_is_kept_until_an_inquiry_settles_it(
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
    shed = outcome["second"]
    # An outcome unknown (exit status 4), whose record says SHED.
    assert isinstance(shed, PurchaseNotRead) and isinstance(shed, PurchaseOutcomeUnknown), shed
    book = PurchaseBook(second.config.purchases_file)
    # Kept, not removed on the merchant's unsigned word; the user is told to ask first.
    [kept] = book.all()
    assert kept.completion == SHED
    assert shed.short_id == book.short_id(kept.xid)
    told = str(shed)
    assert "too busy" in told and "may have read" in told and "nothing was bought" not in told
    assert f"`setpay wallet inquire {shed.short_id}` before buying again" in told
    assert record_line(kept).startswith(f"{kept.short_id}  SHED  amount 100 (978): ")
    # The same order again, before any inquiry: refused, nothing sent, nothing recorded.
    with pytest.raises(ShedUnsettled) as unsettled:
        buy(second, wanted)
    assert unsettled.value.short_id == shed.short_id
    assert book.all() == [kept]
    # The merchant, which never read it, says so under its signature: nothing was bought.
    asked = second.shopper(WALLET_PASSPHRASE, inquiring=shed.short_id).inquire(
        second.config.require_merchant(), shed.short_id
    )
    assert (asked.completion, asked.refusal) == (NOT_BOUGHT, "ERROR_CODE_UNKNOWN_XID")
    assert asked.signed_error  # the merchant's signed statement, kept
    assert book.all() == [asked]
    assert " NOT_BOUGHT  UNKNOWN_XID  amount 100 " in record_line(asked)
    # Now the same order is bought, under the new XID the merchant's PInit offers.
    record = buy(second, wanted)
    assert record.completion == purchase_pb2.CompletionCode.Name(
        purchase_pb2.COMPLETION_CODE_AUTHORIZATION_PERFORMED
    )
    assert [r.xid for r in book.all()] == [kept.xid, record.xid]


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
