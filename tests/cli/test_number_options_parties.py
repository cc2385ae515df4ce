"""The merchant's and the wallet's numbers are ASCII digits too (``cli.number_options``):
a sign, an underscore, a space or another script's digits, which ``int`` took silently,
is a usage error (exit 2) naming the option and the text, before anything is stored or
sent; and a number in an initiation file is read the same way."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clients.merchant.config import write_config
from clients.peers import PeerConfig
from tests.cards import card
from tests.cli.command_support import refused_as_usage
from tests.clients import conftest as clients_conftest
from tests.clients.bank_support import RunningBank
from tests.clients.cli_support import run_cli
from tests.clients.conftest import MerchantFactory
from tests.clients.merchant.tampering_support import gateway_batches

# The client tests' bank and merchants.
bank = clients_conftest.bank
make_merchant = clients_conftest.make_merchant

# Five typed as int() took it: a sign, an underscore, fullwidth, a space, Arabic-Indic.
FIVES = ["+5", "5_000", "\uff15", " 5", "\u0665"]


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    """A merchant directory whose gateway and CA are never called by these tests."""
    directory = tmp_path / "shop"
    peer = PeerConfig("127.0.0.1:9", directory / "tls/root.pem")
    write_config(directory, merchant_id="m-numbers", name="Shop", gateway=peer, ca=peer)
    return directory


def test_a_batch_page_not_in_digits_sends_nothing(
    bank: RunningBank, make_merchant: MerchantFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """The old code read each as a page of 5 (or 5000, refused after a close was sent)
    and closed the batch."""
    merchant = make_merchant("m-cli-number-pages")
    base = ["merchant", "--dir", str(merchant.config.base_dir), "batch"]
    status, out, _ = run_cli([*base, "open"], capsys)
    assert status == 0
    batch = out.split()[1].rstrip(":")
    stored = merchant.store.batch_requests()
    for option, given in [*(("--details", five) for five in FIVES), ("--start", "+0")]:
        details = [] if option == "--details" else ["--details", "5"]
        argv = [*base, "close", "--batch", batch, *details, option, given]
        err = refused_as_usage(argv, capsys)
        assert f"argument {option}: must be a whole number from " in err
        assert f"in digits 0-9, not {given!r}" in err
    assert merchant.store.batch_requests() == stored
    assert gateway_batches(bank, merchant.config.merchant_id) == {batch: "open"}


def test_a_card_number_given_as_a_page_is_not_repeated(
    shop: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pan = card("499999", 42)
    argv = ["merchant", "--dir", str(shop), "batch", "query", "--batch", "b", "--details", pan]
    err = refused_as_usage(argv, capsys)
    assert "the 16 characters given (not repeated)" in err and pan[6:] not in err


@pytest.mark.parametrize("given", FIVES)
@pytest.mark.parametrize(
    "command",
    [
        ["orders", "new", "--description", "a lamp", "--amount"],
        ["orders", "new", "--description", "a lamp", "--amount", "100", "--exp10"],
        ["orders", "new", "--description", "a lamp", "--amount", "100", "--currency"],
        ["orders", "list", "--limit"],
        ["capture", "0a0b", "--amount"],
        ["refund", "0a0b", "--amount"],
        ["reverse", "0a0b", "--keep"],
    ],
    ids=["new-amount", "new-exp10", "new-currency", "list-limit", "capture", "refund", "keep"],
)
def test_a_merchant_number_not_in_digits_is_a_usage_error(
    shop: Path, capsys: pytest.CaptureFixture[str], command: list[str], given: str
) -> None:
    """Refused before the merchant's database is opened: the old code recorded the
    offer, or went on to open the merchant and its gateway."""
    err = refused_as_usage(["merchant", "--dir", str(shop), *command, given], capsys)
    assert f"argument {command[-1]}: " in err and repr(given) in err
    assert not (shop / "merchant.db").exists()


@pytest.mark.parametrize("given", ["+a1", " a1", "a_1", "\uff11"])
def test_an_operation_id_not_in_ascii_hex_is_a_usage_error(
    shop: Path, capsys: pytest.CaptureFixture[str], given: str
) -> None:
    err = refused_as_usage(["merchant", "--dir", str(shop), "reverse", "--capture", given], capsys)
    assert f"argument --capture: an operation id is hexadecimal, 0-9 and a-f, not {given!r}" in err
    assert not (shop / "merchant.db").exists()


@pytest.mark.parametrize("given", FIVES)
@pytest.mark.parametrize("option", ["--amount", "--exp10", "--currency"])
def test_a_wallet_number_not_in_digits_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str, given: str
) -> None:
    """Refused before the wallet is opened or anything is sent (the old code went on)."""
    wallet = tmp_path / "wallet"
    argv = ["wallet", "--dir", str(wallet), "purchase", "--lid-m", "0a", "--description", "d",
            "--amount", "100", option, given]  # fmt: skip
    err = refused_as_usage(argv, capsys)
    assert f"argument {option}: " in err and repr(given) in err
    assert not wallet.exists()


@pytest.mark.parametrize("given", FIVES)
@pytest.mark.parametrize("field", ["amount", "currency", "exp10"])
def test_a_number_in_an_initiation_file_not_in_digits_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], field: str, given: str
) -> None:
    """Refused while the file is read, before any wallet file or passphrase is touched."""
    document = {"lid_m": "0a", "description": "d", "currency": 978, "amount": 100} | {field: given}
    path = tmp_path / "initiation.json"
    path.write_text(json.dumps(document))
    wallet = tmp_path / "wallet"
    argv = ["wallet", "--dir", str(wallet), "purchase", "--initiation", str(path)]
    status, out, err = run_cli(argv, capsys)
    assert (status, out) == (1, "")
    assert err == f"setpay wallet: {path}: {field} is not an integer\n"
    assert not wallet.exists()
