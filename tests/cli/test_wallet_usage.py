"""``setpay wallet``: usage errors exit 2 (as the merchant's and argparse's do), and the
brand root is never silently replaced (pinned on first use: test_root_pin_first_use)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from clients.identity import write_certificates
from clients.peers import PeerConfig
from clients.wallet.config import load, write_config
from tests.cards import VISA
from tests.cli.command_support import USAGE, refused_as_usage
from tests.cli.root_pin_support import brand_root, sha256
from tests.clients.cli_support import run_cli
from tests.clients.wallet.self_signed import self_signed


def _wallet(tmp_path: Path) -> Path:
    """A configured wallet directory; its CA is never called by these tests."""
    directory = tmp_path / "wallet"
    write_config(directory, ca=PeerConfig("127.0.0.1:9", directory / "tls/root.pem"))
    return directory


def _purchase(tmp_path: Path, currency: str) -> list[str]:
    return ["wallet", "--dir", str(_wallet(tmp_path)), "purchase", "--lid-m", "ab",
            "--description", "a lamp", "--amount", "3300", "--currency", currency]  # fmt: skip


def _card(tmp_path: Path) -> Path:
    path = tmp_path / "card.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"pan": VISA, "expiry": "203012"}, handle)
    return path


def test_purchase_without_its_options_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["wallet", "--dir", str(_wallet(tmp_path)), "purchase", "--lid-m", "ab"]
    status, out, err = run_cli(argv, capsys)
    assert (status, out) == (USAGE, "")
    assert err == "setpay wallet: give --initiation FILE, or --lid-m, --description and --amount\n"


def test_a_first_register_without_root_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = _wallet(tmp_path)
    argv = ["wallet", "--dir", str(directory), "register", "--card", str(_card(tmp_path))]
    status, _, err = run_cli(argv, capsys)
    assert status == USAGE
    assert err == f"setpay wallet: no pinned brand root at {load(directory).root}: give --root\n"


@pytest.mark.parametrize("given", ["foo", "name"])
def test_a_form_field_without_a_value_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], given: str
) -> None:
    """Refused before the root is pinned or anything is asked of the CA."""
    directory = _wallet(tmp_path)
    root, _ = brand_root(tmp_path, "brand")
    argv = ["wallet", "--dir", str(directory), "register", "--card", str(_card(tmp_path)),
            "--root", str(root), "--form", "a=1", "--form", given]  # fmt: skip
    status, out, err = run_cli(argv, capsys)
    assert (status, out) == (USAGE, "")
    assert err == f"setpay wallet: --form takes NAME=VALUE, not {given!r}\n"
    assert not load(directory).root.exists()


def test_another_root_than_the_pinned_one_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = _wallet(tmp_path)
    pinned = self_signed("the brand")
    write_certificates(load(directory).root, [pinned])
    before = load(directory).root.read_bytes()
    other, other_der = brand_root(tmp_path, "another")
    argv = ["wallet", "--dir", str(directory), "register", "--card", str(_card(tmp_path)),
            "--root", str(other)]  # fmt: skip
    status, out, err = run_cli(argv, capsys)
    assert (status, out) == (1, "")
    assert f"--root {other} (SHA-256 {sha256(other_der)})" in err
    assert f"pinned at {load(directory).root} (SHA-256 {sha256(pinned)})" in err
    assert load(directory).root.read_bytes() == before


@pytest.mark.parametrize("currency", ["0", "1000", "999", "959"])
def test_a_purchase_in_no_currency_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], currency: str
) -> None:
    """It was refused later, as a failure (exit 1) rather than a mistyped option."""
    err = refused_as_usage(_purchase(tmp_path, currency), capsys)
    assert "argument --currency: not an ISO 4217 numeric currency code with a minor unit" in err


@pytest.mark.parametrize(
    ("currency", "says"),
    [("2", "currency 2 is not assigned"), ("937", "currency 937 (VEF) was withdrawn")],
)
def test_a_purchase_in_a_code_iso_4217_does_not_list_now_names_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], currency: str, says: str
) -> None:
    assert says in refused_as_usage(_purchase(tmp_path, currency), capsys)


@pytest.mark.parametrize("merchant", ["nowhere", "shop:", "shop:70000"])
def test_a_malformed_merchant_option_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], merchant: str
) -> None:
    """It was refused with exit 1 once the passphrase was read and the keys opened."""
    for argv in (
        [*_purchase(tmp_path, "978"), "--merchant", merchant],
        ["wallet", "--dir", str(tmp_path / "wallet"), "inquire", "ab", "--merchant", merchant],
    ):
        err = refused_as_usage(argv, capsys)
        assert f"argument --merchant: must be HOST:PORT, not {merchant!r}" in err


def test_a_merchant_variable_without_its_table_leaves_show_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``show`` never calls a merchant: it goes on to ask for the card's passphrase (absent
    here), where it stopped at load on the missing [merchant] table."""
    directory = _wallet(tmp_path)
    monkeypatch.setenv("SETPAY_WALLET_MERCHANT", "shop.example:8443")
    monkeypatch.delenv("SETPAY_WALLET_PASSPHRASE", raising=False)
    status, out, err = run_cli(["wallet", "--dir", str(directory), "show"], capsys)
    assert (status, out) == (1, "")
    assert "SETPAY_WALLET_PASSPHRASE" in err and "[merchant]" not in err
