"""The benchmark scripts of tests/bench run, briefly, and print what they promise.

They are not tests (they print figures, never pass or fail on speed), but docs/BENCHMARKS.md
tells readers to run them, so each runs here for a moment with tiny settings. Without this,
a change to a function a script calls breaks the script unseen until the next campaign: the
ledger's ``decide_once`` gained a required argument and ``ledger_workload.py`` (which
``ledger_pages.py`` and ``ledger_growth.py`` use) failed on its first call, unseen. Only
the figures' presence and their plain sense are asserted, never their size.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cli.bench import EXIT_NOT_CLEAN
from clients.loadtest.bench import BenchResult, StepResult
from clients.loadtest.load import ClosedLoop
from clients.loadtest.plan import Plan, Service
from clients.loadtest.report import write_json
from clients.loadtest.tally import Latency, Tally
from gateway.ledger import PrebuiltApproval

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "tests" / "bench"


def _run(script: str, *args: str, timeout: float = 240, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [sys.executable, str(BENCH / script), *args],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False,
        env=None if env is None else {**os.environ, **env},
    )  # fmt: skip
    assert result.returncode == 0, f"{script} exited {result.returncode}:\n{result.stderr[-3000:]}"
    return result.stdout


def _number(text: str, pattern: str) -> float:
    found = re.search(pattern, text, re.MULTILINE)
    assert found is not None, f"{pattern!r} not in:\n{text}"
    return float(found.group(1).replace(",", ""))


def test_ledger_pages_counts_pages_and_names_their_btrees() -> None:
    out = _run("ledger_pages.py", "--ops", "24", "--warm", "40", "--runs", "1", "--groups", "4",
               "--cards", "5")  # fmt: skip
    for kind in ("random", "ordered"):
        pages = _number(out, rf"^\s+4\s+{kind}\s+\d+\s+([\d.]+)")
        assert pages > 1, out
    by_btree = out.split("by table or index")[1]
    # An authorization writes a request, a PI use, a hold and its journal entry.
    for name in ("requests", "pi_uses", "holds", "transfers", "accounts"):
        assert re.search(rf"^\s+{name}\s+[\d.]+$", by_btree, re.MULTILINE), by_btree
    assert "(free)" not in by_btree


def test_ledger_growth_measures_each_size() -> None:
    out = _run("ledger_growth.py", "--sizes", "0,40", "--cards", "5", "--ops", "16", "--runs", "1")
    # Columns: size, CPU, system, wall, bytes/auth. So few operations can take no CPU
    # tick, so the wall time and the bytes stand for the measurement.
    for size in ("0", "40"):
        wall = _number(out, rf"^\s+{size}\s+\d+\s+\d+\s+(\d+)\s")
        stored = _number(out, rf"^\s+{size}\s+\d+\s+\d+\s+\d+\s+([\d,]+)\s")
        assert wall > 0 and stored > 0, out


def test_ledger_commit_compares_group_commit_with_one_per_operation() -> None:
    out = _run("ledger_commit.py", "--threads", "2", "--ops", "40", "--runs", "1")
    assert _number(out, r"^group commit .*?([\d,]+) authorizations/s") > 0
    assert _number(out, r"^one commit per op .*?([\d,]+) authorizations/s") > 0
    assert _number(out, r"one commit per op: ([\d.]+)x") > 0


@pytest.mark.parametrize("store", ["sqlite", "service"])
def test_ledger_stall_measures_the_wait(store: str) -> None:
    out = _run("ledger_stall.py", "--stall", "0.3", "--runs", "1", "--store", store)
    # The approval does not wait for the slow signer: well under its 300 ms.
    assert _number(out, r"waited ([\d.]+) ms") < 300


def test_hsm_ops_measures_both_backends() -> None:
    out = _run("hsm_ops.py", "--seconds", "0.1", "--runs", "1")
    for backend in ("software", "softhsm"):
        assert _number(out, rf"^sign ecdsa-p256\s+{backend}\s+1\s+([\d,]+)$") > 0


def test_handler_cost_measures_every_handler() -> None:
    out = _run("handler_cost.py", "--requests", "5", "--runs", "1", "--threads", "2")
    for handler in ("gateway", "stub", "sleep", "handoff", "ceiling"):
        assert re.search(rf"^\s+{handler}\s+\d+\s+\(", out, re.MULTILINE), out


def test_context_switches_counts_them_per_answer() -> None:
    # Long enough for each service to be busy for a few one-second samples on a quiet
    # machine, none of them dropped at the ends (a campaign drops two at each end, and
    # needs runs of 20 s: 8 s and 12,000 requests here took 40 s); on a loaded machine it
    # may keep none, and says so rather than drop the service's row.
    out = _run("context_switches.py", "--duration", "3", "--requests", "4000",
               "--edge-seconds", "0")  # fmt: skip
    assert _number(out, r"one hand-off between two threads: ([\d.]+) us") > 0
    for service in ("ceiling", "echo", "gateway"):
        row = re.search(rf"^{service}\s+(\d+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\d+)$", out,
                        re.MULTILINE)  # fmt: skip
        assert row is not None, out
        answers, *figures, busy = row.groups()
        assert int(answers) > 0, out
        if int(busy) == 0:
            assert figures == ["-"] * 4 and "no busy second left for" in out, out
        else:
            cores, voluntary, involuntary, per_answer = map(float, figures)
            assert cores > 0 and voluntary > 0 and involuntary >= 0 and per_answer > 0, out


def _seconds(cores: list[float]) -> list[tuple[float, dict[int, tuple[str, int, int, float]]]]:
    """Samples a second apart of one gateway process using ``cores`` each second, with
    1,000 voluntary and 100 involuntary switches per core-second."""
    samples, used = [(0.0, {7: ("gateway", 0, 0, 0.0)})], 0.0
    for second, busy in enumerate(cores, 1):
        used += busy
        counters = ("gateway", round(used * 1000), round(used * 100), used)
        samples.append((float(second), {7: counters}))
    return samples


def test_context_switches_keeps_a_gateway_slowed_by_other_work() -> None:
    # Seconds as a loaded two-core machine gives them: idle, the start, then the closed
    # loop at 0.74-0.88 cores, then idle again. A fixed threshold of 0.8 cores kept three
    # seconds of eight, none once two were dropped at each end: the gateway's row vanished.
    per_service = _script_module("context_switches.py")._per_service
    loaded = [0.0, 0.22, 0.01, 0.78, 0.85, 0.76, 0.79, 0.88, 0.74, 0.81, 0.77, 0.11, 0.0]
    voluntary, involuntary, cores, busy = per_service(_seconds(loaded))["gateway"]
    # Eight busy seconds, two dropped at each end: 0.76, 0.79, 0.88 and 0.74.
    assert busy == 4
    assert cores == pytest.approx((0.76 + 0.79 + 0.88 + 0.74) / 4)
    assert voluntary == pytest.approx(1000 * cores, rel=0.01)
    assert involuntary == pytest.approx(100 * cores, rel=0.05)
    # A service never loaded keeps no second (its start is not its load), and says so.
    assert per_service(_seconds([0.0, 0.22, 0.01, 0.02, 0.0, 0.01, 0.0]))["gateway"] is None


def test_authorize_campaign_writes_a_report_per_run(tmp_path: Path) -> None:
    out_dir = tmp_path / "campaign"
    # Requests enough that the closed loop does not run dry in its second: a run that does
    # is not clean, and the campaign leaves it out of its medians.
    out = _run("authorize_campaign.py", "--runs", "1", "--duration", "1", "--requests", "3000",
               "--out", str(out_dir))  # fmt: skip
    assert _number(out, r"gateway / ceiling\s+([\d.]+)") > 0
    # A short closed loop may end before the gateway's first reading; the ceiling's lasts.
    assert _number(out, r"ceiling closed-loop speed ms\s+([\d.]+)") > 0
    report = json.loads((out_dir / "ec-1.json").read_text())
    steps = report["steps"]
    assert [step["mode"] for step in steps] == ["closed", "open"], steps
    for step in steps:
        assert sorted(step["results"]) == ["ceiling", "echo", "gateway"], step
        for result in step["results"].values():
            assert result["accounted"] and result["ok"] == result["sent"] > 0, result
    text = (out_dir / "ec-1.txt").read_text()
    assert text.startswith("setpay bench authorize") and "gateway/ceiling: throughput" in text
    # The ratio over undoubted runs counts this run only if its closed loop has no DOUBT.
    closed = steps[0]
    line = re.search(r"gateway / ceiling, undoubted runs\s+(.*)$", out, re.MULTILINE)
    assert line is not None, out
    if closed["doubts"]:
        assert line.group(1) == "none of 1 runs", (line.group(1), closed["doubts"])
    else:
        # The report's own ratio, as stored (3 decimals) and shown.
        stored = closed["ratios"]["gateway/ceiling"]["throughput"]
        assert line.group(1).endswith(": 1 of 1 runs)"), line.group(1)
        assert line.group(1).split()[0] == f"{stored:.3f}", (line.group(1), stored)


def _campaign_report(path: Path, *, errors: int) -> None:
    """A report of a closed loop against the gateway and the ceiling, the gateway's with
    ``errors`` errors."""
    tallies = {}
    for service, throughput, failed in (
        (Service.GATEWAY, 800.0, errors),
        (Service.CEILING, 1600.0, 0),
    ):
        sent = int(throughput * 10)
        tallies[service] = Tally(
            target=str(service), shape="x", offered_rate=None, duration=10.0, sent=sent,
            ok=sent - failed, errors=failed, timeouts=0, throughput=throughput,
            latency=Latency(1.0, 5.0, 9.0, 9.0, 9.0, 2.0), client_cpu_seconds=1.0,
            server_cpu_seconds=1.0, max_in_flight=32, send_lag_max_ms=0.0, exhausted=False,
        )  # fmt: skip
    result = BenchResult({}, Plan(duration=10.0, concurrency=32))
    result.steps.append(StepResult(ClosedLoop(32, 10.0), tallies))
    write_json(result, path)


def test_authorize_campaign_keeps_an_unclean_run_in_its_medians_and_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The bench itself is not run: each "run" writes the report a run would have, and
    # exits as the bench would (3: not clean, the report written).
    campaign = _script_module("authorize_campaign.py")
    written = iter([0, 5, 0])

    def one_run(args: Any, report: Path) -> int:
        errors = next(written)
        _campaign_report(report, errors=errors)
        return EXIT_NOT_CLEAN if errors else 0

    monkeypatch.setattr(campaign, "one_run", one_run)
    monkeypatch.setattr(sys, "argv", ["campaign", "--runs", "3", "--out", str(tmp_path)])
    campaign.main()
    out = capsys.readouterr().out
    assert "run 2 (exit 3): gateway 800/s" in out
    assert "NOT CLEAN (closed loop x32, gateway: 5 errors)" in out
    # Every run in the medians, the unclean one named; then the clean ones alone, labelled.
    assert "every run: median of 3 (ec-1.json, ec-2.json, ec-3.json)" in out
    assert "NOT CLEAN: ec-2.json (closed loop x32, gateway: 5 errors)" in out
    assert "clean runs alone (2 of 3): median of 2 (ec-1.json, ec-3.json)" in out
    written = iter([5, 5])
    monkeypatch.setattr(sys, "argv", ["campaign", "--runs", "2", "--out", str(tmp_path)])
    campaign.main()
    out = capsys.readouterr().out
    assert "every run: median of 2" in out
    assert "none of the 2 runs was clean: no medians over clean runs alone" in out


def _script_module(script: str) -> Any:
    """A benchmark script imported as a module, to test one of its functions."""
    spec = importlib.util.spec_from_file_location(script.removesuffix(".py"), BENCH / script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_handler_cost_stub_answers_with_the_prebuilt_approval_as_the_ledger_does() -> None:
    # The stub once ignored the prebuilt approval and had a second one built and signed,
    # which charged the gateway's own logic with a signature the gateway does not make.
    ledger = _script_module("handler_cost.py").ApprovingLedger()
    built: list[object] = []

    def respond(outcome: object) -> bytes:
        built.append(outcome)
        return b"built afterwards"

    prebuilt = PrebuiltApproval("hold-1", 1000, 978, b"built beforehand")
    asked = {"respond": respond, "hold_id": "hold-1", "amount": 1000, "currency": 978}
    assert ledger.authorize(**asked, prebuilt=prebuilt) == b"built beforehand"
    assert built == []
    # A prebuilt approval for another amount does not answer, nor does none.
    other = PrebuiltApproval("hold-1", 999, 978, b"built beforehand")
    assert ledger.authorize(**asked, prebuilt=other) == b"built afterwards"
    assert ledger.authorize(**asked, prebuilt=None) == b"built afterwards"
    assert len(built) == 2


# A report's own doubt, as the bench lists it at the top of its JSON.
DOUBT = "the machine changed speed"


def test_authorize_campaign_keeps_its_bank_on_disk_and_prints_each_run_s_doubts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A bank in the temporary directory (a tmpfs on many hosts) would be doubted every run.
    campaign = _script_module("authorize_campaign.py")
    workdirs: list[Path] = []

    def run(argv: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        workdir = Path(argv[argv.index("--workdir") + 1])
        workdirs.append(workdir)
        workdir.mkdir(parents=True)  # as the bench makes it
        report = Path(argv[argv.index("--json") + 1])
        _campaign_report(report, errors=0)
        document = json.loads(report.read_text())
        document["doubts"] = [DOUBT]
        report.write_text(json.dumps(document))
        return subprocess.CompletedProcess(argv, EXIT_NOT_CLEAN, "setpay bench authorize\n", "")

    monkeypatch.setattr(campaign.subprocess, "run", run)
    monkeypatch.setattr(sys, "argv", ["campaign", "--runs", "1", "--out", str(tmp_path)])
    campaign.main()
    out = capsys.readouterr().out
    assert "run 1 (exit 3): gateway 800/s" in out and "; NOT CLEAN\n" in out, out
    assert f"\n    DOUBT: {DOUBT}\n" in out, out
    (workdir,) = workdirs
    assert workdir.parent.name == "build" and not workdir.exists()


def test_served_profile_places_each_stack_in_its_first_bucket() -> None:
    profile = _script_module("served_profile.py")
    base = "Thread._bootstrap (threading.py:1002);_worker (concurrent/futures/thread.py:83)"
    handler = f"{base};handle (gateway/server.py:166);authorize (gateway/authorize.py:152)"
    ledger_call = f"{handler};_ask_issuer (gateway/authorize.py:181)"
    stacks = {
        f"{handler};open_auth_request (setcore/x.py:1);verify (grpc/_x.py:2)": "AuthReq",
        f"{ledger_call};put (queue.py:150)": "handler's ledger call",
        # A decline's answer, built once the ledger decided, under the ledger call.
        f"{ledger_call};authorize.<locals>.build (gateway/authorize.py:122)": "AuthRes",
        f"{handler};decision_for (gateway/authorize.py:66);_cap_token (g.py:1)": "AuthRes",
        f"{handler};new_hold_id (gateway/ledger/identifiers.py:9)": "rest of the handler",
        "Thread._bootstrap (threading.py:1002);GroupCommitWriter._run (g.py:1);"
        "open_auth_request (s.py:1)": "ledger writer",
        f"{base};_serve (grpc/_server.py:1314)": "gRPC",
        "Thread._bootstrap (threading.py:1002);Thread.run (threading.py:982)": "other",
        "Thread._bootstrap (threading.py:1002);HoldSweeper._run (gateway/ledger/sweeper.py:9)": (
            "other"
        ),
        "_run_module_as_main (<frozen runpy>:198);main (cli/main.py:1)": "other",
        "seal_signed (setcore/link.py:69);seal (setcore/envelope.py:157)": "partial stack",
        "": "partial stack",
    }
    for stack, bucket in stacks.items():
        assert profile.bucket_of(stack) == bucket, stack
    lines = [f"{stack} 3" for stack in stacks] + ["not a sample line"]
    counts, total = profile.shares(lines)
    assert total == 3 * len(stacks)
    assert counts["handler's ledger call"] == 3 and counts["AuthRes"] == 6


@pytest.mark.parametrize(
    "ledger_process", [False, True], ids=["writer-per-worker", "ledger-process"]
)
def test_served_profile_records_both_workers(ledger_process: bool) -> None:
    # Enough prepared requests that the load outlasts the settling and the recording on a
    # fast host (about 1,000 answers/s here): a worker gone before py-spy attaches fails.
    # The load is planned 3 s past the recording, not 10: on a slower host the requests
    # outlast that, and the load ran its 13 s for nothing.
    out = _run("served_profile.py", "--seconds", "2", "--rate", "50", "--requests", "8000",
               "--settle", "1", "--margin", "3",
               env={"SETPAY_LEDGER_SERVICE": "1" if ledger_process else "0"})  # fmt: skip
    blocks = re.split(r"^  (?=worker \d|ledger process)", out, flags=re.MULTILINE)[1:]
    named = [block.split(":")[0] for block in blocks]
    assert named == ["ledger process"] * ledger_process + ["worker 1", "worker 2"], out
    for block in blocks:
        if block.startswith("worker"):
            assert int(block.split(": ")[1].split(" ")[0]) > 0, out
        shares = [float(s) for s in re.findall(r"^ {4}\S.*?([\d.]+) %$", block, re.MULTILINE)]
        assert len(shares) == 9 and (sum(shares) == 0 or abs(sum(shares) - 100) < 1), out
    assert re.search(r"^ +gateway +[\d,]+ +[\d,]+ +0 +0 ", out, re.MULTILINE), out
