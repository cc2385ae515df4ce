"""``setpay wallet purchase --initiation FILE``: a wrong file is named, with what is wrong."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from cli import wallet
from clients.errors import ClientError

GOOD = {"lid_m": "f40c3c571ebab67c", "description": "2 books", "currency": 978, "amount": 4250}


def _purchase(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="setpay")
    wallet.add_parser(parser.add_subparsers(dest="command", required=True))
    code = wallet.run(parser.parse_args(["wallet", "purchase", *argv]))
    out, err = capsys.readouterr()
    return code, out, err


def _file(tmp_path: Path, document: object) -> Path:
    path = tmp_path / "initiation.json"
    path.write_text(json.dumps(document))
    return path


@pytest.mark.parametrize("field", ["lid_m", "description", "currency", "amount"])
def test_a_missing_field_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], field: str
) -> None:
    path = _file(tmp_path, {k: v for k, v in GOOD.items() if k != field})
    code, out, err = _purchase(["--initiation", str(path)], capsys)
    assert (code, out) == (1, "")
    assert err == f"setpay wallet: {path} has no {field}: not a complete SET Initiation\n"


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (
            {"lid_m": "zz"},
            "lid_m: an order's local id is pairs of hex digits, 0-9 and a-f, not 'zz'",
        ),
        ({"amount": "lots"}, "amount is not an integer"),
        ({"currency": True}, "currency is not an integer"),
        ({"description": 7}, "description is not text"),
    ],
)
def test_a_malformed_field_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], change: dict[str, object], says: str
) -> None:
    path = _file(tmp_path, GOOD | change)
    code, _, err = _purchase(["--initiation", str(path)], capsys)
    assert code == 1 and err == f"setpay wallet: {path}: {says}\n"


@pytest.mark.parametrize("content", ["not json", "[1, 2]"])
def test_not_an_initiation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str
) -> None:
    path = tmp_path / "initiation.json"
    path.write_text(content)
    code, _, err = _purchase(["--initiation", str(path)], capsys)
    assert code == 1 and err.startswith(f"setpay wallet: {path} is not") and "Traceback" not in err


def test_a_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "nowhere.json"
    code, _, err = _purchase(["--initiation", str(path)], capsys)
    assert code == 1 and err == f"setpay wallet: cannot read {path}: No such file or directory\n"
    with pytest.raises(ClientError, match="cannot read"):
        wallet.read_initiation(tmp_path)


def test_a_good_initiation_reads_whole(tmp_path: Path) -> None:
    initiation = wallet.read_initiation(_file(tmp_path, GOOD | {"exp10": 2, "brand": "setpay"}))
    assert initiation.lid_m == bytes.fromhex(GOOD["lid_m"])
    assert (initiation.description, initiation.currency, initiation.amount) == (
        b"2 books",
        978,
        4250,
    )


@pytest.mark.parametrize(
    ("currency", "given", "exp10"),
    [(978, {}, 2), (392, {}, 0), (48, {}, 3), (392, {"exp10": 2}, 2)],
)
def test_an_initiation_without_an_exponent_takes_its_currencys(
    tmp_path: Path, currency: int, given: dict[str, int], exp10: int
) -> None:
    """The yen has no minor unit, the dinar three digits; an exponent given is kept as
    given (the purchase then refuses one that is not the currency's)."""
    path = _file(tmp_path, GOOD | {"currency": currency} | given)
    assert wallet.read_initiation(path).exp10 == exp10


def test_a_command_line_lid_m_that_is_not_hex(capsys: pytest.CaptureFixture[str]) -> None:
    """Refused as the merchant refuses it, a usage error (``test_wallet_order_terms``)."""
    argv = ["--lid-m", "xyz", "--description", "d", "--amount", "1"]
    with pytest.raises(SystemExit) as stopped:
        _purchase(argv, capsys)
    assert stopped.value.code == 2
    assert "argument --lid-m: an order's local id is pairs of hex" in capsys.readouterr().err
