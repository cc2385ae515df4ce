"""``setpay wallet purchase``: an order's terms typed wrong (``--lid-m``, ``--description``)
are refused as ``setpay merchant orders new`` refuses them (``cli.order_options``): a usage
error naming the option, before the wallet's files are opened.

Before, a description whose bytes are not UTF-8 was refused only with the codec's own
error (exit 1), ``--lid-m "00 11"`` was the order 0011 and an empty ``--lid-m`` an empty
LID-M, and a LID-M not in hex was refused once the command ran (exit 1).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from cli import initiation, wallet
from clients.peers import PeerConfig
from clients.wallet.config import write_config
from tests.cards import card
from tests.cli.command_support import refused_as_usage

PAN = card("411111", 16)


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    """A configured wallet directory; its CA and merchant are never called."""
    directory = tmp_path / "wallet"
    write_config(directory, ca=PeerConfig("127.0.0.1:9", directory / "tls/root.pem"))
    return directory


def _files(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in directory.rglob("*") if p.is_file()
    }


def _purchase(directory: Path, *terms: str) -> list[str]:
    return ["wallet", "--dir", str(directory), "purchase", "--amount", "100", *terms]


@pytest.mark.parametrize(
    ("given", "says"),
    [
        ("zz", "an order's local id is pairs of hex digits, 0-9 and a-f, not 'zz'"),
        ("abc", "an order's local id is pairs of hex digits, 0-9 and a-f, not 'abc'"),
        ("00 11", "an order's local id is pairs of hex digits, 0-9 and a-f, not '00 11'"),
        ("", "an order's local id in hex, not empty"),
        (PAN + "x", "an order's local id is pairs of hex digits, 0-9 and a-f, not the 17"),
        ("ab" * 33, "an order's local id is at most 32 bytes (64 hex digits), not 66 digits"),
    ],
    # No card number in a test's id.
    ids=["zz", "odd", "spaced", "empty", "card number", "too long"],
)
def test_a_lid_m_not_in_hex_is_a_usage_error(
    directory: Path, capsys: pytest.CaptureFixture[str], given: str, says: str
) -> None:
    before = _files(directory)
    err = refused_as_usage(
        _purchase(directory, "--description", "a lamp", "--lid-m", given), capsys
    )
    assert f"argument --lid-m: {says}" in err
    assert PAN not in err
    assert _files(directory) == before  # nothing written: no purchase recorded


def test_a_description_not_utf8_is_a_usage_error(
    directory: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Bytes not UTF-8 reach the program as surrogates: it was the codec's own error."""
    before = _files(directory)
    err = refused_as_usage(
        _purchase(directory, "--description", "a l\udcffamp", "--lid-m", "0102"), capsys
    )
    assert "argument --description: an order description is UTF-8 text" in err
    assert _files(directory) == before


def test_a_lid_m_in_capitals_is_the_same_order() -> None:
    """The merchant prints a LID-M in small letters; one typed in capitals is the same."""
    parser = argparse.ArgumentParser(prog="setpay")
    wallet.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(
        ["wallet", "purchase", "--lid-m", "0A0B", "--description", "a lamp", "--amount", "1"]
    )
    given = initiation.initiation_given(args)
    assert (given.lid_m, given.description) == (bytes.fromhex("0a0b"), b"a lamp")
