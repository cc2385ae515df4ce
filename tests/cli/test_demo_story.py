"""``setpay demo`` tells each step as it happens, checks every outcome it claims, says
clearly where it failed when one goes wrong, and leaves no temporary directory behind."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

import cli.demo
from cli.main import main
from clients.merchant.records import Operation, OperationState
from clients.merchant.settlement import Settlement


def _demo(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, Any, str]:
    """Run ``setpay demo --json ARGV``: its exit status, its JSON document and its stderr."""
    code = main(["demo", "--json", *argv])
    out = capsys.readouterr()
    return code, json.loads(out.out) if out.out.strip() else None, out.err


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The directory where the demo makes its temporary directory, for this test alone."""
    directory = tmp_path / "tmp"
    directory.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(directory))
    return directory


def test_every_step_shows_what_happened_in_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, document, err = _demo(["--dir", str(tmp_path / "demo")], capsys)
    assert code == 0, err
    under: dict[int, list[str]] = {}
    step = 0
    for event in document["events"]:
        if "step" in event:
            step = event["step"]
            under[step] = []
        elif "section" in event:
            break
        else:
            under[step].append(f"{event['party']}: {event.get('text', event.get('sees'))}")
    assert sorted(under) == list(range(1, 11))
    assert [n for n, lines in under.items() if not lines] == []
    # Step 6 is the wallet sending its purchase request, so the wallet's PReq line is there.
    assert any(line.startswith("wallet: PReq ") for line in under[6]), under


def test_the_story_reverses_an_authorization(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # DESIGN.md section 1, step 10: the merchant can capture, refund or reverse.
    code, document, err = _demo(["--dir", str(tmp_path / "demo")], capsys)
    assert code == 0, err
    texts = [e.get("text", "") for e in document["events"]]
    assert any("AuthRevReq" in t for t in texts)
    assert any("answered AUTH_REV_CODE_APPROVED" in t for t in texts)
    summary = document["summary"]
    assert summary["ok"] is True
    assert summary["reversed"] is True


def test_a_step_that_goes_wrong_fails_the_demo_with_a_clear_message(
    private_tmp: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A card limit below the first order's amount: the first purchase is declined.
    monkeypatch.setattr(cli.demo, "CREDIT_LIMIT", 1000)
    code, document, err = _demo([], capsys)
    assert code == 1
    assert err.startswith("setpay demo: FAILED at step 10 "), err
    assert "AUTH_CODE_DECLINED" in err and "Traceback" not in err
    assert document["summary"]["ok"] is False
    assert "AUTH_CODE_DECLINED" in document["summary"]["failure"]
    assert list(private_tmp.iterdir()) == []  # removed even after a failure


def test_a_refused_capture_fails_the_demo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real = Settlement.capture

    def refused(self: Settlement, xid: bytes, amount: int | None = None) -> Operation:
        return dataclasses.replace(real(self, xid, amount), state=OperationState.REFUSED)

    monkeypatch.setattr(Settlement, "capture", refused)
    code, document, err = _demo(["--dir", str(tmp_path / "demo")], capsys)
    assert code == 1
    assert err.startswith("setpay demo: FAILED at ") and "capture" in err, err
    assert document["summary"]["ok"] is False


def test_a_bank_that_cannot_start_fails_the_demo_at_step_one(
    private_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _demo(["--keys", "nosuchscheme:x"], capsys)
    assert code == 1
    assert err.startswith("setpay demo: FAILED at step 1 "), err
    assert "unknown key URI scheme" in err and "Traceback" not in err
    assert list(private_tmp.iterdir()) == []


def test_a_file_is_not_a_demo_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "file").write_text("")
    code = main(["demo", "--dir", str(tmp_path / "file")])
    assert code == 2
    assert "not an empty directory" in capsys.readouterr().err


def test_without_dir_the_demo_leaves_no_keys_behind(
    private_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "removed at the end" in out.splitlines()[0]
    assert list(private_tmp.iterdir()) == []
    # A second run in the same place works as the first did.
    assert main(["demo"]) == 0
    assert list(private_tmp.iterdir()) == []
