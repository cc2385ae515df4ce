"""``setpay bench compare``: the medians of JSON reports, by group, read back from the
documents ``setpay bench authorize --json`` writes."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from clients.loadtest import compare
from clients.loadtest.bench import BenchResult, StepResult
from clients.loadtest.load import ClosedLoop, OpenLoop
from clients.loadtest.plan import Plan, Service
from clients.loadtest.report import write_json
from clients.loadtest.speed import Speed
from clients.loadtest.tally import Latency, Tally

from .conftest import run_bench

SAME_SPEED = Speed((24.0, 24.5, 25.0, 24.0, 24.2))
SLOW_SPEED = Speed((40.0, 41.0, 40.5, 40.0, 39.8))


def _tally(
    service: Service,
    throughput: float,
    *,
    rate: float | None = None,
    p99: float = 10.0,
    ok: int | None = None,
    errors: int = 0,
    speed: Speed = SAME_SPEED,
) -> Tally:
    """Ten seconds at ``throughput``, a second of server CPU; ``ok`` below what was sent
    (and not made up by ``errors``) leaves requests unaccounted for."""
    sent = int(throughput * 10)
    return Tally(
        target=str(service), shape="x", offered_rate=rate, duration=10.0, sent=sent,
        ok=sent - errors if ok is None else ok, errors=errors, timeouts=0, throughput=throughput,
        latency=Latency(1.0, 5.0, p99, p99, p99, 2.0), client_cpu_seconds=1.0,
        server_cpu_seconds=1.0, max_in_flight=32, send_lag_max_ms=0.0, exhausted=False,
        speed=speed,
    )  # fmt: skip


def _report(
    path: Path,
    gateway: float,
    ceiling: float | None,
    *,
    p99: float = 20.0,
    ceiling_speed: Speed = SAME_SPEED,
    lost: bool = False,
    open_errors: int = 0,
    doubts: Sequence[str] = (),
) -> Path:
    """A report of a closed loop and the open loop at 80 % that follows it; ``doubts``: the
    run's own (its setting's)."""
    closed = {Service.GATEWAY: _tally(Service.GATEWAY, gateway, ok=0 if lost else None)}
    rate = gateway * 0.8
    following = {
        Service.GATEWAY: _tally(Service.GATEWAY, rate, rate=rate, p99=p99, errors=open_errors)
    }
    if ceiling is not None:
        closed[Service.CEILING] = _tally(Service.CEILING, ceiling, speed=ceiling_speed)
        following[Service.CEILING] = _tally(Service.CEILING, rate, rate=rate, p99=p99 / 4)
    steps = [
        StepResult(ClosedLoop(concurrency=32, duration=10.0), closed),
        StepResult(OpenLoop(rate=rate, duration=10.0), following),
    ]
    plan = Plan(duration=10.0, concurrency=32, load_fraction=0.8)
    write_json(BenchResult(setting={}, plan=plan, steps=steps, doubts=list(doubts)), path)
    return path


def _typed(**fields: object) -> str:
    """A document of the report's schema with ``fields``."""
    return json.dumps({"schema": "setpay.bench.authorize/2", **fields})


def test_a_report_reads_back_as_the_figures_it_was_written_with(tmp_path: Path) -> None:
    run = compare.read_run(_report(tmp_path / "a.json", 800.0, 1600.0, p99=30.0))
    assert run.name == "a.json" and run.clean and not run.doubted
    figures = run.figures
    assert figures["gateway closed-loop answers/s"] == 800.0
    assert figures["ceiling closed-loop answers/s"] == 1600.0
    assert figures[compare.RATIO] == pytest.approx(0.5)
    assert figures["open loop rate/s"] == pytest.approx(640.0)
    assert figures["gateway open-loop p99 ms"] == 30.0
    assert figures["ceiling open-loop p99 ms"] == 7.5
    assert figures["gateway server CPU us/auth"] == pytest.approx(1e6 / 8000)
    assert figures["gateway closed-loop speed ms"] == SAME_SPEED.median
    assert "echo closed-loop answers/s" not in figures  # no echo was run


