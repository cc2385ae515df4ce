"""``setpay merchant batch``: a page size the gateway serves, refused on the command line
otherwise; a batch listed page by page; and its totals reconciled with the merchant's
own operations, against the real gateway."""

from __future__ import annotations

import re
import sqlite3

import pytest

from clients.merchant.records import OperationKind
from setcore.gateway_admin import MAX_TRANSACTION_DETAILS
from tests.clients import conftest as clients_conftest
from tests.clients.bank_support import RunningBank
from tests.clients.cli_support import run_cli
from tests.clients.conftest import MerchantFactory, WalletFactory
from tests.clients.merchant.tampering_support import gateway_batches
from tests.clients.test_purchase_flow import buy, offer

# The client tests' bank, merchants and wallets.
bank = clients_conftest.bank
make_merchant = clients_conftest.make_merchant
make_wallet = clients_conftest.make_wallet

# A detail line: sequence number, kind, XID start, amount.
_DETAIL = re.compile(r"^ +(\d+) +([a-z-]+) +([0-9a-f]{8}) +(\d+)$")


def _attempt(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> tuple[int | str | None, str, str]:
    """The exit status, stdout and stderr, whether argparse or the command ends it."""
    try:
        return run_cli(argv, capsys)
    except SystemExit as exited:
        out, err = capsys.readouterr()
        return exited.code, out, err


@pytest.mark.parametrize("operation", ["close", "query"])
def test_a_page_the_gateway_would_refuse_is_a_usage_error(
    bank: RunningBank,
    make_merchant: MerchantFactory,
    capsys: pytest.CaptureFixture[str],
    operation: str,
) -> None:
    """Nothing stored, nothing sent: the batch stays open (a close with 501 used to be
    stored and closed nothing, then printed the gateway's DECODING_FAILURE)."""
    merchant = make_merchant(f"m-cli-details-{operation}")
    base = ["merchant", "--dir", str(merchant.config.base_dir), "batch"]
    status, out, _ = run_cli([*base, "open"], capsys)
    assert status == 0
    batch = out.split()[1].rstrip(":")
    stored = merchant.store.batch_requests()
    too_many = str(MAX_TRANSACTION_DETAILS + 1)
    for details in (too_many, "0", "-1", "ten"):
        argv = [*base, operation, "--batch", batch, "--details", details]
        code, _, err = _attempt(argv, capsys)
        assert code == 2, (details, err)
        assert "--details" in err and f"1 to {MAX_TRANSACTION_DETAILS}" in err
    code, _, err = _attempt([*base, operation, "--batch", batch, "--start", "3"], capsys)
    assert code == 2 and "--details" in err
    code, _, err = _attempt(
        [*base, operation, "--batch", batch, "--details", "5", "--start", "-1"], capsys
    )
    assert code == 2 and "--start" in err
    assert merchant.store.batch_requests() == stored
    assert gateway_batches(bank, merchant.config.merchant_id) == {batch: "open"}


def test_a_batch_is_listed_page_by_page_and_agrees(
    make_merchant: MerchantFactory, make_wallet: WalletFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    merchant = make_merchant("m-cli-pages")
    record = buy(make_wallet(merchant), offer(merchant, 10_000))
    base = ["merchant", "--dir", str(merchant.config.base_dir)]
    for argv in (
        ["capture", record.xid[:12], "--amount", "3000"],
        ["capture", record.xid[:12], "--amount", "2000"],
        ["capture", record.xid[:12]],
        ["refund", record.xid[:12], "--amount", "2500"],
    ):
        assert run_cli([*base, *argv], capsys)[0] == 0
    (batch,) = {op.batch_id for op in merchant.store.operations()}

    query = [*base, "batch", "query", "--batch", batch, "--details", "3"]
    status, out, err = run_cli(query, capsys)
    assert (status, err) == (0, ""), out
    first = [m.groups() for line in out.splitlines() if (m := _DETAIL.match(line))]
    assert [kind for _, kind, _, _ in first] == ["capture"] * 3
    last = first[-1][0]
    assert f"more after {last}:" in out and f"--start {last}" in out
    assert f"batch {batch}: agrees with the merchant's operations" in out

    status, out, _ = run_cli([*query, "--start", last], capsys)
    assert status == 0
    rest = [m.groups() for line in out.splitlines() if (m := _DETAIL.match(line))]
    assert [(kind, amount) for _, kind, _, amount in rest] == [("credit", "2500")]
    assert int(rest[0][0]) > int(last)
    assert "more after" not in out

    status, out, _ = run_cli([*base, "batch", "close", "--batch", batch], capsys)
    assert status == 0 and f"batch {batch}: SUCCESS closed" in out
    assert "agrees with the merchant's operations" in out


def test_a_batch_that_differs_from_the_merchants_books_says_how_and_exits_5(
    bank: RunningBank,
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    capsys: pytest.CaptureFixture[str],
) -> None:
    merchant = make_merchant("m-cli-differs")
    record = buy(make_wallet(merchant), offer(merchant, 10_000))
    base = ["merchant", "--dir", str(merchant.config.base_dir)]
    assert run_cli([*base, "capture", record.xid[:12], "--amount", "4000"], capsys)[0] == 0
    assert run_cli([*base, "refund", record.xid[:12], "--amount", "1000"], capsys)[0] == 0
    (capture,) = [o for o in merchant.store.operations() if o.kind is OperationKind.CAPTURE]
    # The merchant's books say one cent more was captured than the gateway filed.
    with sqlite3.connect(merchant.config.store) as conn:
        conn.execute(
            "UPDATE operations SET result_amount = result_amount + 1 WHERE rrpid = ?",
            (capture.rrpid,),
        )

    status, out, err = run_cli([*base, "batch", "query", "--batch", capture.batch_id], capsys)
    assert (status, err) == (5, ""), out
    assert f"batch {capture.batch_id}: differs from the merchant's operations" in out
    assert "  capture: gateway 4000 in 1, merchant 4001 in 1" in out.splitlines()
    assert "credit:" not in out  # the refund agrees: only the difference is said
    assert f"batch {capture.batch_id} is open: these are the gateway's figures when" in out

    status, out, _ = run_cli([*base, "batch", "close", "--batch", capture.batch_id], capsys)
    assert status == 5 and "closed;" in out  # closed all the same: the figures stand
    assert "is open:" not in out
    assert "  capture: gateway 4000 in 1, merchant 4001 in 1" in out.splitlines()
    assert gateway_batches(bank, merchant.config.merchant_id)[capture.batch_id] == "closed"
