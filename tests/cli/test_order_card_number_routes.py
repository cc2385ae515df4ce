"""A card number given where an order's id or amount goes, by the routes the options'
own checks (``test_order_card_numbers.py``) did not cover: ``--lid-m`` of ``merchant
orders new`` and ``wallet purchase``, the wallet's ``--initiation`` file, ``merchant
reverse --keep``; and a card file whose ``pan`` is a JSON number. Each is refused, never
repeating the digits, before anything is opened, stored or sent.

The old code took ``--lid-m`` of 14, 16 or 18 digits as hex: the merchant printed the card
number in the initiation and kept it in its order book, the wallet sent it; the
initiation file's amount had no bound and its description was not searched; ``--keep``
was read as any whole number and refused only once the order book was opened; and the
wallet read a card file's ``pan`` through ``str()``, taking a JSON number for the card.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import cli.order_options
from cli import main
from cli.number_options import MAX_AMOUNT, bound_text
from cli.wallet import read_card_file
from clients.errors import ClientError, UnknownOrder
from clients.merchant.config import load, write_config
from clients.merchant.store import MerchantStore
from clients.peers import PeerConfig
from setcore.pan import MAX_PAN_DIGITS, MIN_PAN_DIGITS
from tests.cards import card, luhn_complete, wrong_check_digit

USAGE = 2
PAN = card("453957", 88)
# An all-digit card number of each length an id of whole bytes can have, and the
# shortest and longest (odd: refused as not pairs of hex digits, not repeated either).
PANS = [luhn_complete("4" + "5" * (length - 2)) for length in (14, 16, 18)]
ODD_PANS = [luhn_complete("4" + "5" * (length - 2)) for length in (MIN_PAN_DIGITS, MAX_PAN_DIGITS)]
# Any run of a card number's digits in what the command wrote.
CARD_RUN = re.compile(rf"\d{{{MIN_PAN_DIGITS},}}")
LID_M_REFUSED = "argument --lid-m: an order's local id must not be a card number"
KEEP_REFUSED = f"argument --keep: must be a whole number from 0 to {bound_text(MAX_AMOUNT)}"


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


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[object, str, str]:
    """``setpay ARGV...`` through the real command line; (status, stdout, stderr), whether
    argparse or the command ends it. Neither output holds a run of a card number's digits
    unless ``argv`` is meant to print one."""
    try:
        status: object = main.main(argv)
    except SystemExit as stopped:
        status = stopped.code
    out, err = capsys.readouterr()
    return status, out, err


def _refused(argv: list[str], capsys: pytest.CaptureFixture[str], status: int = USAGE) -> str:
    """``setpay ARGV...`` refused with ``status``, nothing on stdout, no card digits on
    stderr; what it wrote to stderr."""
    code, out, err = _run(argv, capsys)
    assert (code, out) == (status, ""), err
    assert not CARD_RUN.search(err), err
    return err


def _recorded(shop: Path, lid_m: str) -> bool:
    """Whether the merchant keeps an offer of LID-M ``lid_m`` (hex)."""
    store = MerchantStore(load(shop).store)
    try:
        return store.offer(bytes.fromhex(lid_m)).lid_m == bytes.fromhex(lid_m)
    finally:
        store.close()


# -- --lid-m -----------------------------------------------------------------------------


@pytest.mark.parametrize("given", [*PANS, PAN], ids=["14", "16", "18", "other-16"])
def test_a_card_number_as_the_merchants_lid_m_is_a_usage_error(
    shop: Path, capsys: pytest.CaptureFixture[str], given: str
) -> None:
    before = _files(shop)
    argv = ["merchant", "--dir", str(shop), "orders", "new", "--description", "a lamp",
            "--amount", "100", "--lid-m", given]  # fmt: skip
    err = _refused(argv, capsys)
    assert LID_M_REFUSED in err and "(not repeated)" in err and "--initiation" in err
    assert _files(shop) == before  # no database made, no order recorded


@pytest.mark.parametrize("given", ODD_PANS, ids=["shortest", "longest"])
def test_a_card_number_of_odd_length_as_lid_m_is_not_repeated(
    shop: Path, capsys: pytest.CaptureFixture[str], given: str
) -> None:
    before = _files(shop)
    argv = ["merchant", "--dir", str(shop), "orders", "new", "--description", "a lamp",
            "--amount", "100", "--lid-m", given]  # fmt: skip
    err = _refused(argv, capsys)
    assert "argument --lid-m: an order's local id is pairs of hex digits" in err
    assert _files(shop) == before


@pytest.mark.parametrize("given", [*PANS, PAN], ids=["14", "16", "18", "other-16"])
def test_a_card_number_as_the_wallets_lid_m_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], given: str
) -> None:
    wallet = tmp_path / "wallet"
    argv = ["wallet", "--dir", str(wallet), "purchase", "--lid-m", given, "--description",
            "a lamp", "--amount", "100"]  # fmt: skip
    err = _refused(argv, capsys)
    assert LID_M_REFUSED in err
    assert not wallet.exists()


@pytest.mark.parametrize(
    "given",
    [wrong_check_digit(PAN), luhn_complete("4" + "5" * 10), luhn_complete("4" + "5" * 18),
     "4a" + PAN[2:]],
    ids=["fails-luhn", "12-digits", "20-digits", "hex-letter"],
)  # fmt: skip
def test_an_id_of_digits_that_is_no_card_number_is_an_order(
    shop: Path, capsys: pytest.CaptureFixture[str], given: str
) -> None:
    """Digits that fail the Luhn check, or pass it but are too few (12) or too many (20)
    for a card, are an id."""
    argv = ["merchant", "--dir", str(shop), "orders", "new", "--description", "a lamp",
            "--amount", "100", "--lid-m", given]  # fmt: skip
    status, out, err = _run(argv, capsys)
    assert (status, err) == (0, "")
    assert json.loads(out)["lid_m"] == given and _recorded(shop, given)


def test_the_merchants_random_id_is_never_all_digits(
    shop: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The id the merchant draws when ``--lid-m`` is not given is drawn again while its hex
    is all digits (1 draw in about 1,800): printed and listed, such an id reads as a card
    number, and one passing the Luhn check could not be typed back as ``--lid-m``."""
    card_like = bytes.fromhex(PANS[1]) + bytes(24)
    other = bytes.fromhex("f40c3c571ebab67c") + bytes(24)
    draws = iter([card_like, card_like, other])
    monkeypatch.setattr(cli.order_options, "new_id", lambda: next(draws))
    argv = ["merchant", "--dir", str(shop), "orders", "new", "--description", "a lamp",
            "--amount", "100"]  # fmt: skip
    status, out, err = _run(argv, capsys)
    assert (status, err) == (0, "")
    assert json.loads(out)["lid_m"] == "f40c3c571ebab67c" and _recorded(shop, "f40c3c571ebab67c")
    with pytest.raises(UnknownOrder):
        _recorded(shop, PANS[1])


