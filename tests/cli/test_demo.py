"""``setpay demo`` runs the whole story for both profiles, and no PAN leaks anywhere."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest

from cli.main import main
from setcore.pan import luhn_valid

_RUN = re.compile(r"(?<![0-9])[0-9]{13,19}(?![0-9])")


def _pans(text: str) -> list[str]:
    return [m for m in _RUN.findall(text) if luhn_valid(m)]


def _mask(run: str) -> str:
    """A digit run as BIN + last four, the middle starred."""
    return run[:6] + "*" * (len(run) - 10) + run[-4:]


def _where(text: str) -> list[str]:
    """Where ``_pans`` matched, the digits masked to BIN + last four (for a failure message
    that is worth reading and still prints no card number)."""
    found = []
    for match in _RUN.finditer(text):
        run = match.group()
        if luhn_valid(run):
            masked = _mask(run)
            before = text[max(0, match.start() - 60) : match.start()]
            after = text[match.end() : match.end() + 40]
            found.append(f"{before}{masked}{after}")
    return found


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
    assert _pans(out.out) == [], _where(out.out)
    assert _pans(out.err) == [], _where(out.err)
    assert [line for line in handler.lines if _pans(line)] == [], [
        where for line in handler.lines for where in _where(line)
    ]
    merchant = tmp_path / "demo" / "merchant"
    leaked = [
        p for p in merchant.rglob("*") if p.is_file() and _pans(p.read_bytes().decode("latin-1"))
    ]
    assert leaked == []
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


def test_the_scan_finds_a_card_number_and_reports_it_masked() -> None:
    text = "order 7: card 4111111111111111 accepted, port 45899, id 1399ed92493731f0"
    assert _pans(text) == ["4111111111111111"]
    where = _where(text)
    assert where == ["order 7: card 411111******1111 accepted, port 45899, id 1399ed92493731"]
    assert "4111111111111111" not in "".join(where)
    assert _masked(text) == (
        "order 7: card 411111******1111 accepted, port 45899, id 1399ed92493731f0"
    )
