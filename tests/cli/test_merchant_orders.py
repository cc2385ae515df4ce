"""``setpay merchant orders new`` refuses, up front, offers no purchase can complete."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from cli.number_options import MAX_AMOUNT
from clients.errors import UnknownOrder
from clients.merchant.config import load, write_config
from clients.merchant.store import MerchantStore
from clients.peers import PeerConfig
from setcore.freshness import MAX_LID_BYTES
from setcore.purchase import MAX_ORDER_DESCRIPTION_BYTES
from tests.cli.command_support import refused_as_usage
from tests.clients.cli_support import run_cli


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    """A merchant directory: enough configuration to record offers (no bank needed)."""
    directory = tmp_path / "shop"
    peer = PeerConfig("127.0.0.1:1", directory / "tls/root.pem")
    write_config(directory, merchant_id="shop", name="Shop", gateway=peer, ca=peer)
    return directory


def _new(shop: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str, str]:
    return run_cli(["merchant", "--dir", str(shop), "orders", "new", *extra], capsys)


def _recorded(shop: Path, lid_m: str) -> bool:
    store = MerchantStore(load(shop).store)
    try:
        store.offer(bytes.fromhex(lid_m))
    except UnknownOrder:
        return False
    finally:
        store.close()
    return True


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--amount", "100", "--exp10", "0"], "exponent must be 2 for currency 978"),
    ],
)
def test_an_impossible_offer_is_refused(
    shop: Path, capsys: pytest.CaptureFixture[str], args: list[str], says: str
) -> None:
    """A currency no account is kept in is a usage error (test_merchant_usage.py), and so
    is an amount out of 1 to the ledger's largest (test_order_card_numbers.py)."""
    lid_m = "0102"
    code, out, err = _new(shop, capsys, "--description", "a lamp", "--lid-m", lid_m, *args)
    assert (code, out) == (1, "")
    assert err.startswith("setpay merchant: ") and says in err and "Traceback" not in err
    assert not _recorded(shop, lid_m)


def test_an_offer_is_written_in_its_currencys_minor_unit(
    shop: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --exp10 the exponent is the currency's: 0 for the yen, 3 for the dinar."""
    for currency, exp10 in (("392", 0), ("48", 3)):
        code, out, err = _new(shop, capsys, "--description", "a lamp", "--amount", "1250",
                              "--currency", currency)  # fmt: skip
        assert (code, err) == (0, "")
        assert f'"exp10": {exp10}' in out


def test_a_lid_m_over_the_protocol_limit_is_refused(
    shop: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A usage error (exit 2), refused as the option is read."""
    lid_m = "00" * (MAX_LID_BYTES + 1)
    err = refused_as_usage(
        ["merchant", "--dir", str(shop), "orders", "new", "--description", "d", "--amount",
         "1", "--lid-m", lid_m],
        capsys,
    )  # fmt: skip
    assert f"argument --lid-m: an order's local id is at most {MAX_LID_BYTES} bytes" in err
    assert not _recorded(shop, lid_m)


def test_a_description_over_the_protocol_limit_is_refused(
    shop: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    long = "x" * (MAX_ORDER_DESCRIPTION_BYTES + 1)
    code, out, err = _new(shop, capsys, "--description", long, "--amount", "100", "--lid-m", "03")
    assert (code, out) == (1, "")
    assert f"at most {MAX_ORDER_DESCRIPTION_BYTES}" in err
    assert not _recorded(shop, "03")


def test_the_largest_possible_offer_is_made(shop: Path, capsys: pytest.CaptureFixture[str]) -> None:
    most = "é" * (MAX_ORDER_DESCRIPTION_BYTES // 2)  # two bytes each in UTF-8
    code, out, err = _new(shop, capsys, "--description", most, "--amount", str(MAX_AMOUNT),
                          "--currency", "997", "--lid-m", "ab" * MAX_LID_BYTES)  # fmt: skip
    assert (code, err) == (0, "")
    assert f'"amount": {MAX_AMOUNT}' in out
    assert _recorded(shop, "ab" * MAX_LID_BYTES)


def test_a_damaged_order_row_is_named_not_a_traceback(
    shop: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lid_m = "0a0b"
    assert (
        _new(shop, capsys, "--lid-m", lid_m, "--description", "a lamp", "--amount", "100")[0] == 0
    )
    store = MerchantStore(load(shop).store)
    try:
        xid = bytes(range(32))
        store.open_order(bytes.fromhex(lid_m), xid, b"trans-ids", b"c" * 32)
    finally:
        store.close()
    with sqlite3.connect(load(shop).store) as conn:
        conn.execute("UPDATE orders SET state = 'paid-ish'")
    conn.close()
    status, out, err = run_cli(["merchant", "--dir", str(shop), "orders"], capsys)
    assert (status, out) == (1, "")
    assert err == (
        f"setpay merchant: merchant database damaged: order {xid.hex()[:8]} has 'paid-ish', "
        "not an order state\n"
    )
