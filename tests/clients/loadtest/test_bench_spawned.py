"""``setpay bench authorize --spawn`` end to end: a real bank, real load, the ledger checked.

A few seconds at a low rate, with the ceiling and echo services: every request is
accounted for, every approval the bench reports is a hold in the bank's ledger (read
after the run, read-only), the JSON report has its fields, and no output holds a PAN.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from clients.loadtest.load import MAX_REDIALS
from clients.loadtest.plot import DPI, FIGURE_INCHES
from tests.clients.pan_scan import pan_like_runs

from .conftest import png_size, run_bench
from .went_right import LATE_SENDS, went_right

RATE = 25
DURATION = 2.0
CARDHOLDERS = 3


@pytest.fixture(scope="module")
def spawned(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    work = tmp_path_factory.mktemp("bench")
    report = work / "report.json"
    code = run_bench([
        "authorize", "--spawn", "--workdir", str(work / "run"), "--rate", str(RATE),
        "--duration", str(DURATION), "--cardholders", str(CARDHOLDERS), "--channels", "2",
        "--ceiling", "--metrics", "--workers", "2", "--json", str(report),
        "--plot", str(work / "latency.png"),
    ])  # fmt: skip
    return {"code": code, "work": work, "report": json.loads(report.read_text())}


def gateway_results(report: dict[str, Any]) -> list[dict[str, Any]]:
    found = [report["warmup"]["gateway"]]
    found += [step["results"]["gateway"] for step in report["steps"]]
    return found


def test_every_request_is_accounted_for(spawned: dict[str, Any]) -> None:
    report = spawned["report"]
    assert went_right(spawned["code"], report), (spawned["code"], report.get("doubts"))
    (step,) = report["steps"]
    assert set(step["results"]) == {"gateway", "ceiling", "echo"}
    for result in step["results"].values():
        assert result["sent"] == RATE * DURATION
        assert result["sent"] == result["ok"] + result["errors"] + result["timeouts"]
        assert result["accounted"] is True
    gateway = step["results"]["gateway"]
    assert gateway["outcomes"] == {"approved": gateway["sent"]}
    assert gateway["errors_by_grpc_status"] == {} and gateway["errors_by_set_code"] == {}
    assert step["results"]["ceiling"]["outcomes"] == {"approved": gateway["sent"]}
    assert step["results"]["echo"]["outcomes"] == {"echoed": gateway["sent"]}


def test_approvals_are_the_holds_in_the_ledger(spawned: dict[str, Any]) -> None:
    ledger = spawned["work"] / "run" / "bank" / "ledger.db"
    with sqlite3.connect(f"file:{ledger}?mode=ro", uri=True) as db:
        (holds,) = db.execute("SELECT count(*) FROM holds").fetchone()
        (cards,) = db.execute("SELECT count(*) FROM card_accounts").fetchone()
    approved = sum(r["outcomes"].get("approved", 0) for r in gateway_results(spawned["report"]))
    assert approved == RATE * DURATION + CARDHOLDERS  # the steps plus the warm-up
    assert holds == approved
    assert cards == CARDHOLDERS
    # The bench held each run to the holds the ledger made in it, read from the ledger.
    for result in gateway_results(spawned["report"]):
        made = result["ledger_holds"]
        assert made["holds_made"] == result["outcomes"]["approved"], result["ledger_holds"]
        assert made["held_amount"] == made["holds_made"] * made["amount"]
        assert result["bank_checked"] is True
    assert all(LATE_SENDS in doubt for doubt in spawned["report"]["doubts"])


def test_the_gateway_s_commits_carry_its_authorizations(spawned: dict[str, Any]) -> None:
    (step,) = spawned["report"]["steps"]
    gateway = step["results"]["gateway"]
    ledger = gateway["ledger_commits"]
    assert ledger["operations"] == gateway["outcomes"]["approved"] == RATE * DURATION
    assert 1 <= ledger["commits"] <= ledger["operations"]
    # The reference services keep no ledger: nothing is read for them.
    assert step["results"]["ceiling"]["ledger_commits"] is None
    assert step["results"]["echo"]["ledger_commits"] is None


def test_every_call_is_counted_by_one_of_the_workers(spawned: dict[str, Any]) -> None:
    report = spawned["report"]
    (step,) = report["steps"]
    calls = step["results"]["gateway"]["worker_calls"]
    # One count per worker of the spawned bank, however its two connections landed.
    assert len(calls) == report["setting"]["workers"] == 2
    assert sum(calls) == RATE * DURATION
    assert sum(report["warmup"]["gateway"]["worker_calls"]) == CARDHOLDERS
    assert step["results"]["ceiling"]["worker_calls"] is None


def test_each_spawned_server_s_cpu_is_split_over_its_workers(spawned: dict[str, Any]) -> None:
    # The bank, the ceiling and the echo each ran two workers: two shares that add up.
    (step,) = spawned["report"]["steps"]
    for service in ("gateway", "ceiling", "echo"):
        shares = step["results"][service]["process_cpu_shares"]
        assert len(shares) == 2, service
        assert sum(shares) == pytest.approx(1.0, abs=0.002)  # each rounded to 0.001


def test_each_spawned_server_s_connections_are_spread_over_its_workers(
    spawned: dict[str, Any],
) -> None:
    # Two channels on two workers: a dial puts both on one worker half the time, and the
    # bench dials again (at most MAX_REDIALS times) until each worker has one.
    report = spawned["report"]
    (step,) = report["steps"]
    runs = [report["warmup"][service] for service in ("gateway", "ceiling", "echo")]
    runs += [step["results"][service] for service in ("gateway", "ceiling", "echo")]
    for run in runs:
        connections = run["connections_per_worker"]
        assert len(connections) == 2 and sum(connections) == 2, run["target"]
        assert min(connections) == 1 or run["redials"] == MAX_REDIALS, run["target"]


def test_a_spawned_bank_runs_the_workers_asked_for(tmp_path: Path) -> None:
    # One worker asked for: the bank's page must name one, not the machine's cores.
    report = tmp_path / "one.json"
    code = run_bench([
        "authorize", "--spawn", "--workdir", str(tmp_path / "run"), "--workers", "1",
        "--rate", "10", "--duration", "1", "--cardholders", "2", "--channels", "2",
        "--metrics", "--json", str(report),
    ])  # fmt: skip
    document = json.loads(report.read_text())
    assert went_right(code, document), (code, document.get("doubts"))
    (step,) = document["steps"]
    assert step["results"]["gateway"]["worker_calls"] == [10]
    assert step["results"]["gateway"]["connections_per_worker"] == [2]
    assert step["results"]["gateway"]["redials"] == 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--target", "127.0.0.1:1", "--bank-config", "setpay.toml", "--metrics"],
         "--metrics are for --spawn"),
        (["--spawn", "--bank-config", "setpay.toml"], "--bank-config is for --target"),
        (["--target", "127.0.0.1:1"], "--target needs --bank-config"),
    ],
)  # fmt: skip
def test_options_of_the_other_bank_are_a_usage_error(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Refused before anything starts or is read: the bank config named does not exist.
    assert run_bench(["authorize", *argv, "--rate", "1"]) == 2
    assert message in capsys.readouterr().err


def test_json_report_has_the_fields(spawned: dict[str, Any]) -> None:
    report = spawned["report"]
    assert report["schema"] == "setpay.bench.authorize/2"
    assert report["setting"]["profile"] == "ec"
    assert report["setting"]["machine"]["cores"] >= 1
    for when in ("before", "after"):
        assert report["setting"]["machine"][f"reference loop ms ({when})"] > 0
    (step,) = report["steps"]
    assert step["mode"] == "open"
    gateway = step["results"]["gateway"]
    for key in ("p50", "p90", "p99", "p99.9", "max", "mean"):
        assert gateway["latency_ms"][key] > 0
    assert (
        gateway["latency_ms"]["p50"] <= gateway["latency_ms"]["p99"] <= gateway["latency_ms"]["max"]
    )
    assert gateway["server_cpu_s"] > 0 and gateway["client_cpu_s"] > 0
    assert gateway["offered_rate"] == RATE
    for name in ("gateway/ceiling", "gateway/echo"):
        assert step["ratios"][name]["throughput"] > 0
        assert step["ratios"][name]["server_cpu"] > 0
    assert set(report["sustained_rate"]) == {"gateway", "ceiling", "echo"}


def test_each_run_reports_the_machine_s_speed_during_it(spawned: dict[str, Any]) -> None:
    (step,) = spawned["report"]["steps"]
    for service, result in step["results"].items():
        speed = result["machine_speed"]
        assert speed is not None, service
        assert speed["readings"] >= 1
        assert 0 < speed["reference_loop_ms_fastest"] <= speed["reference_loop_ms_median"]
        assert speed["reference_loop_ms_median"] <= speed["reference_loop_ms_slowest"]


def test_the_plot_is_drawn(spawned: dict[str, Any]) -> None:
    expected = (round(FIGURE_INCHES[0] * DPI), round(FIGURE_INCHES[1] * DPI))
    assert png_size((spawned["work"] / "latency.png").read_bytes()) == expected


def test_no_output_holds_a_pan(spawned: dict[str, Any]) -> None:
    work: Path = spawned["work"]
    assert pan_like_runs((work / "report.json").read_bytes()) == []
    for log in (work / "run").glob("*.log"):
        assert pan_like_runs(log.read_bytes()) == [], log.name
