"""``setpay merchant orders new``: terms typed wrong are refused saying what is wrong,
before the merchant's database is opened, and a card number typed into a number's place
is never repeated (``cli.order_options``, ``clients.merchant.offers``)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cli import main
from clients.merchant.config import load, write_config
from clients.merchant.store import MerchantStore
from clients.peers import PeerConfig
from tests.cards import card

USAGE = 2
PAN = card("411111", 16)


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    """A merchant directory: enough configuration to record offers (no bank needed)."""
    directory = tmp_path / "shop"
    peer = PeerConfig("127.0.0.1:1", directory / "tls/root.pem")
    write_config(directory, merchant_id="shop", name="Shop", gateway=peer, ca=peer)
    return directory


def _files(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in directory.rglob("*") if p.is_file()
    }


def _orders(shop: Path) -> int:
    store = MerchantStore(load(shop).store)
    try:
        return len(list(store.orders(50)))
    finally:
        store.close()


def _new(shop: Path, *terms: str) -> int:
    return main.main(["merchant", "--dir", str(shop), "orders", "new", *terms])


@pytest.mark.parametrize(
    ("terms", "says"),
    [
        (["--amount", "5", "--exp10", PAN], "amount 5 in currency 978 (exponent of 16 characters)"),
    ],
)
def test_a_card_number_given_as_a_number_is_not_repeated(
    shop: Path, capsys: pytest.CaptureFixture[str], terms: list[str], says: str
) -> None:
    code = _new(shop, "--description", "a lamp", "--lid-m", "0102", *terms)
    out, err = capsys.readouterr()
    assert (code, out) == (1, "")
    assert err.startswith(f"setpay merchant: {says}")
    assert not re.search(r"\d{13}", err), err
    assert _orders(shop) == 0


@pytest.mark.parametrize(
    ("given", "says"),
    [
        ("zz", "an order's local id is pairs of hex digits, 0-9 and a-f, not 'zz'"),
        ("abc", "an order's local id is pairs of hex digits, 0-9 and a-f, not 'abc'"),
        ("00 11", "an order's local id is pairs of hex digits, 0-9 and a-f, not '00 11'"),
        ("", "an order's local id in hex, not empty"),
        (PAN + "x", "an order's local id is pairs of hex digits, 0-9 and a-f, not the 17"),
    ],
)
def test_a_lid_m_not_in_hex_is_a_usage_error(
    shop: Path, capsys: pytest.CaptureFixture[str], given: str, says: str
) -> None:
    """It was the codec's "non-hexadecimal number found in fromhex() arg" (exit 1), or,
    empty or spaced, an order made under another id than the one typed."""
    before = _files(shop)
    with pytest.raises(SystemExit) as stopped:
        _new(shop, "--description", "a lamp", "--amount", "100", "--lid-m", given)
    out, err = capsys.readouterr()
    assert (stopped.value.code, out) == (USAGE, "")
    assert f"argument --lid-m: {says}" in err
    assert PAN not in err
    assert _files(shop) == before  # no database made, no order recorded


def test_a_description_not_utf8_is_a_usage_error(
    shop: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Bytes not UTF-8 reach the program as surrogates: it was the codec's own error."""
    before = _files(shop)
    with pytest.raises(SystemExit) as stopped:
        _new(shop, "--description", "a l\udcffamp", "--amount", "100", "--lid-m", "0102")
    out, err = capsys.readouterr()
    assert (stopped.value.code, out) == (USAGE, "")
    assert "argument --description: an order description is UTF-8 text" in err
    assert _files(shop) == before


def test_a_lid_m_in_capitals_is_the_same_order(
    shop: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _new(shop, "--description", "a lamp", "--amount", "100", "--lid-m", "0A0B") == 0
    assert '"lid_m": "0a0b"' in capsys.readouterr().out
