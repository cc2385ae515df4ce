"""``setpay init --brand``: a brand id that a name of the bank's certificates cannot hold is
a clear error (exit 1), before anything is made; it used to end in a traceback part way
through (the certificate library refusing a CommonName over 64 characters)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from cli import init
from gateway.config import load
from gateway.provisioning import MAX_BRAND_ID_CHARS
from hsm.uri import PASSPHRASE_ENV


def _init(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="setpay")
    init.add_parser(parser.add_subparsers(dest="command", required=True))
    code = init.run(parser.parse_args(["init", *argv]))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize(
    ("brand", "said"),
    [
        ("b" * (MAX_BRAND_ID_CHARS + 1), f"1 to {MAX_BRAND_ID_CHARS} characters"),
        ("b" * 64, f"1 to {MAX_BRAND_ID_CHARS} characters"),
        ("brand\nline", "U+000A"),
        ("brand\u202ednarb", "U+202E RIGHT-TO-LEFT OVERRIDE"),
    ],
)
def test_a_brand_no_certificate_name_holds_is_refused_before_anything_is_made(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    brand: str,
    said: str,
) -> None:
    monkeypatch.delenv(PASSPHRASE_ENV, raising=False)
    directory = tmp_path / "bank"
    code, out, err = _init([str(directory), "--brand", brand], capsys)
    assert (code, out) == (1, "")
    assert err.startswith("setpay init: a brand id ") and said in err
    assert brand not in err
    assert not directory.exists()


def test_the_longest_brand_makes_a_bank(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bound is the names', not a tighter one: a brand with a space is a brand too."""
    monkeypatch.delenv(PASSPHRASE_ENV, raising=False)
    brand = "Brand " + "b" * (MAX_BRAND_ID_CHARS - len("Brand "))
    code, out, err = _init([str(tmp_path / "bank"), "--brand", brand], capsys)
    assert (code, err) == (0, "")
    assert f"  brand {brand}, profile ec" in out
    assert load(tmp_path / "bank" / "setpay.toml").brand_id == brand
