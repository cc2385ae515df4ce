"""``setpay merchant reverse`` with an empty ``--capture`` or ``--credit`` (an unset shell
variable): a usage error, never the reversal of the whole authorization (it used to fall
through to ``reverse ORDER`` with keep 0)."""

from __future__ import annotations

import pytest

from tests.clients import conftest as clients_conftest
from tests.clients.bank_support import RunningBank
from tests.clients.cli_support import run_cli
from tests.clients.conftest import MerchantFactory, WalletFactory
from tests.clients.merchant.tampering_support import TamperingGateway, gateway_hold
from tests.clients.test_purchase_flow import buy, offer

# The client tests' bank, merchants and wallets.
bank = clients_conftest.bank
make_merchant = clients_conftest.make_merchant
make_wallet = clients_conftest.make_wallet


def _attempt(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[object, str]:
    """The exit status and stderr, whether argparse or the command ends it."""
    try:
        status, out, err = run_cli(argv, capsys)
    except SystemExit as exited:
        return exited.code, capsys.readouterr().err
    return status, out + err


@pytest.mark.parametrize("flag", ["--capture", "--credit"])
@pytest.mark.parametrize("given", ["", " "])
def test_an_empty_operation_id_reverses_nothing(
    bank: RunningBank,
    make_merchant: MerchantFactory,
    make_wallet: WalletFactory,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    flag: str,
    given: str,
) -> None:
    merchant = make_merchant(f"m-cli-reverse{flag}-{len(given)}")
    record = buy(make_wallet(merchant), offer(merchant, 10_000))
    xid = bytes.fromhex(record.xid)
    base = ["merchant", "--dir", str(merchant.config.base_dir)]
    stored, hold = merchant.store.operations(), gateway_hold(bank, xid)
    gateway = TamperingGateway(monkeypatch, bank)  # records every request sent

    status, said = _attempt([*base, "reverse", record.xid[:12], flag, given], capsys)

    assert status == 2, said
    assert flag in said and "not empty" in said
    assert merchant.store.operations() == stored
    assert not gateway.exchanges
    assert gateway_hold(bank, xid) == hold
    assert hold.pending == 10_000  # the whole authorization still stands


def test_an_operation_id_that_is_not_hexadecimal_is_a_usage_error(
    make_merchant: MerchantFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    merchant = make_merchant("m-cli-reverse-hex")
    argv = ["merchant", "--dir", str(merchant.config.base_dir), "reverse", "--capture", "zz"]
    status, said = _attempt(argv, capsys)
    assert status == 2 and "hexadecimal" in said
