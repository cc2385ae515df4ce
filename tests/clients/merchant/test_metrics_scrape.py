"""The merchant's metrics on a live page: ``setpay merchant serve --metrics-port any`` (a
real process) after real purchases against the served bank, checked by promtool and
against what was sent; and the requests waiting while the gateway is down, until they
are answered."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from clients.errors import OutcomeUnknown
from clients.merchant.config import CONFIG_FILE, AnswerMode
from clients.merchant.config import load as load_merchant_config
from clients.merchant.records import Money, OrderState
from clients.merchant.runtime import Merchant
from clients.merchant.store import MerchantStore
from clients.wallet.purchases import Initiation
from setcore.errors import PeerError
from tests.clients.bank_support import (
    EUR,
    WALLET_PASSPHRASE,
    RunningBank,
    configure_merchant,
    new_wallet,
    register_merchant,
)
from tests.clients.conftest import WalletFactory
from tests.clients.merchant.metrics_support import check_page, samples_of, scrape_text, value
from tests.clients.merchant.outage_support import GatewayOutage
from tests.clients.merchant.test_merchant_cli import RUNNER, START_SECONDS, STOP_SECONDS
from tests.clients.test_purchase_flow import buy, offer

CALLS = "setpay_merchant_gateway_calls_total"
WAITING = "setpay_merchant_requests_waiting"
# Amounts the wallet's card (a limit of ``bank_support.CREDIT_LIMIT``) is approved for,
# and one past its limit: declined.
APPROVED_AMOUNTS = (1200, 3300, 450)
DECLINED_AMOUNT = 500_000


@pytest.fixture
def serving(bank: RunningBank, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], int, int]]:
    """``setpay merchant serve --metrics-port any`` on a registered merchant with offers;
    (the process, its Merchant service port, its metrics port)."""
    directory = tmp_path / "m-metrics"
    configure_merchant(bank, directory, "m-metrics")
    register_merchant(directory)
    store = MerchantStore(directory / "merchant.db")
    try:
        for n, amount in enumerate((*APPROVED_AMOUNTS, DECLINED_AMOUNT)):
            store.add_offer(f"lid-{n}".encode(), b"a lamp", Money(EUR, amount), "setpay")
    finally:
        store.close()
    process = subprocess.Popen(
        [sys.executable, "-c", RUNNER, "merchant", "--dir", str(directory), "serve",
         "--metrics-port", "any"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ),
    )  # fmt: skip
    try:
        assert process.stdout is not None
        serving_line, metrics_line = (*_first_lines(process.stdout.fileno(), 2), "", "")[:2]
        assert "serving on port" in serving_line, process.stderr.read() if process.stderr else ""
        assert "metrics on port" in metrics_line, metrics_line
        yield process, int(serving_line.split()[-1]), int(metrics_line.split()[-1])
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _first_lines(fd: int, count: int) -> list[str]:
    """The first ``count`` lines written to ``fd`` within START_SECONDS (fewer if not):
    read from the descriptor itself, since a buffered reader would keep the second line
    where ``select`` cannot see it."""
    give_up = time.monotonic() + START_SECONDS
    data = b""
    while data.count(b"\n") < count:
        ready, _, _ = select.select([fd], [], [], max(0.0, give_up - time.monotonic()))
        chunk = os.read(fd, 4096) if ready else b""
        if not chunk:
            break
        data += chunk
    return data.decode().splitlines()[:count]


def test_live_scrape_of_a_serving_merchant_passes_promtool_and_counts_what_was_sent(
    bank: RunningBank, tmp_path: Path, serving: tuple[subprocess.Popen[str], int, int]
) -> None:
    process, port, metrics_port = serving
    wallet = new_wallet(bank, tmp_path / "wallet", f"127.0.0.1:{port}")
    try:
        shopper = wallet.shopper(WALLET_PASSPHRASE)
        merchant = wallet.config.require_merchant()
        amounts = (*APPROVED_AMOUNTS, DECLINED_AMOUNT)
        records = [
            shopper.purchase(merchant, Initiation(f"lid-{n}".encode(), b"a lamp", EUR, amount))
            for n, amount in enumerate(amounts)
        ]
        inquired = shopper.inquire(merchant, records[0].xid[:8])
        with pytest.raises(PeerError) as refused:  # an order the merchant never offered
            shopper.purchase(merchant, Initiation(b"no-such-lid", b"a lamp", EUR, 100))
        assert refused.value.code_name == "ERROR_CODE_UNKNOWN_LID"
    finally:
        wallet.close()
    codes = [r.auth_code for r in records]
    assert codes == ["AUTH_CODE_APPROVED"] * len(APPROVED_AMOUNTS) + ["AUTH_CODE_DECLINED"]
    assert inquired.completion == "COMPLETION_CODE_AUTHORIZATION_PERFORMED"

    text = scrape_text(metrics_port)
    samples = samples_of(text)

    def v(name: str, **labels: str) -> float:
        return value(samples, name, **labels)

    purchases = len(amounts)
    for method, count in (("PInit", purchases + 1), ("Purchase", purchases), ("Inquiry", 1)):
        assert v("setpay_merchant_rpc_requests_total", method=method) == count, method
        assert v("setpay_merchant_rpc_duration_seconds_count", method=method) == count, method
        assert v("setpay_merchant_rpc_in_flight", method=method) == 0
    errors = [(dict(labels), n) for (name, labels), n in samples.items()
              if name == "setpay_merchant_rpc_errors_total"]  # fmt: skip
    assert errors == [({"method": "PInit", "code": "ERROR_CODE_UNKNOWN_LID"}, 1)]
    # One authorization per purchase, by the gateway's answer; the declined one's PRes
    # reports the authorization performed too (its AuthCode says declined).
    assert v(CALLS, kind="authorization", result="approved") == len(APPROVED_AMOUNTS)
    assert v(CALLS, kind="authorization", result="declined") == 1
    assert v("setpay_merchant_gateway_call_duration_seconds_count", kind="authorization") == (
        purchases
    )
    assert v(CALLS, kind="gateway-certificates", result="approved") >= 1  # at the start
    completions = "setpay_merchant_purchases_total"
    assert v(completions, completion="COMPLETION_CODE_AUTHORIZATION_PERFORMED") == purchases
    assert v(WAITING, kind="authorization") == 0
    check_page(text)
    print(f"\n$ promtool check metrics < merchant scrape  ({len(text.splitlines())} lines): OK")

    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=STOP_SECONDS) == 0


def _with_metrics(directory: Path) -> None:
    """merchant.toml serves metrics on a port the OS picks."""
    config = directory / CONFIG_FILE
    text = config.read_text()
    assert "[server]\n" in text
    config.write_text(text.replace("[server]\n", '[server]\nmetrics_port = "any"\n', 1))


def test_a_request_stored_while_the_gateway_is_down_waits_on_the_page_until_answered(
    bank: RunningBank, tmp_path: Path, make_wallet: WalletFactory
) -> None:
    outage = GatewayOutage(bank)
    directory = tmp_path / "m-metrics-outage"
    configure_merchant(
        bank, directory, "m-metrics-outage", AnswerMode.AFTER_AUTHORIZATION, outage.target
    )
    _with_metrics(directory)
    register_merchant(directory)
    merchant = Merchant.open(load_merchant_config(directory))
    try:
        merchant.serve()
        assert merchant.metrics_port
        wallet = make_wallet(merchant)
        xid = bytes.fromhex(buy(wallet, offer(merchant, 1000)).xid)
        outage.stop()
        # Both stored, then sent to no gateway: outcome unknown, waiting.
        held = buy(wallet, offer(merchant, 700))
        assert held.completion == "COMPLETION_CODE_ORDER_RECEIVED"
        with pytest.raises(OutcomeUnknown):
            merchant.settlement.capture(xid, 400)
        samples = samples_of(scrape_text(merchant.metrics_port))
        assert value(samples, WAITING, kind="authorization") == 1
        assert value(samples, WAITING, kind="capture") == 1
        assert value(samples, CALLS, kind="capture", result="UNAVAILABLE") == 1
        assert value(samples, CALLS, kind="authorization", result="UNAVAILABLE") >= 1
        assert value(samples, "setpay_merchant_purchases_total",
                     completion="COMPLETION_CODE_ORDER_RECEIVED") == 1  # fmt: skip

        outage.end(merchant)
        merchant.settlement.resume()
        merchant.authorizer.resume()
        assert merchant.store.order(bytes.fromhex(held.xid)).state is OrderState.AUTHORIZED
        text = scrape_text(merchant.metrics_port)
        samples = samples_of(text)
        assert value(samples, WAITING, kind="authorization") == 0
        assert value(samples, WAITING, kind="capture") == 0
        assert value(samples, CALLS, kind="capture", result="approved") == 1
        check_page(text)
    finally:
        merchant.close()
        outage.release()