def test_a_closed_loop_at_two_speeds_is_doubted_and_a_lost_request_unclean(
    tmp_path: Path,
) -> None:
    doubted = compare.read_run(_report(tmp_path / "d.json", 800, 1600, ceiling_speed=SLOW_SPEED))
    # Doubted, its ratio is left out of the undoubted ones; and as any DOUBT made the bench
    # exit 3, the run is not clean either.
    assert doubted.doubted and not doubted.clean
    assert doubted.problems == (
        "DOUBT: closed loop x32: the machine ran at different speeds for the gateway and the "
        "ceiling (reference loop 24.2 against 40.0 ms, medians): repeat the run before using "
        "the ratio",
    )
    # A request unaccounted for in the closed loop: its figures cannot be trusted (the
    # bench's exit 1), and neither can its ratio.
    lost = compare.read_run(_report(tmp_path / "l.json", 800, 1600, lost=True))
    assert not lost.clean and lost.doubted


def test_groups_give_medians_against_the_first_and_leave_doubted_ratios_out(
    tmp_path: Path,
) -> None:
    before = compare.Group("before", [
        compare.read_run(_report(tmp_path / "b1.json", 600, 1200)),
        compare.read_run(_report(tmp_path / "b2.json", 700, 1000)),
        compare.read_run(_report(tmp_path / "b3.json", 800, 1000, ceiling_speed=SLOW_SPEED)),
    ])  # fmt: skip
    after = compare.Group("after", [
        compare.read_run(_report(tmp_path / "a1.json", 900, 1000, ceiling_speed=SLOW_SPEED)),
        compare.read_run(_report(tmp_path / "a2.json", 1000, 1250, ceiling_speed=SLOW_SPEED)),
    ])  # fmt: skip
    text = compare.to_text([before, after])
    before_text, after_text = text.split("after: ")
    assert before_text.startswith("before: median of 3 (b1.json, b2.json, b3.json)")
    assert re.search(r"gateway closed-loop answers/s\s+700.00\s+\(600, 700, 800\)\n", before_text)
    # The ratios 0.5, 0.7, 0.8; the third run's closed loop ran at two speeds.
    assert re.search(r"gateway / ceiling\s+0.700\s+\(0.500, 0.700, 0.800\)\n", before_text)
    assert re.search(
        r"gateway / ceiling, undoubted runs\s+0.600\s+\(0.500, 0.700: 2 of 3 runs\)\n", before_text
    )
    assert re.search(
        r"gateway closed-loop answers/s\s+950.00\s+\(900, 1,000\)\s+1.36 x before\n", after_text
    )
    assert re.search(r"gateway / ceiling, undoubted runs\s+none of 2 runs\n", after_text)
    # The runs at two speeds are named; their figures stay in the medians.
    named = re.findall(r"NOT CLEAN: (\S+) \(DOUBT: closed loop x32: the machine ran at", text)
    assert named == ["b3.json", "a1.json", "a2.json"]


def test_a_ratio_is_shown_as_the_report_stored_it_not_rounded_twice(tmp_path: Path) -> None:
    # 0.4753 is stored as 0.475; with two decimals it would print 0.47, where the text
    # report of the same run says 0.48.
    run = compare.read_run(_report(tmp_path / "h.json", 4753, 10000))
    assert run.figures[compare.RATIO] == 0.475
    text = compare.to_text([compare.Group("half", [run])])
    assert re.search(r"gateway / ceiling\s+0.475\s+\(0.475\)\n", text), text


def test_a_group_without_a_ceiling_shows_no_ratio_and_an_unclean_run_is_named(
    tmp_path: Path,
) -> None:
    group = compare.Group("alone", [
        compare.read_run(_report(tmp_path / "x.json", 500, None)),
        compare.read_run(_report(tmp_path / "y.json", 700, None, lost=True)),
    ])  # fmt: skip
    text = compare.to_text([group])
    assert (
        "NOT CLEAN: y.json (closed loop x32, gateway: requests unaccounted for): its figures"
        " are in the medians below" in text
    )
    assert "gateway / ceiling" not in text and "ceiling closed-loop" not in text
    assert re.search(r"gateway closed-loop answers/s\s+600.00\s+\(500, 700\)\n", text)


def test_a_run_with_errors_is_not_clean_though_every_request_was_accounted_for(
    tmp_path: Path,
) -> None:
    run = compare.read_run(_report(tmp_path / "e.json", 800, 1600, open_errors=12))
    assert not run.clean
    assert run.problems == ("open loop 640/s, gateway: 12 errors",)
    text = compare.to_text([compare.Group("errors", [run])])
    assert "NOT CLEAN: e.json (open loop 640/s, gateway: 12 errors)" in text


