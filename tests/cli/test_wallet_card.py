"""``setpay wallet register --card FILE``: a wrong card file is refused by name, never with
a traceback and never with the card number."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cli import wallet
from clients.errors import ClientError
from tests.clients.cli_support import run_cli
from tests.clients.pan_scan import pan_like_runs
from tests.gateway.actors import make_pan


def _card_file(tmp_path: Path, content: str) -> Path:
    path = tmp_path / "card.json"
    path.write_text(content)
    return path


def test_a_card_file_reads_whole(tmp_path: Path) -> None:
    pan = make_pan(7)
    path = _card_file(tmp_path, json.dumps({"pan": pan, "expiry": "203012", "account": "a"}))
    card, expiry = wallet.read_card(path)
    assert card.reveal() == pan and expiry == "203012"


@pytest.mark.parametrize(
    "content",
    [
        "[1, 2]",  # JSON, but no object: a TypeError escaped as a traceback
        "42",
        '"a string"',
        "not json",
        '{"expiry": "203012"}',
        '{"pan": "1234", "expiry": "203012"}',
    ],
)
def test_not_a_card_file(tmp_path: Path, content: str) -> None:
    path = _card_file(tmp_path, content)
    with pytest.raises(ClientError) as caught:
        wallet.read_card(path)
    assert str(caught.value).startswith(f"{path} is not a card file")


def test_a_card_file_too_large_is_not_read_whole(tmp_path: Path) -> None:
    pan = make_pan(8)
    padding = " " * wallet.MAX_CARD_FILE_BYTES
    path = _card_file(tmp_path, json.dumps({"pan": pan, "expiry": "203012"}) + padding)
    with pytest.raises(ClientError) as caught:
        wallet.read_card(path)
    assert str(caught.value) == f"{path} is too large to be a card file"
    assert pan not in str(caught.value)


def test_an_unreadable_card_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.json"
    with pytest.raises(ClientError) as caught:
        wallet.read_card(path)
    assert str(caught.value) == f"cannot read {path}: No such file or directory"


@pytest.mark.parametrize(
    "expiry",
    ['"203013"', '"2030-12"', '"3012"', "203012", "null", '"20301\\uff12"'],
    ids=["month-13", "dashed", "short", "a-number", "null", "non-ascii-digit"],
)
def test_an_expiry_that_is_not_yyyymm_is_refused(tmp_path: Path, expiry: str) -> None:
    pan = make_pan(9)
    path = _card_file(tmp_path, f'{{"pan": "{pan}", "expiry": {expiry}}}')
    with pytest.raises(ClientError) as caught:
        wallet.read_card(path)
    years = "a year from 2000 to 2099"
    assert str(caught.value) == f"{path}: the card's expiry is not YYYYMM of {years}"


def test_an_expiry_holding_the_card_number_is_not_quoted(tmp_path: Path) -> None:
    """A file with its fields swapped: the error names the file, never the digits."""
    pan = make_pan(10)
    path = _card_file(tmp_path, json.dumps({"pan": pan, "expiry": pan}))
    with pytest.raises(ClientError) as caught:
        wallet.read_card(path)
    assert pan not in str(caught.value) and pan_like_runs(str(caught.value).encode()) == []


def test_an_expired_card_is_refused(tmp_path: Path) -> None:
    last_year = datetime.now(UTC).year - 1
    path = _card_file(tmp_path, json.dumps({"pan": make_pan(11), "expiry": f"{last_year}12"}))
    with pytest.raises(ClientError) as caught:
        wallet.read_card(path)
    assert str(caught.value) == f"{path}: the card expired (12/{last_year})"


def test_a_card_in_its_last_month_is_read(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    expiry = f"{now.year}{now.month:02d}"
    path = _card_file(tmp_path, json.dumps({"pan": make_pan(12), "expiry": expiry}))
    assert wallet.read_card(path)[1] == expiry


def test_a_bad_card_file_is_refused_before_anything_is_opened(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No wallet configuration, passphrase or CA is needed to find the card file wrong."""
    path = _card_file(tmp_path, json.dumps({"pan": make_pan(13), "expiry": "200001"}))
    path.chmod(0o600)
    argv = ["wallet", "--dir", str(tmp_path / "none"), "register", "--card", str(path)]
    status, out, err = run_cli(argv, capsys)
    assert (status, out) == (1, "")
    assert err == f"setpay wallet: {path}: the card expired (01/2000)\n"


@pytest.mark.parametrize(("mode", "warned"), [(0o644, True), (0o640, True), (0o600, False)])
def test_a_card_file_others_can_read_is_warned_about(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], mode: int, warned: bool
) -> None:
    path = _card_file(tmp_path, json.dumps({"pan": make_pan(14), "expiry": "203012"}))
    path.chmod(mode)
    argv = ["wallet", "--dir", str(tmp_path / "none"), "register", "--card", str(path)]
    _, _, err = run_cli(argv, capsys)
    warning = (
        f"setpay wallet: warning: {path} holds the card number in clear and others can read "
        "it: delete it once the card is registered (the wallet keeps the card sealed)\n"
    )
    assert err.startswith(warning) == warned
    assert "no wallet configuration" in err or "wallet.toml" in err
