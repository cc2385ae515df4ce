"""``setpay merchant orders new --lid-m`` given again with the same terms prints the stored
offer's initiation again: the command that stored it may have died, or lost its reader,
before printing it, and nothing else prints one. It used to be refused ("an offer with
LID-M ... exists"), leaving an offer nobody could hand to a wallet under that LID-M."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clients.merchant.config import load, write_config
from clients.merchant.store import MerchantStore
from clients.peers import PeerConfig
from tests.clients.cli_support import run_cli

LID_M = "0102"
TERMS = ("--description", "a lamp", "--amount", "1250", "--lid-m", LID_M)


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    directory = tmp_path / "shop"
    peer = PeerConfig("127.0.0.1:1", directory / "tls/root.pem")
    write_config(directory, merchant_id="shop", name="Shop", gateway=peer, ca=peer)
    return directory


def _new(shop: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    return run_cli(["merchant", "--dir", str(shop), "orders", "new", *args], capsys)


def _offers(shop: Path) -> int:
    store = MerchantStore(load(shop).store)
    try:
        return int(store._read(lambda c: c.execute("SELECT count(*) FROM offers").fetchone()[0]))
    finally:
        store.close()


def test_the_same_offer_given_again_prints_its_initiation_again(
    shop: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, first, err = _new(shop, capsys, *TERMS)
    assert (code, err) == (0, "")
    code, again, err = _new(shop, capsys, *TERMS)
    assert code == 0, err
    assert json.loads(again) == json.loads(first)
    assert f"offer {LID_M} was stored before" in err
    assert _offers(shop) == 1


@pytest.mark.parametrize(
    ("changed", "differ"),
    [
        (("--description", "a chair"), "description"),
        (("--amount", "1300"), "amount"),
        (("--currency", "840"), "amount"),
    ],
)
def test_other_terms_under_a_stored_lid_m_are_refused(
    shop: Path, capsys: pytest.CaptureFixture[str], changed: tuple[str, str], differ: str
) -> None:
    assert _new(shop, capsys, *TERMS)[0] == 0
    terms = list(TERMS)
    if changed[0] in terms:
        terms[terms.index(changed[0]) + 1] = changed[1]
    else:
        terms.extend(changed)
    code, out, err = _new(shop, capsys, *terms)
    assert (code, out) == (1, "")
    assert f"an offer with LID-M {LID_M} exists, with another {differ}" in err
    assert "Traceback" not in err
    store = MerchantStore(load(shop).store)
    try:
        offer = store.offer(bytes.fromhex(LID_M))
    finally:
        store.close()
    assert (offer.description, offer.amount.minor, offer.amount.currency) == (b"a lamp", 1250, 978)


def test_another_brand_under_a_stored_lid_m_is_refused(
    shop: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _new(shop, capsys, *TERMS)[0] == 0
    peer = PeerConfig("127.0.0.1:1", shop / "tls/root.pem")
    write_config(shop, merchant_id="shop", name="Shop", gateway=peer, ca=peer, brand_id="other")
    code, out, err = _new(shop, capsys, *TERMS)
    assert (code, out) == (1, "")
    assert f"an offer with LID-M {LID_M} exists, with another brand" in err


@pytest.mark.parametrize(
    ("state", "reason"),
    [("authorized", "is already paid and authorized"), ("purchased", "is already paid")],
)
def test_an_offer_already_paid_is_not_printed_again(
    shop: Path, capsys: pytest.CaptureFixture[str], state: str, reason: str
) -> None:
    """Its initiation would send a wallet to a refusal (the offer is not offered again):
    refused as a PInit of it would be, nothing changed."""
    assert _new(shop, capsys, *TERMS)[0] == 0
    store = MerchantStore(load(shop).store)
    try:
        lid_m, xid = bytes.fromhex(LID_M), bytes(range(32))
        store.open_order(lid_m, xid, b"trans-ids", b"chall-m")
        with store._write() as conn:
            conn.execute("UPDATE orders SET state = ? WHERE xid = ?", (state, xid))
    finally:
        store.close()
    code, out, err = _new(shop, capsys, *TERMS)
    assert (code, out) == (1, "")
    assert f"offer {LID_M} {reason}" in err


def test_an_offer_whose_order_was_only_initiated_is_printed_again(
    shop: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _new(shop, capsys, *TERMS)[0] == 0
    store = MerchantStore(load(shop).store)
    try:
        store.open_order(bytes.fromhex(LID_M), bytes(range(32)), b"trans-ids", b"chall-m")
    finally:
        store.close()
    assert _new(shop, capsys, *TERMS)[0] == 0