def test_a_run_whose_counts_were_not_checked_against_the_bank_is_not_clean(
    tmp_path: Path,
) -> None:
    """The bench exits 3 when the bank was still busy as its page was read; the campaign
    and compare, which judge by the report, must not take that run's figures as clean."""
    path = _report(tmp_path / "d.json", 800, 1600)
    document = json.loads(path.read_text())
    results = document["steps"][1]["results"]["gateway"]
    results["accounting_doubts"] = ["the bank still had 1 call in flight after 10 s"]
    path.write_text(json.dumps(document))
    run = compare.read_run(path)
    assert not run.clean
    assert run.problems == (
        "open loop 640/s, gateway: requests not checked against the bank's page",
    )


TMPFS = "the spawned bank's ledger is on tmpfs (the temporary directory): a commit's fsync"


def test_a_run_whose_report_states_a_doubt_is_not_clean_and_names_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The bench exits 3 for any DOUBT, a ledger on tmpfs as much as a lost request: a
    # run counted clean here would sit among the clean ones a campaign takes medians of.
    path = _report(tmp_path / "t.json", 800, 1600, doubts=[TMPFS])
    run = compare.read_run(path)
    assert not run.clean and not run.doubted  # the closed loop's own ratio stands
    assert run.problems == (f"DOUBT: {TMPFS}",)
    assert run_bench(["compare", str(path)]) == 0
    assert f"NOT CLEAN: t.json (DOUBT: {TMPFS}): its figures are in the medians" in (
        capsys.readouterr().out
    )


