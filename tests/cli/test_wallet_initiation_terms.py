"""``setpay wallet purchase --initiation FILE`` judges the file's ``lid_m`` as ``--lid-m``
is judged (``cli.order_options.lid_m_hex``), and its ``description`` as UTF-8 text:
``bytes.fromhex`` took ``"00 11"`` for the order 0011, an empty id, a JSON number, and
ids past SET's 32 bytes; a description with a lone surrogate escape got the codec's own
words. Each is refused naming the file and the field, before the wallet is opened."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from cli import wallet
from cli.initiation import read_initiation

GOOD = {"lid_m": "f40c3c571ebab67c", "description": "2 books", "currency": 978, "amount": 4250}
NOT_PAIRS = "an order's local id is pairs of hex digits, 0-9 and a-f, not"


def _purchase(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="setpay")
    wallet.add_parser(parser.add_subparsers(dest="command", required=True))
    # A wallet directory that is not there: a term refused is refused before it is read.
    args = ["wallet", "--dir", "no-such-wallet", "purchase", *argv]
    code = wallet.run(parser.parse_args(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("lid_m", "says"),
    [
        ("00 11", f"lid_m: {NOT_PAIRS} '00 11'"),
        (" 0011", f"lid_m: {NOT_PAIRS} ' 0011'"),
        ("001", f"lid_m: {NOT_PAIRS} '001'"),
        ("", "lid_m: an order's local id in hex, not empty"),
        (
            "ab" * 33,
            "lid_m: an order's local id is at most 32 bytes (64 hex digits), not 66 digits",
        ),
        (12, "lid_m is not text: an order's local id in hex"),
        (None, "lid_m is not text: an order's local id in hex"),
    ],
)
def test_a_lid_m_the_option_refuses_is_refused_in_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], lid_m: object, says: str
) -> None:
    path = tmp_path / "initiation.json"
    path.write_text(json.dumps(GOOD | {"lid_m": lid_m}))
    code, out, err = _purchase(["--initiation", str(path)], capsys)
    assert (code, out) == (1, "")
    assert err == f"setpay wallet: {path}: {says}\n"


def test_the_longest_lid_m_is_taken(tmp_path: Path) -> None:
    path = tmp_path / "initiation.json"
    path.write_text(json.dumps(GOOD | {"lid_m": "AB" * 32}))
    assert read_initiation(path).lid_m == b"\xab" * 32


def test_a_description_no_utf8_carries_is_refused_plainly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "initiation.json"
    # A lone surrogate, as JSON escapes it: text Python reads, no UTF-8 can carry.
    path.write_text(json.dumps(GOOD).replace('"2 books"', '"2 books \\ud800"'))
    code, out, err = _purchase(["--initiation", str(path)], capsys)
    assert (code, out) == (1, "")
    assert err == (
        f"setpay wallet: {path}: description is not UTF-8 text: it holds a lone surrogate"
        " (an escape \\ud800 to \\udfff not in a pair)\n"
    )
    assert "codec" not in err


def test_a_paired_surrogate_escape_is_text(tmp_path: Path) -> None:
    path = tmp_path / "initiation.json"
    path.write_text(json.dumps(GOOD | {"description": "2 books \U0001f4da"}))
    assert read_initiation(path).description == "2 books \U0001f4da".encode()
