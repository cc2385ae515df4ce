"""A card number typed into an order's amount or description is a usage error (exit 2)
that does not repeat it, before anything is opened, stored, signed or sent
(``cli.number_options.amount``, ``cli.order_options.order_description``).

The old code read ``--amount`` as any whole number and took any description: ``setpay
merchant orders new --amount <PAN>`` printed the card number in the initiation and kept it
in the merchant's order book as the order's amount, and a description holding one was
kept alike; the wallet would have sent either in its purchase, and ``capture``/``refund``
repeated such an amount in their refusal.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from cli import main
from cli.number_options import MAX_AMOUNT, bound_text
from clients.merchant.config import load, write_config
from clients.merchant.store import MerchantStore
from clients.peers import PeerConfig
from gateway.ledger import limits
from setcore.pan import MAX_PAN_DIGITS, MIN_PAN_DIGITS
from tests.cards import card, luhn_complete, wrong_check_digit

USAGE = 2
PAN = card("453957", 87)
# A card number of each length a card number has, the first digit as issuers' are.
PANS = [luhn_complete("4" + "5" * (length - 2)) for length in (MIN_PAN_DIGITS, 16, MAX_PAN_DIGITS)]
# Any run of a card number's digits in what the command wrote.
CARD_RUN = re.compile(rf"\d{{{MIN_PAN_DIGITS},}}")
AMOUNT_REFUSED = f"argument --amount: must be a whole number from 1 to {bound_text(MAX_AMOUNT)}"
DESCRIPTION_REFUSED = "argument --description: an order description must not hold a card number"


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    """A merchant directory: enough configuration to record offers (no bank needed)."""
    directory = tmp_path / "shop"
    peer = PeerConfig("127.0.0.1:9", directory / "tls/root.pem")
    write_config(directory, merchant_id="shop", name="Shop", gateway=peer, ca=peer)
    return directory


def _files(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in directory.rglob("*") if p.is_file()
    }


def _refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """``setpay ARGV...`` through the real command line (its masking of usage errors
    included), refused as a usage error with nothing on stdout; what it wrote to stderr."""
    with pytest.raises(SystemExit) as stopped:
        main.main(argv)
    out, err = capsys.readouterr()
    assert (stopped.value.code, out) == (USAGE, "")
    assert not CARD_RUN.search(err), err
    return err


def _offer(shop: Path, lid_m: str) -> tuple[str, int]:
    """The description and amount the merchant keeps for an offer."""
    store = MerchantStore(load(shop).store)
    try:
        offer = store.offer(bytes.fromhex(lid_m))
    finally:
        store.close()
    return offer.description.decode(), offer.amount.minor


def test_the_bound_is_the_ledgers_and_below_every_card_number() -> None:
    """The gateway declines an amount above the ledger's largest, so no real order is
    larger; and every card number, of any length, is."""
    assert MAX_AMOUNT == limits.MAX_AMOUNT
    assert all(int(pan) > MAX_AMOUNT for pan in [*PANS, PAN])
    assert MAX_AMOUNT < 10 ** (MIN_PAN_DIGITS - 1) + 1


@pytest.mark.parametrize(
    "given",
    [*PANS, PAN, "-" + PAN, str(MAX_AMOUNT + 1), "0"],
    ids=["shortest-card", "card", "longest-card", "other-card", "minus-card", "past-bound", "0"],
)
def test_an_order_amount_past_the_bound_is_a_usage_error(
    shop: Path, capsys: pytest.CaptureFixture[str], given: str
) -> None:
    before = _files(shop)
    argv = ["merchant", "--dir", str(shop), "orders", "new", "--description", "a lamp",
            "--amount", given]  # fmt: skip
    err = _refused(argv, capsys)
    assert AMOUNT_REFUSED in err
    assert _files(shop) == before  # no database made, no order recorded


@pytest.mark.parametrize("command", ["capture", "refund"])
def test_a_card_number_as_a_capture_or_refund_amount_is_a_usage_error(
    shop: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    """It reached the settlement checks, whose refusal repeats the amount."""
    before = _files(shop)
    err = _refused(["merchant", "--dir", str(shop), command, "0a0b", "--amount", PAN], capsys)
    assert AMOUNT_REFUSED in err and "(not repeated)" in err
    assert _files(shop) == before


@pytest.mark.parametrize(
    "given",
    [PAN, " ".join(re.findall("....", PAN)), "-".join(re.findall("....", PAN)),
     f"lamp, card {PAN[:4]} {PAN[4:10]} {PAN[10:]} thanks", PANS[0], PANS[-1]],
    ids=["whole", "spaced", "dashed", "in-text", "shortest", "longest"],
)  # fmt: skip
def test_a_card_number_in_an_order_description_is_a_usage_error(
    shop: Path, capsys: pytest.CaptureFixture[str], given: str
) -> None:
    before = _files(shop)
    argv = ["merchant", "--dir", str(shop), "orders", "new", "--description", given,
            "--amount", "100"]  # fmt: skip
    err = _refused(argv, capsys)
    assert DESCRIPTION_REFUSED in err and "'order #4411 of 2026-11-24'" in err
    assert _files(shop) == before


def test_the_largest_amount_and_ordinary_numbers_are_an_order(
    shop: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An order's number, a date, a price and a wrong-by-one card number (which fails the
    Luhn check) are no card number."""
    descriptions = [
        "order 4411 of 2026-11-24, 3 lamps at 19.99",
        "invoice #2026112400017",
        f"ref {wrong_check_digit(PAN)}",
    ]
    for description in descriptions:
        argv = ["merchant", "--dir", str(shop), "orders", "new", "--description", description,
                "--amount", str(MAX_AMOUNT)]  # fmt: skip
        assert main.main(argv) == 0
        out, err = capsys.readouterr()
        initiation = json.loads(out)
        assert (err, initiation["amount"], initiation["description"]) == (
            "",
            MAX_AMOUNT,
            description,
        )
        assert _offer(shop, initiation["lid_m"]) == (description, MAX_AMOUNT)


@pytest.mark.parametrize(
    ("option", "given", "says"),
    [
        ("--amount", PAN, AMOUNT_REFUSED),
        ("--amount", str(MAX_AMOUNT + 1), AMOUNT_REFUSED),
        ("--amount", "0", AMOUNT_REFUSED),
        ("--amount", "-5", AMOUNT_REFUSED),
        ("--description", " ".join(re.findall("....", PAN)), DESCRIPTION_REFUSED),
    ],
    ids=["amount", "amount-past-bound", "zero", "negative", "description"],
)
def test_a_card_number_in_a_wallet_purchase_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str, given: str, says: str
) -> None:
    """Refused before the wallet is opened or anything is signed or sent."""
    wallet = tmp_path / "wallet"
    terms = {"--lid-m": "0a", "--description": "a lamp", "--amount": "100", option: given}
    argv = ["wallet", "--dir", str(wallet), "purchase", *(x for kv in terms.items() for x in kv)]
    err = _refused(argv, capsys)
    assert says in err
    assert not wallet.exists()


def test_a_wallet_purchase_takes_the_largest_amount(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Past the command line: it goes on to open the wallet (here there is none)."""
    wallet = tmp_path / "wallet"
    argv = ["wallet", "--dir", str(wallet), "purchase", "--lid-m", "0a", "--description",
            "order 4411 of 2026-11-24", "--amount", str(MAX_AMOUNT)]  # fmt: skip
    status = main.main(argv)
    err = capsys.readouterr().err
    assert status == 1 and "argument --" not in err and "wallet.toml" in err
