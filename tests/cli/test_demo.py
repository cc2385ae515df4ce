"""``setpay demo`` runs the whole story for both profiles, and no PAN leaks anywhere."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest

from cli.demo import scan_for_pan
from cli.main import main
from setcore.pan import PAN, luhn_valid
from tests.cards import MASTERCARD, VISA, luhn_complete
from tests.clients.pan_scan import files_with_pans, lines_with_pans, luhn_runs, pan_like_runs

# Masks every Luhn-valid run in a failure message, hexadecimal names included: masking
# too much costs nothing there. What counts as a leak is ``tests.clients.pan_scan``'s.
_RUN = re.compile(r"(?<![0-9])[0-9]{13,19}(?![0-9])")


def _mask(run: str) -> str:
    """A digit run as BIN + last four, the middle starred."""
    return run[:6] + "*" * (len(run) - 10) + run[-4:]


def _masked(text: str) -> str:
    """``text`` with every Luhn-valid 13-19 digit run masked to BIN + last four."""
    return _RUN.sub(lambda m: _mask(m.group()) if luhn_valid(m.group()) else m.group(), text)


def _why_it_failed(stdout: str, stderr: str) -> str:
    """A failed demo's stderr, its summary and its last lines, card numbers masked: the
    exit code alone does not say which part of the story went wrong."""
    lines = [stderr]
    try:
        document = json.loads(stdout)
    except ValueError:
        lines.append(stdout[-4000:])
    else:
        lines.append(f"summary: {document.get('summary')}")
        lines += [str(e.get("text", e)) for e in document.get("events", [])[-25:]]
    return _masked("\n".join(lines))


class Everything(logging.Handler):
    """Keeps every record of every logger, at every level."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.name} {record.levelname} {record.getMessage()}")
        if record.exc_info:
            self.lines.append(logging.Formatter().formatException(record.exc_info))


@pytest.mark.parametrize("profile", ["ec", "rsa"])
def test_demo_tells_the_story_and_leaks_no_pan(
    profile: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    handler = Everything()
    for name in ("", "setpay"):
        logging.getLogger(name).addHandler(handler)
    setpay_logger = logging.getLogger("setpay")
    previous = setpay_logger.level
    setpay_logger.setLevel(logging.DEBUG)
    try:
        code = main(["demo", "--dir", str(tmp_path / "demo"), "--profile", profile, "--json"])
    finally:
        for name in ("", "setpay"):
            logging.getLogger(name).removeHandler(handler)
        setpay_logger.setLevel(previous)
    out = capsys.readouterr()
    assert code == 0, _why_it_failed(out.out, out.err)
    document = json.loads(out.out)
    steps = [e["step"] for e in document["events"] if "step" in e]
    assert steps == list(range(1, 11))
    summary = document["summary"]
    assert summary["approved"] is True
    assert summary["declined"] == "AUTH_CODE_DECLINED"
    assert summary["tampered"] == "COMPLETION_CODE_ORDER_REJECTED"
    assert summary["pan_in_merchant_files"] is False
    texts = [e.get("text", "") for e in document["events"]]
    assert any("ERROR_CODE_DECRYPTION_FAILURE" in t for t in texts)
    assert any("INSUFFICIENT_FUNDS".lower().replace("_", "-") in t for t in texts)
    # The card the demo opened: the wallet shows BIN + last four only.
    assert any(re.search(r"\d{6}\*{6}\d{4}", t) for t in texts)
    # No PAN in any output line, any log line of any party at any level, any merchant file.
    assert pan_like_runs(out.out.encode()) == []
    assert pan_like_runs(out.err.encode()) == []
    assert [_masked(line) for line in lines_with_pans(handler.lines)] == []
    assert files_with_pans(tmp_path / "demo" / "merchant") == {}
    assert len(handler.lines) > 50  # the parties did log (DEBUG included)


@pytest.mark.parametrize("profile", ["ec", "rsa"])
def test_demo_with_the_bank_keys_on_a_softhsm_token(
    profile: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    from tests.hsm.testbed import session_softhsm

    token = session_softhsm(tmp_path_factory).init_token()
    code = main([
        "demo", "--dir", str(tmp_path / "demo"), "--profile", profile, "--keys", token.uri(),
        "--json",
    ])  # fmt: skip
    out = capsys.readouterr()
    assert code == 0, _why_it_failed(out.out, out.err)
    summary = json.loads(out.out)["summary"]
    assert summary["approved"] is True and summary["pan_in_merchant_files"] is False
    assert summary["tampered"] == "COMPLETION_CODE_ORDER_REJECTED"
    # The bank's private keys are on the token, not in the bank directory.
    assert not list((tmp_path / "demo" / "bank").glob("keys/*"))


def test_a_failure_message_shows_card_numbers_masked() -> None:
    text = f"order 7: card {VISA} accepted, port 45899, id 1399ed92493731f0"
    assert _masked(text) == (
        "order 7: card 411111******1111 accepted, port 45899, id 1399ed92493731f0"
    )


def test_the_demo_scan_finds_its_card_and_not_a_hex_name(tmp_path: Path) -> None:
    card = PAN(VISA)
    (tmp_path / "deep").mkdir()
    (tmp_path / "deep" / "merchant.db-wal").write_bytes(b"\x00\x10" + card.reveal().encode())
    # A cardholder certificate's subject id in one run: its hex holds a Luhn-valid run.
    ca_name = b"3d08f83e" + luhn_complete("3777592" + "9987564").encode() + b"e392c270e"
    assert luhn_runs(ca_name) == ["377759...5647"]
    (tmp_path / "ca.der").write_bytes(b"\x0c " + ca_name)
    (tmp_path / "other-card.txt").write_bytes(MASTERCARD.encode())
    assert scan_for_pan(tmp_path, card) == ["deep/merchant.db-wal"]
