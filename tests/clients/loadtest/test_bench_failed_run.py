"""A run that fails once its options are checked (exit 1) leaves no earlier run's reports
to pass for its own: its JSON report says it failed and why, an earlier plot is removed,
and ``setpay bench compare`` refuses the report by name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli.bench import EXIT_FAILED
from clients.loadtest.report import SCHEMA

from .conftest import run_bench

# An address no bank of the test's answers on: the run fails before it dials.
NOWHERE = "127.0.0.1:9"


def test_a_failed_run_replaces_an_earlier_report_and_removes_its_plot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report, picture = tmp_path / "report.json", tmp_path / "latency.png"
    report.write_text(json.dumps({"schema": SCHEMA, "steps": [], "doubts": []}))  # last run's
    picture.write_bytes(b"an earlier run's plot")
    config = tmp_path / "setpay.toml"
    config.write_text("this is = not [ a bank configuration\n")
    argv = ["authorize", "--target", NOWHERE, "--bank-config", str(config), "--rate", "5",
            "--json", str(report), "--plot", str(picture)]  # fmt: skip
    assert run_bench(argv) == EXIT_FAILED
    said = capsys.readouterr().err.strip().removeprefix("setpay bench: ")
    document = json.loads(report.read_text())
    assert document == {"schema": SCHEMA, "failed": said, "steps": [], "doubts": []}
    assert said  # the reason, as the run said it on stderr
    assert not picture.exists()
    assert run_bench(["compare", str(report)]) == EXIT_FAILED
    refused = capsys.readouterr()
    assert refused.out == ""
    assert f"report.json: the run failed, it has no figures ({said})" in refused.err


def test_a_usage_error_writes_no_report(tmp_path: Path) -> None:
    # Exit 2: the options were refused, nothing ran, and an earlier report stays as it was.
    report = tmp_path / "report.json"
    report.write_text("an earlier run's report")
    argv = ["authorize", "--target", NOWHERE, "--rate", "5", "--json", str(report)]
    assert run_bench(argv) == 2  # --target needs --bank-config
    assert report.read_text() == "an earlier run's report"
