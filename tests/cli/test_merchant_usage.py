"""``setpay merchant``: usage errors exit 2 (as the wallet's and argparse's do), and the
brand root is never silently replaced, as the wallet's is (pinned on first use:
test_root_pin_first_use)."""

from __future__ import annotations

from pathlib import Path

import pytest

from clients.identity import write_certificates
from clients.merchant.config import load, write_config
from clients.peers import PeerConfig
from tests.cli.command_support import USAGE, refused_as_usage
from tests.cli.root_pin_support import brand_root, sha256
from tests.clients.cli_support import run_cli
from tests.clients.wallet.self_signed import self_signed


def _merchant(tmp_path: Path) -> Path:
    """A configured merchant directory; its CA and gateway are never called by these tests."""
    directory = tmp_path / "shop"
    peer = PeerConfig("127.0.0.1:9", directory / "tls/root.pem")
    write_config(directory, merchant_id="m-usage", name="Shop", gateway=peer, ca=peer)
    return directory


def _register(directory: Path, *extra: str) -> list[str]:
    return ["merchant", "--dir", str(directory), "register", *extra]


def _new_order(directory: Path, currency: str) -> list[str]:
    return ["merchant", "--dir", str(directory), "orders", "new", "--description", "a lamp",
            "--amount", "3300", "--currency", currency]  # fmt: skip


def test_a_first_register_without_root_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = _merchant(tmp_path)
    status, out, err = run_cli(_register(directory), capsys)
    assert (status, out) == (USAGE, "")
    assert err == f"setpay merchant: no pinned brand root at {load(directory).root}: give --root\n"


@pytest.mark.parametrize("given", ["foo", "name"])
def test_a_form_field_without_a_value_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], given: str
) -> None:
    """Refused before the root is pinned, keys are made or anything is asked of the CA."""
    directory = _merchant(tmp_path)
    root, _ = brand_root(tmp_path, "brand")
    argv = _register(directory, "--root", str(root), "--form", "a=1", "--form", given)
    status, out, err = run_cli(argv, capsys)
    assert (status, out) == (USAGE, "")
    assert err == f"setpay merchant: --form takes NAME=VALUE, not {given!r}\n"
    assert not load(directory).root.exists()
    assert not (directory / "keys").exists()


def test_another_root_than_the_pinned_one_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """It used to be ignored: the merchant went on trusting the pinned root, unsaid."""
    directory = _merchant(tmp_path)
    pinned = self_signed("the brand")
    write_certificates(load(directory).root, [pinned])
    before = load(directory).root.read_bytes()
    other, other_der = brand_root(tmp_path, "another")
    status, out, err = run_cli(_register(directory, "--root", str(other)), capsys)
    assert (status, out) == (1, "")
    assert f"--root {other} (SHA-256 {sha256(other_der)})" in err
    assert f"pinned at {load(directory).root} (SHA-256 {sha256(pinned)})" in err
    assert err.endswith("the merchant trusts only the pinned root\n")
    assert load(directory).root.read_bytes() == before
    assert not (directory / "keys").exists()


@pytest.mark.parametrize("currency", ["0", "1000", "999", "959", "-1", "EUR"])
def test_an_order_in_no_currency_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], currency: str
) -> None:
    """Refused before the merchant's database is opened (it was refused after, exit 1): no
    offer a wallet could not pay."""
    directory = _merchant(tmp_path)
    err = refused_as_usage(_new_order(directory, currency), capsys)
    assert "argument --currency: not an ISO 4217 numeric currency code with a minor unit" in err
    assert not (directory / "merchant.db").exists()


@pytest.mark.parametrize(
    ("currency", "says"),
    [("1", "currency 1 is not assigned"), ("694", "currency 694 (SLL) was withdrawn")],
)
def test_an_order_in_a_code_iso_4217_does_not_list_now_names_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], currency: str, says: str
) -> None:
    """The old code wrote the offer (code 1 as two-digit money)."""
    directory = _merchant(tmp_path)
    assert says in refused_as_usage(_new_order(directory, currency), capsys)
    assert not (directory / "merchant.db").exists()