def test_a_report_older_than_its_doubts_list_is_read_and_a_doubt_named_once(
    tmp_path: Path,
) -> None:
    path = _report(tmp_path / "o.json", 800, 1600)
    document = json.loads(path.read_text())
    del document["doubts"]
    path.write_text(json.dumps(document))
    assert compare.read_run(path).clean
    # An accounting doubt is in its service-run and in the report's list: named once.
    late = "the bank still had 1 call in flight after 10 s"
    document["steps"][1]["results"]["gateway"]["accounting_doubts"] = [late]
    document["doubts"] = [f"open loop 640/s, gateway: {late}", TMPFS]
    path.write_text(json.dumps(document))
    assert compare.read_run(path).problems == (
        "open loop 640/s, gateway: requests not checked against the bank's page",
        f"DOUBT: {TMPFS}",
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "cannot read a JSON report"),
        (json.dumps({"schema": "something/1", "steps": []}), "not a report of setpay bench"),
        (json.dumps([1, 2]), "not a report of setpay bench"),
        # The right schema, fields of the wrong type: refused, never a traceback.
        (_typed(steps=5), r"not a report \(steps is int, not list\)"),
        (_typed(steps=[7]), r"not a report \(steps\[0\] is int, not dict\)"),
        (
            _typed(steps=[{"mode": "closed", "results": []}]),
            r"not a report \(steps\[0\]\.results is list, not dict\)",
        ),
        (
            _typed(steps=[{"mode": "closed", "ratios": [], "results": {}}]),
            r"not a report \(steps\[0\]\.ratios is list, not dict\)",
        ),
        (
            _typed(steps=[{"mode": "closed", "ratios": {"gateway/ceiling": 2}}]),
            r"not a report \(steps\[0\]\.ratios\.gateway/ceiling is int, not dict\)",
        ),
        (
            _typed(
                steps=[
                    {"mode": "closed", "results": {"gateway": {"clean": False, "errors": "many"}}}
                ]
            ),
            r"not a report \(steps\[0\]\.results\.gateway\.errors is str, not int\)",
        ),
        (
            _typed(steps=[{"mode": "closed", "results": {"gateway": {"throughput": True}}}]),
            r"throughput is bool, not int or float",
        ),
        (
            _typed(steps=[{"mode": "closed", "results": {"gateway": {"clean": "yes"}}}]),
            r"clean is str, not bool",
        ),
        (
            _typed(steps=[{"mode": "open", "results": {"gateway": 3}}]),
            r"results\.gateway is int, not dict",
        ),
        (_typed(steps=[], doubts="one"), r"doubts is str, not list"),
        (_typed(failed="setpay init failed (1)"), r"the run failed, it has no figures \(setpay"),
    ],
)
def test_a_file_that_is_not_a_report_is_refused_by_name(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "odd.json"
    path.write_text(content)
    with pytest.raises(compare.ReportError, match=message) as refused:
        compare.read_run(path)
    assert str(path) in str(refused.value)


def test_the_command_prints_groups_and_refuses_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = _report(tmp_path / "one.json", 800, 1600)
    second = _report(tmp_path / "two.json", 880, 1600)
    assert run_bench(["compare", "--group", "old", str(first), "--group", "new", str(second)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("old: median of 1 (one.json)\n")
    assert re.search(r"gateway closed-loop answers/s\s+880.00\s+\(880\)\s+1.10 x old\n", out)
    assert run_bench(["compare", str(first), str(second)]) == 0
    assert capsys.readouterr().out.startswith("reports: median of 2 (one.json, two.json)\n")
    odd = tmp_path / "odd.json"
    odd.write_text(_typed(steps=[{"mode": "closed", "results": []}]))
    # Bad input: a clear message, nothing printed on stdout; exit status 2 for a usage
    # error, 1 for a report that cannot be read.
    for argv, status, message in [
        (["compare"], 2, "give the JSON reports to compare"),
        (["compare", "--group", "lonely"], 2, "--group lonely: give at least one report"),
        (["compare", str(tmp_path / "missing.json")], 1, "missing.json: cannot read"),
        (["compare", str(odd)], 1, "odd.json: not a report (steps[0].results is list"),
    ]:
        assert run_bench(argv) == status, argv
        captured = capsys.readouterr()
        assert captured.out == "" and message in captured.err, (argv, captured)


def _gateway(document: dict[str, Any], step: int = 0) -> dict[str, Any]:
    result: dict[str, Any] = document["steps"][step]["results"]["gateway"]
    return result


@pytest.mark.parametrize(
    ("spoil", "message"),
    [
        # null where a report has a list or an object: a traceback before.
        (lambda d: d.update(steps=None), r"steps is null, not list"),
        (lambda d: d["steps"][0].update(results=None), r"steps\[0\]\.results is null, not dict"),
        (lambda d: d["steps"][0].update(ratios=None), r"steps\[0\]\.ratios is null, not dict"),
        (
            lambda d: d["steps"][0]["ratios"].update({"gateway/ceiling": None}),
            r"steps\[0\]\.ratios\.gateway/ceiling is null, not dict",
        ),
        (lambda d: d.update(doubts=None), r"doubts is null, not list"),
        (
            lambda d: _gateway(d).update(accounting_doubts=None),
            r"gateway\.accounting_doubts is null, not list",
        ),
        (lambda d: _gateway(d).update(throughput=None), r"throughput is null, not int or float"),
        # Numbers that are not: read as figures before, and into the medians.
        (lambda d: _gateway(d).update(throughput=math.nan), r"throughput is nan, not a finite"),
        (lambda d: _gateway(d).update(throughput=math.inf), r"throughput is inf, not a finite"),
        (
            lambda d: d["steps"][0]["ratios"]["gateway/ceiling"].update(throughput=-math.inf),
            r"ceiling\.throughput is -inf, not a finite number",
        ),
        # Inside latency_ms and machine_speed: dropped silently before.
        (
            lambda d: _gateway(d, 1)["latency_ms"].update(p99="slow"),
            r"steps\[1\]\.results\.gateway\.latency_ms\.p99 is str, not int or float",
        ),
        (
            lambda d: _gateway(d, 1)["latency_ms"].update(p99=math.nan),
            r"gateway\.latency_ms\.p99 is nan, not a finite number",
        ),
        (
            lambda d: _gateway(d, 1)["latency_ms"].update(p99=None),
            r"gateway\.latency_ms\.p99 is null, not int or float",
        ),
        (
            lambda d: _gateway(d)["machine_speed"].update(reference_loop_ms_median=[34.0]),
            r"machine_speed\.reference_loop_ms_median is list, not int or float",
        ),
        (
            lambda d: _gateway(d)["machine_speed"].update(reference_loop_ms_median=True),
            r"machine_speed\.reference_loop_ms_median is bool, not int or float",
        ),
        # A doubt that is not text: a traceback before (unhashable), or printed as it was.
        (lambda d: d.update(doubts=[{"what": "x"}]), r"\(doubts\[0\] is dict, not str\)"),
        (lambda d: d.update(doubts=[TMPFS, ["a"]]), r"\(doubts\[1\] is list, not str\)"),
        (
            lambda d: _gateway(d, 1).update(accounting_doubts=[3]),
            r"steps\[1\]\.results\.gateway\.accounting_doubts\[0\] is int, not str",
        ),
        (
            lambda d: d["steps"][0].update(doubts=[None]),
            r"steps\[0\]\.doubts\[0\] is null, not str",
        ),
        # An integer no float holds: an OverflowError traceback before.
        (
            lambda d: _gateway(d).update(throughput=10**400),
            r"gateway\.throughput is an integer of 401 digits, not a finite number",
        ),
        (
            lambda d: _gateway(d, 1).update(errors=10**400),
            r"steps\[1\]\.results\.gateway\.errors is an integer of 401 digits, not a finite",
        ),
    ],
)
def test_a_report_with_a_null_container_or_a_number_that_is_not_is_refused(
    tmp_path: Path, spoil: Callable[[dict[str, Any]], None], message: str
) -> None:
    path = _report(tmp_path / "spoilt.json", 800.0, 1600.0)
    document = json.loads(path.read_text())
    spoil(document)
    path.write_text(json.dumps(document))  # NaN and Infinity as Python's json writes them
    with pytest.raises(compare.ReportError, match=message) as refused:
        compare.read_run(path)
    assert str(refused.value).startswith(f"{path}: not a report (")


def test_a_number_too_large_for_a_float_is_refused(tmp_path: Path) -> None:
    # 1e999 is valid JSON, and Python reads it as infinity.
    path = _report(tmp_path / "large.json", 800.0, 1600.0)
    path.write_text(path.read_text().replace('"throughput": 800.0', '"throughput": 1e999', 1))
    with pytest.raises(compare.ReportError, match=r"throughput is inf, not a finite number"):
        compare.read_run(path)


@pytest.mark.parametrize(
    ("spoil", "message"),
    [
        (lambda text: text.replace('"doubts": []', '"doubts": [{"what": "x"}]'), "doubts[0] is"),
        (lambda text: text.replace('"throughput": 800.0', '"throughput": 1' + "0" * 400), "401"),
        # Past the digits Python converts (4300): json.loads' ValueError named no file.
        (
            lambda text: text.replace('"throughput": 800.0', '"throughput": 1' + "0" * 5000),
            "cannot read a JSON report (Exceeds the limit",
        ),
    ],
)
def test_the_command_refuses_a_malformed_figure_or_doubt_by_name(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    spoil: Callable[[str], str],
    message: str,
) -> None:
    """Exit 1 and the file named, as for any report it cannot read: never a traceback."""
    path = _report(tmp_path / "spoilt.json", 800.0, 1600.0)
    text = path.read_text()
    assert spoil(text) != text
    path.write_text(spoil(text))
    assert run_bench(["compare", str(path)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"setpay bench: {path}: " in captured.err and message in captured.err, captured.err


def test_a_field_compare_never_reads_is_left_as_it_is(tmp_path: Path) -> None:
    """Only what compare reads is held to its type: a field it never reads (a latency's
    p50, the speed's readings, a ratio's CPU) changes nothing it prints, and is no reason
    to refuse a report."""
    path = _report(tmp_path / "unread.json", 800.0, 1600.0)
    figures = compare.read_run(path).figures
    document = json.loads(path.read_text())
    for step in (0, 1):
        gateway = _gateway(document, step)
        gateway["latency_ms"].update(p50="fast", count=None, mean=math.nan)
        gateway["machine_speed"].update(readings=True, reference_loop_ms_fastest=[1])
    document["steps"][0]["ratios"]["gateway/ceiling"].update(server_cpu="half")
    path.write_text(json.dumps(document))
    run = compare.read_run(path)
    assert run.clean and run.figures == figures


def test_the_nulls_a_bench_writes_are_read_as_figures_not_observed(tmp_path: Path) -> None:
    # A run against a remote target: no server CPU; no latency, no machine speed sampled.
    path = _report(tmp_path / "remote.json", 800.0, None)
    document = json.loads(path.read_text())
    for step in (0, 1):
        _gateway(document, step).update(
            server_cpu_us_per_answer=None, server_cpu_us_per_request=None, latency_ms=None,
            machine_speed=None,
        )  # fmt: skip
    path.write_text(json.dumps(document))
    run = compare.read_run(path)
    assert run.clean
    assert run.figures == {
        "gateway closed-loop answers/s": 800.0, "open loop rate/s": 640.0,
        "gateway open-loop errors": 0.0,
    }  # fmt: skip
