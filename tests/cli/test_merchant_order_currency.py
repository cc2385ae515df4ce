"""``setpay merchant orders new`` makes its order in merchant.toml's ``merchant.currency``
unless ``--currency`` names another, as the bank's ``open-account`` and ``open-merchant``
take its ``[ledger] settlement_currency``: an order in euros at a merchant whose settlement
account is in dollars was declined CURRENCY_MISMATCH at every authorization, for good."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clients.errors import ConfigError
from clients.merchant.config import CONFIG_FILE, load, write_config
from clients.merchant.store import MerchantStore
from clients.peers import PeerConfig
from tests.clients.cli_support import run_cli

USD, JPY = 840, 392


def _shop(tmp_path: Path, currency: int | str | None) -> Path:
    """A merchant directory (no bank needed) whose merchant.toml says ``currency = ...``
    under ``[merchant]``, or nothing of a currency (None)."""
    directory = tmp_path / "shop"
    peer = PeerConfig("127.0.0.1:1", directory / "tls/root.pem")
    path = write_config(directory, merchant_id="shop", name="Shop", gateway=peer, ca=peer)
    if currency is not None:
        text = path.read_text().replace("[merchant]\n", f"[merchant]\ncurrency = {currency}\n")
        path.write_text(text)
    return directory


def _new(shop: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> dict[str, object]:
    code, out, err = run_cli(
        ["merchant", "--dir", str(shop), "orders", "new", "--description", "a lamp",
         "--amount", "1250", *extra],
        capsys,
    )  # fmt: skip
    assert (code, err) == (0, ""), err
    initiation: dict[str, object] = json.loads(out)
    return initiation


def _stored_currency(shop: Path, lid_m: str) -> tuple[int, int]:
    store = MerchantStore(load(shop).store)
    try:
        amount = store.offer(bytes.fromhex(lid_m)).amount
    finally:
        store.close()
    return amount.currency, amount.exp10


@pytest.mark.parametrize(("currency", "exp10"), [(USD, 2), (JPY, 0)])
def test_an_order_is_made_in_the_configured_currency_and_its_minor_unit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], currency: int, exp10: int
) -> None:
    shop = _shop(tmp_path, currency)
    initiation = _new(shop, capsys)
    assert (initiation["currency"], initiation["exp10"]) == (currency, exp10)
    assert _stored_currency(shop, str(initiation["lid_m"])) == (currency, exp10)


def test_currency_given_on_the_command_line_wins(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shop = _shop(tmp_path, USD)
    initiation = _new(shop, capsys, "--currency", "978")
    assert initiation["currency"] == 978
    assert _stored_currency(shop, str(initiation["lid_m"])) == (978, 2)


def test_without_the_key_orders_are_in_euros(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shop = _shop(tmp_path, None)
    assert "currency" not in (shop / CONFIG_FILE).read_text()
    assert _new(shop, capsys)["currency"] == 978


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("999", "currency 999"),  # assigned to no currency with a minor unit
        ("5", "not assigned in ISO 4217"),
        ("1000", "currency must be an ISO 4217 number"),
        ('"840"', "merchant.currency must be int, not str"),
        ("true", "merchant.currency must be int, not bool"),
    ],
)
def test_a_currency_no_account_is_kept_in_is_refused_at_load(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str, says: str
) -> None:
    shop = _shop(tmp_path, value)
    with pytest.raises(ConfigError, match=says):
        load(shop)
    code, out, err = run_cli(
        ["merchant", "--dir", str(shop), "orders", "new", "--description", "a lamp",
         "--amount", "1250", "--lid-m", "0102"],
        capsys,
    )  # fmt: skip
    assert (code, out) == (1, "")
    assert says in err and "Traceback" not in err
    assert not (shop / "merchant.db").exists()


def test_write_config_writes_the_currency_it_is_given(tmp_path: Path) -> None:
    """``write_config``'s ``currency`` is read back as ``merchant.currency``."""
    peer = PeerConfig("127.0.0.1:1", tmp_path / "tls/root.pem")
    write_config(tmp_path, merchant_id="shop", name="Shop", gateway=peer, ca=peer, currency=USD)
    assert load(tmp_path).currency == USD
