"""``setpay bank show-merchant`` and ``show-batch`` take only a merchant ID the Merchant CA
registers, as ``open-merchant`` does: the ledger's "has no account" error repeated any
other, its terminal escapes and line breaks with it, onto the operator's terminal."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli import main
from gateway.provisioning import InitResult, init_bank

USAGE = 2
BATCH = "batch-" + "a" * 16
# An ID that rewrites the terminal's title, one that forges a line, one that turns the
# rest of the line around (U+202E RIGHT-TO-LEFT OVERRIDE).
HOSTILE = ["\x1b]0;owned\x07shop", "shop has no account\nsetpay bank: all is well", "\u202epohs"]


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> InitResult:
    """A real bank: with it, the old code looked the ID up and repeated it in its error."""
    return init_bank(tmp_path_factory.mktemp("bank-merchant-id") / "bank", env={})


def _files(directory: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def _command(made: InitResult, name: str, merchant: str) -> list[str]:
    extra = ["--batch", BATCH] if name == "show-batch" else []
    config = str(made.directory / "setpay.toml")
    return ["bank", "--config", config, name, "--merchant-id", merchant, *extra]


@pytest.mark.parametrize("name", ["show-merchant", "show-batch"])
@pytest.mark.parametrize("merchant", HOSTILE)
def test_an_id_no_merchant_registers_is_a_usage_error(
    made: InitResult, capsys: pytest.CaptureFixture[str], name: str, merchant: str
) -> None:
    before = _files(made.directory)
    with pytest.raises(SystemExit) as stopped:
        main.main(_command(made, name, merchant))
    out, err = capsys.readouterr()
    assert (stopped.value.code, out) == (USAGE, "")
    assert "argument --merchant-id: a merchant ID holds no control" in err
    assert merchant not in err and "\x1b" not in err and "\u202e" not in err
    assert _files(made.directory) == before


@pytest.mark.parametrize("name", ["show-merchant", "show-batch"])
def test_a_registrable_id_is_still_looked_up(
    made: InitResult, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    assert main.main(_command(made, name, "corner-shop")) == 1
    out, err = capsys.readouterr()
    assert (out, err) == ("", "setpay bank: merchant corner-shop has no account\n")
