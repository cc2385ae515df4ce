"""``setpay merchant batch close`` given again sends the close stored and waiting, with the
page of transactions the first command asked for: the next page it points to is of that
size, never of the ``--details`` the second command gave or left out (it printed
``--details None``, a command line that does not parse)."""

from __future__ import annotations

import re

import pytest

from clients.errors import TransportError
from clients.merchant import gateway_client
from clients.merchant.records import OperationState
from tests.clients import conftest as clients_conftest
from tests.clients.cli_support import run_cli
from tests.clients.conftest import MerchantFactory, WalletFactory
from tests.clients.test_purchase_flow import buy, offer

# The client tests' bank, merchants and wallets.
bank = clients_conftest.bank
make_merchant = clients_conftest.make_merchant
make_wallet = clients_conftest.make_wallet

_MORE = re.compile(r"more after (\d+): batch query --batch (\S+) --details (\S+) --start (\d+)$")


@pytest.mark.parametrize("again", [[], ["--details", "3"]], ids=["no-details", "other-details"])
def test_a_close_given_again_points_to_the_next_page_of_the_page_it_sent(
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    again: list[str],
) -> None:
    merchant = make_merchant(f"m-cli-resent-page-{len(again)}")
    wallet = make_wallet(merchant)
    for amount in (100, 200, 300, 400):
        merchant.settlement.capture(bytes.fromhex(buy(wallet, offer(merchant, amount)).xid))
    batch = merchant.store.operations()[0].batch_id
    base = ["merchant", "--dir", str(merchant.config.base_dir), "batch"]

    def unreachable(*_: object) -> object:
        raise TransportError("gateway BatchAdmin", "UNAVAILABLE")

    with monkeypatch.context() as down:
        down.setattr(gateway_client.GatewayClient, "batch_admin", unreachable)
        status, _, err = run_cli([*base, "close", "--batch", batch, "--details", "1"], capsys)
    assert status == 4 and "outcome unknown" in err
    (waiting,) = merchant.store.batch_requests(OperationState.SENT)
    assert waiting.maximum_items == 1

    status, out, err = run_cli([*base, "close", "--batch", batch, *again], capsys)
    assert (status, err) == (0, "")
    (more,) = [m for line in out.splitlines() if (m := _MORE.search(line))]
    assert more.groups() == ("1", batch, "1", "1")  # the page the stored close asked for
    printed = out.split("more after 1: ", 1)[1].splitlines()[0].split()
    status, out, _ = run_cli([*base[:-1], *printed], capsys)  # it parses, and pages on
    assert status == 0
    assert re.search(r"more after 2: batch query --batch \S+ --details 1 --start 2$", out, re.M)