# -- the wallet's --initiation file ------------------------------------------------------

GOOD = {"lid_m": "f40c3c571ebab67c", "description": "2 books", "currency": 978, "amount": 4250}


def _pay_from(tmp_path: Path, **terms: object) -> tuple[list[str], Path]:
    """``wallet purchase --initiation FILE`` of GOOD with ``terms``, and the wallet
    directory it names (none there: a file refused is refused before it is read)."""
    path = tmp_path / "initiation.json"
    path.write_text(json.dumps(GOOD | terms))
    wallet = tmp_path / "wallet"
    return ["wallet", "--dir", str(wallet), "purchase", "--initiation", str(path)], wallet


@pytest.mark.parametrize(
    "given",
    [int(PAN), PAN, int(PANS[-1]), MAX_AMOUNT + 1, 2**63 - 1],
    ids=["card", "card-as-text", "longest-card", "past-bound", "int64-max"],
)
def test_an_initiation_amount_past_the_bound_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], given: object
) -> None:
    argv, wallet = _pay_from(tmp_path, amount=given)
    err = _refused(argv, capsys, status=1)
    says = f"amount is more than {bound_text(MAX_AMOUNT)} minor units, the bank's largest amount"
    assert says in err and "(not repeated)" in err
    assert not wallet.exists()


@pytest.mark.parametrize(
    "given",
    [PAN, " ".join(re.findall("....", PAN)), f"lamp, card {PAN[:4]}-{PAN[4:10]}-{PAN[10:]}"],
    ids=["whole", "spaced", "in-text"],
)
def test_an_initiation_description_holding_a_card_number_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], given: str
) -> None:
    argv, wallet = _pay_from(tmp_path, description=given)
    err = _refused(argv, capsys, status=1)
    assert "description: an order description must not hold a card number" in err
    assert "the merchant's words: ask it for the order again" in err
    assert not wallet.exists()


def test_an_initiation_of_the_largest_amount_and_a_card_like_lid_m_is_paid(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Past the file: it goes on to open the wallet (here there is none). The ``lid_m``
    is the merchant's, drawn at random: one that looks like a card number is paid."""
    description = "order 4411 of 2026-11-24, 3 lamps at 19.99"
    argv, _ = _pay_from(tmp_path, lid_m=PAN, amount=MAX_AMOUNT, description=description)
    status, out, err = _run(argv, capsys)
    assert (status, out) == (1, "")
    assert "argument --" not in err and "initiation.json" not in err and "wallet.toml" in err


# -- merchant reverse --keep -------------------------------------------------------------


@pytest.mark.parametrize(
    "given", [PAN, str(MAX_AMOUNT + 1), "-1"], ids=["card", "past-bound", "negative"]
)
def test_a_keep_past_the_bound_is_a_usage_error(
    shop: Path, capsys: pytest.CaptureFixture[str], given: str
) -> None:
    before = _files(shop)
    err = _refused(["merchant", "--dir", str(shop), "reverse", "0a0b", "--keep", given], capsys)
    assert KEEP_REFUSED in err
    assert _files(shop) == before  # the order book not opened


@pytest.mark.parametrize(
    ("given", "kept"), [([], 0), (["--keep", "0"], 0), (["--keep", str(MAX_AMOUNT)], MAX_AMOUNT)]
)
def test_a_keep_in_the_bound_is_read(given: list[str], kept: int) -> None:
    parser = main.build_parser()
    args = parser.parse_args(["merchant", "reverse", "0a0b", *given])
    assert args.keep == kept


# -- the wallet's card file --------------------------------------------------------------


def test_a_card_files_pan_as_a_json_number_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The bank refuses it too (``cli.bank_card_file``); the digits are not repeated."""
    path = tmp_path / "card.json"
    path.write_text(f'{{"pan": {PAN}, "expiry": "209912"}}')
    path.chmod(0o600)
    says = f"{path} is not a card file: its pan is not text (a JSON string of digits)"
    with pytest.raises(ClientError) as caught:
        read_card_file(path)
    assert str(caught.value) == says
    wallet = tmp_path / "wallet"
    for command in ("register", "renew"):
        argv = ["wallet", "--dir", str(wallet), command, "--card", str(path)]
        assert _refused(argv, capsys, status=1) == f"setpay wallet: {says}\n"
    assert not wallet.exists()


def test_a_card_files_pan_as_text_is_read(tmp_path: Path) -> None:
    path = tmp_path / "card.json"
    path.write_text(json.dumps({"pan": PAN, "expiry": "209912", "enrolment_code": "c"}))
    pan, expiry, code = read_card_file(path)
    assert (pan.reveal(), expiry, code) == (PAN, "209912", "c")
