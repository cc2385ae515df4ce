"""The report: a text table for people, a JSON document for machines.

Ratios compare the gateway with the reference services run in the same shape:
``throughput`` is the gateway's verified answers per second over the reference's (the
figure that matters in a closed loop, where each service runs as fast as it can), and
``server_cpu_per_answer`` is the reference's server CPU per verified answer over the
gateway's (the share of the gateway's CPU that the reference work accounts for: in an
open loop both keep up with the same rate, and this is what tells them apart).
``server_cpu`` is the same ratio per request sent, as reports of schema 2 gave it before
the per-answer figures were added.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from clients.loadtest.bank_page import WorkerCalls
from clients.loadtest.bench import BenchResult, StepResult
from clients.loadtest.load import ClosedLoop, OpenLoop
from clients.loadtest.plan import Service
from clients.loadtest.tally import LATE_SEND_MS, P999_SAMPLES, Latency, Tally

SCHEMA = "setpay.bench.authorize/2"
# The key of a failed run's report (``write_failure``): why it failed. Such a report has no
# figures, and ``setpay bench compare`` refuses it.
FAILED = "failed"
REFERENCES = (Service.CEILING, Service.ECHO)


def ratios(step: StepResult) -> dict[str, dict[str, float | None]]:
    """gateway/ceiling and gateway/echo ratios of one step (absent services left out)."""
    gateway = step.tallies.get(Service.GATEWAY)
    found: dict[str, dict[str, float | None]] = {}
    if gateway is None:
        return found
    for service in REFERENCES:
        other = step.tallies.get(service)
        if other is None:
            continue
        found[f"gateway/{service}"] = {
            "throughput": gateway.throughput / other.throughput if other.throughput else None,
            "server_cpu": _over(other.server_cpu_per_request_us, gateway.server_cpu_per_request_us),
            "server_cpu_per_answer": _over(
                other.server_cpu_per_answer_us, gateway.server_cpu_per_answer_us
            ),
        }
    return found


def _over(theirs: float | None, mine: float | None) -> float | None:
    return theirs / mine if mine and theirs is not None else None


# A ceiling does part of the gateway's work in the same process model, so in a closed loop
# it cannot honestly answer fewer per second than the gateway. Allow this much for the
# noise of a shared machine before calling the reference run disturbed.
CEILING_SLOWER_TOLERANCE = 0.05
# The machine's median speed may differ this much between the gateway's run and the
# ceiling's before the ratio is doubted. The development machine's two speeds gave medians
# of 17-19 and 30-32 ms in the eighteenth round: this separates them, with room for the
# spread within one speed.
SPEED_DIFFERENCE_TOLERANCE = 0.25
# ... judged only on this many readings a side at least (a 10 s run takes about 20).
SPEED_READINGS_FOR_DOUBT = 5


# An open loop's sends may lag their schedule by this fraction of the p99 bound (at the
# 99th percentile) before the step's p99 is doubted: beyond it, a good part of the p99 it
# reports is the bench's own lateness, not the service's.
SEND_LAG_P99_FRACTION = 0.1
# A closed loop that ran out with fewer requests than this many per caller is doubted: it
# spent much of its interval draining, fewer callers busy. With 32 callers answered in
# 15-25 ms, 2 requests a caller read 15 % below 94 a caller, 9.4 a caller 6 % below.
POOL_PER_CALLER = 10


def doubts(step: StepResult, p99_max_ms: float | None = None) -> list[str]:
    """What makes this step's figures untrustworthy (empty when nothing does); with
    ``p99_max_ms``, an open loop's sends too late for its p99 to be judged against it."""
    found = []
    if isinstance(step.shape, OpenLoop) and p99_max_ms is not None:
        for counted in step.tallies.values():
            if counted.send_lag_p99_ms > p99_max_ms * SEND_LAG_P99_FRACTION:
                found.append(
                    f"the bench sent to the {counted.target} {counted.send_lag_p99_ms:,.1f} ms"
                    f" late at its p99, more than {SEND_LAG_P99_FRACTION:.0%} of the"
                    f" {p99_max_ms:g} ms bound: its CPU was short; the p99 is partly its own"
                )
    if isinstance(step.shape, ClosedLoop):
        found += _small_pools(step.shape, step.tallies.values())
    gateway = step.tallies.get(Service.GATEWAY)
    ceiling = step.tallies.get(Service.CEILING)
    if gateway is None or ceiling is None:
        return found
    # Only a closed loop runs each service as fast as it can: in an open loop both keep up
    # with the same rate, and a ceiling's lower throughput says nothing.
    if isinstance(step.shape, ClosedLoop) and ceiling.throughput < gateway.throughput * (
        1 - CEILING_SLOWER_TOLERANCE
    ):
        found.append(
            f"the ceiling answered {rate_text(ceiling.throughput)}/s, fewer than the gateway's "
            f"{rate_text(gateway.throughput)}/s, though it does only part of the gateway's work: "
            "its run was disturbed; repeat it before using the ratio"
        )
    # A loop of either kind: a core's speed is in every CPU second, and the open loop's
    # ratio is its server CPU per answer (the module docstring). An open loop was once
    # never doubted for it: a gateway at 36 ms and a ceiling at 18 ms gave a clean ratio
    # of CPU per answer that the same machine at one speed would not.
    mine, theirs = gateway.speed, ceiling.speed
    if (
        mine is not None
        and theirs is not None
        and min(len(mine.readings), len(theirs.readings)) >= SPEED_READINGS_FOR_DOUBT
        and max(mine.median, theirs.median)
        > min(mine.median, theirs.median) * (1 + SPEED_DIFFERENCE_TOLERANCE)
    ):
        found.append(
            f"the machine ran at different speeds for the gateway and the ceiling "
            f"(reference loop {mine.median:.1f} against {theirs.median:.1f} ms, medians): "
            "repeat the run before using the ratio"
        )
    return found


def _small_pools(shape: ClosedLoop, tallies: Iterable[Tally]) -> list[str]:
    """The runs of a closed loop that ran out of prepared requests with fewer than
    POOL_PER_CALLER a caller: their throughput is mostly their drain (``load``)."""
    least = POOL_PER_CALLER * shape.concurrency
    return [
        f"the {counted.target} ran out after {counted.sent:,} requests, fewer than "
        f"{POOL_PER_CALLER} for each of its {shape.concurrency} callers: its throughput is "
        f"mostly its drain, not a rate it keeps up; give --requests {least:,} or more"
        for counted in tallies
        if counted.exhausted and counted.sent < least
    ]


# Decimals kept in the JSON: microsecond latencies and CPU, hundredths of a request/s.
# Full float precision would only add noise (and digit runs that look like card numbers).
JSON_DECIMALS = 3


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, JSON_DECIMALS)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def tally_json(counted: Tally) -> dict[str, Any]:
    """One tally as JSON."""
    return dict(
        _rounded(
            {
                "target": counted.target,
                "shape": counted.shape,
                "offered_rate": counted.offered_rate,
                "duration_s": counted.duration,
                "sent": counted.sent,
                "ok": counted.ok,
                "errors": counted.errors,
                "timeouts": counted.timeouts,
                "accounted": counted.accounted,
                "unaccounted": list(counted.unaccounted),
                "accounting_doubts": list(counted.accounting_doubts),
                "clean": counted.clean,
                "throughput": counted.throughput,
                "latency_ms": _latency(counted.latency),
                "latency_ok_ms": _latency(counted.latency_ok),
                "outcomes": counted.outcomes,
                "errors_by_grpc_status": counted.grpc_errors,
                "errors_by_set_code": counted.set_errors,
                "client_cpu_s": counted.client_cpu_seconds,
                "client_cpu_us_per_request": counted.client_cpu_per_request_us,
                "server_cpu_s": counted.server_cpu_seconds,
                "server_cpu_us_per_request": counted.server_cpu_per_request_us,
                "server_cpu_us_per_answer": counted.server_cpu_per_answer_us,
                "max_in_flight": counted.max_in_flight,
                "send_lag_max_ms": counted.send_lag_max_ms,
                "send_lag_p50_ms": counted.send_lag_p50_ms,
                "send_lag_p99_ms": counted.send_lag_p99_ms,
                "late_sends": counted.late_sends,
                "ran_out_of_requests": counted.exhausted,
                "ledger_commits": counted.ledger.as_dict() if counted.ledger else None,
                "ledger_holds": counted.holds.as_dict() if counted.holds else None,
                "bank_checked": counted.bank_checked,
                "worker_calls": list(counted.workers.calls) if counted.workers else None,
                "process_cpu_shares": (
                    list(counted.process_cpu_shares) if counted.process_cpu_shares else None
                ),
                "connections_per_worker": (
                    list(counted.connections) if counted.connections else None
                ),
                "redials": counted.redials,
                "machine_speed": counted.speed.as_dict() if counted.speed else None,
            }
        )
    )


def _latency(latency: Latency | None) -> dict[str, Any] | None:
    return latency.as_dict() if latency else None


def to_json(result: BenchResult) -> dict[str, Any]:
    """The whole run as a JSON-ready dictionary."""
    plan = result.plan
    return {
        "schema": SCHEMA,
        "setting": result.setting,
        "plan": {
            "duration_s": plan.duration,
            "rates": list(plan.rates),
            "concurrency": plan.concurrency,
            "load_fraction": plan.load_fraction,
            "channels": plan.channels,
            "timeout_s": plan.timeout,
            "requests": plan.requests,
            "warmup": plan.warmup,
            "p99_max_ms": plan.p99_max_ms,
        },
        "warmup": {str(s): tally_json(t) for s, t in result.warmup.items()},
        "steps": [
            {
                "shape": step.shape.label,
                "mode": "open" if isinstance(step.shape, OpenLoop) else "closed",
                "results": {str(s): tally_json(t) for s, t in step.tallies.items()},
                "ratios": _rounded(ratios(step)),
                "doubts": doubts(step, plan.p99_max_ms),
            }
            for step in result.steps
        ],
        "sustained_rate": {str(service): result.sustained(service) for service in _swept(result)},
        # Every DOUBT of the run, beside the rate it bears on (the bench exits 3 with any).
        "doubts": all_doubts(result),
        "sweep_doubts": sweep_doubts(result),
    }


def run_status(result: BenchResult, *, failed: int, not_clean: int) -> int:
    """The run's exit status: 0, ``failed`` (a request unaccounted for) or ``not_clean``."""
    counted = [t for step in result.steps for t in step.tallies.values()]
    warmups = list(result.warmup.values())
    if not all(t.accounted for t in counted + warmups):
        return failed
    # The warm-up is no step ("not counted below"): a cold start's timeout leaves it clean.
    # A DOUBT (requests the bank could not check, figures the bench or the machine may have
    # bent) did not fail, nor pass: the report says why.
    passed = all(t.clean for t in counted) and not all_doubts(result)
    return 0 if passed else not_clean


def all_doubts(result: BenchResult) -> list[str]:
    """Every DOUBT the report states: the setting's, each run's accounting, each step's and
    the sweep's (empty when the figures stand as they are)."""
    found = list(result.doubts)
    found += [f"warm-up, {t.target}: {doubt}"
              for t in result.warmup.values() for doubt in t.accounting_doubts]  # fmt: skip
    for step in result.steps:
        found += [f"{step.shape.label}, {t.target}: {doubt}"
                  for t in step.tallies.values() for doubt in t.accounting_doubts]  # fmt: skip
        found += [f"{step.shape.label}: {doubt}" for doubt in doubts(step, result.plan.p99_max_ms)]
    found += sweep_doubts(result)
    return found


def sweep_doubts(result: BenchResult) -> list[str]:
    """The sweep's doubts, of every service swept: the JSON's ``sweep_doubts``, the last of
    ``all_doubts`` and the text's closing DOUBT lines."""
    return [doubt for service in _swept(result) for doubt in result.sweep_doubts(service)]


def _swept(result: BenchResult) -> list[Service]:
    return [
        service
        for service in (Service.GATEWAY, *REFERENCES)
        if any(service in step.tallies for step in result.steps)
    ]


def write_json(result: BenchResult, path: Path) -> None:
    """Write the JSON report."""
    path.write_text(json.dumps(to_json(result), indent=2, sort_keys=False) + "\n")


def write_failure(why: str, json_path: Path | None, plot_path: Path | None) -> None:
    """A failed run's reports: a JSON one that says it failed and why (so that an earlier
    run's is not taken for this one's), and no plot (an earlier run's removed)."""
    if json_path is not None:
        document = {"schema": SCHEMA, FAILED: why, "steps": [], "doubts": []}
        json_path.write_text(json.dumps(document, indent=2) + "\n")
    if plot_path is not None:
        plot_path.unlink(missing_ok=True)


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


# Rates from this many a second on are printed whole; below, to a tenth (and a rate that
# would read 0.0 to two significant digits): 2.5/s must not read "2/s", 0.5/s "0/s".
WHOLE_RATE = 100.0


def rate_text(value: float) -> str:
    """A rate (per second) as the text prints it: the JSON's, to the digits a reader
    compares (``WHOLE_RATE``)."""
    if value >= WHOLE_RATE:
        return f"{value:,.0f}"
    tenths = f"{value:.1f}"
    return f"{value:.2g}" if value > 0 and float(tenths) == 0 else tenths


# Server CPU per verified answer (what an answer costs the server), the bench's per
# request sent (what a send costs the bench).
_HEADER = (
    f"  {'service':<8}{'sent':>8}{'ok':>8}{'err':>6}{'t/o':>6}{'answers/s':>11}"
    f"{'p50':>8}{'p90':>8}{'p99':>8}{'p99.9':>8}{'max':>8}  ms"
    f"{'server CPU':>12}{'bench CPU':>11} us"
)
_UNITS = f"  {'':<91}{'/answer':>12}{'/request':>11}"
# Marks a p99.9 of fewer than tally.P999_SAMPLES values: the maximum itself.
_P999_IS_MAX = "*"


def _row(counted: Tally) -> str:
    lat = counted.latency
    cells = [
        _num(c) for c in ((lat.p50, lat.p90, lat.p99, lat.p999, lat.max) if lat else (None,) * 5)
    ]
    if lat is not None and lat.p999_is_max:
        cells[3] += _P999_IS_MAX
    return (
        f"  {counted.target:<8}{counted.sent:>8,}{counted.ok:>8,}{counted.errors:>6,}"
        f"{counted.timeouts:>6,}{rate_text(counted.throughput):>11}"
        + "".join(f"{c:>8}" for c in cells)
        + f"    {_num(counted.server_cpu_per_answer_us, 0):>12}"
        f"{_num(counted.client_cpu_per_request_us, 0):>11}"
    )


def _details(counted: Tally, channels: int, planned: float) -> list[str]:
    lines = []
    outcomes = ", ".join(f"{k} {v:,}" for k, v in sorted(counted.outcomes.items()))
    lines.append(f"    {counted.target} outcomes: {outcomes or 'none'}")
    failures = [f"gRPC {k} {v:,}" for k, v in sorted(counted.grpc_errors.items())]
    failures += [f"SET {k} {v:,}" for k, v in sorted(counted.set_errors.items())]
    if counted.timeouts:
        failures.append(f"timeouts {counted.timeouts:,}")
    if failures:
        lines.append(f"    {counted.target} errors: {', '.join(failures)}")
    if not counted.accounted:
        why = "; ".join(counted.unaccounted) or "the counts do not add up"
        lines.append(f"    {counted.target}: REQUESTS UNACCOUNTED FOR: {why}")
    lines += [f"    DOUBT: {counted.target}: {doubt}" for doubt in counted.accounting_doubts]
    if counted.latency_ok is not None and counted.ok < counted.sent:
        ok = counted.latency_ok
        lines.append(f"    {counted.target} latency of the {counted.ok:,} verified answers: p50 "
                     f"{_num(ok.p50)}, p99 {_num(ok.p99)}, max {_num(ok.max)} ms")  # fmt: skip
    if counted.exhausted or counted.duration != planned:
        # Its answers/s are over the interval it ran (``load``), not the step's heading.
        ran = f"{counted.duration:.3g} s of the {planned:g} s planned"
        lines.append(
            f"    {counted.target}: ran out of prepared requests after {ran}: its answers/s are "
            "over those (raise --requests)"
            if counted.exhausted
            else f"    {counted.target}: ran {ran}: its answers/s are over those"
        )
    if counted.ledger is not None:
        ledger = counted.ledger
        lines.append(f"    {counted.target} ledger: {ledger.commits:,} commits carrying "
                     f"{ledger.operations:,} operations ({_num(ledger.operations_per_commit, 2)}"
                     f" per commit), {_num(ledger.mean_commit_ms, 2)} ms per commit")  # fmt: skip
    if counted.holds is not None:
        lines.append(f"    {counted.target} ledger holds: {counted.holds.made:,} made for the "
                     f"bench's merchant, {counted.approved:,} approvals (held "
                     f"{counted.holds.total:+,})")  # fmt: skip
    if counted.workers is not None:
        lines.append(f"    {counted.target} workers: {_worker_calls(counted.workers, channels)}")
    if counted.process_cpu_shares is not None:
        shares = " / ".join(f"{s:.0%}" for s in counted.process_cpu_shares)
        lines.append(f"    {counted.target} CPU per child process: {shares}")
    if counted.connections is not None:
        connections = _connections(counted.connections, counted.redials)
        lines.append(f"    {counted.target} connections per worker: {connections}")
    if counted.speed is not None:
        speed = counted.speed
        lines.append(f"    {counted.target} machine speed: reference loop {speed.median:.1f} ms"
                     f" (median of {len(speed.readings)} readings, {speed.fastest:.1f}"
                     f"-{speed.slowest:.1f})")  # fmt: skip
    if counted.late_sends:
        lines.append(f"    {counted.target}: the bench sent {counted.late_sends:,} of "
                     f"{counted.sent:,} requests more than {LATE_SEND_MS:g} ms late (p50 "
                     f"{counted.send_lag_p50_ms:,.1f}, p99 {counted.send_lag_p99_ms:,.1f}, max "
                     f"{counted.send_lag_max_ms:,.1f} ms; its CPU is shared; the lateness is "
                     "inside the latencies)")  # fmt: skip
    return lines


def _worker_calls(workers: WorkerCalls, channels: int) -> str:
    if workers.total == 0:
        # Shares of nothing would print as "0% / 0%", which reads as a figure.
        return (
            f"the bank's page names {len(workers.calls)} workers but counted no call during"
            " this run (is it this bank's page?)"
        )
    calls = " / ".join(f"{c:,}" for c in workers.calls)
    shares = " / ".join(f"{s:.0%}" for s in workers.shares)
    text = f"calls per worker {calls} ({shares})"
    if workers.expected is not None and len(workers.calls) != workers.expected:
        text += (
            f"; the bank's page names {len(workers.calls)} workers, not the"
            f" {workers.expected} this run was told of"
        )
    # Ties between channels go round in turn, so once there were as many calls as
    # channels every connection carried one: a worker without a call had no connection.
    if workers.idle and workers.total >= channels:
        idle = ", ".join(str(i) for i in workers.idle)
        who = f"workers {idle}" if len(workers.idle) > 1 else f"worker {idle}"
        text += (
            f"; {who} answered none: none of the {channels} connections reached it"
            " (SO_REUSEPORT spreads connections, not calls), so this run measured the"
            " others alone; rerun, or raise --channels"
        )
    return text


def _connections(connections: tuple[int, ...], redials: int) -> str:
    text = " / ".join(str(n) for n in connections)
    if redials:
        times = "once" if redials == 1 else f"{redials} times"
        text += f" (dialled again {times}: a worker had none of the connections)"
    idle = [str(i) for i, n in enumerate(connections) if n == 0]
    if idle:
        who = f"workers {', '.join(idle)}" if len(idle) > 1 else f"worker {idle[0]}"
        text += f"; {who} had no connection, so this run measured the others alone"
    return text


def to_text(result: BenchResult) -> str:
    """The report for people: a DOUBT line for each of ``all_doubts``, the ones the exit
    status counts, each beside what it bears on."""
    setting = result.setting
    lines = [
        "setpay bench authorize",
        "  " + ", ".join(f"{k} {v}" for k, v in setting.items() if not isinstance(v, dict)),
    ]
    machine = setting.get("machine")
    if isinstance(machine, dict):
        lines.append("  machine: " + ", ".join(f"{k} {v}" for k, v in machine.items()))
    lines += [f"  DOUBT: {doubt}" for doubt in result.doubts]
    lines.append("  latency is from each request's scheduled send time (open loop) or its "
                 "send (closed loop), over every request")  # fmt: skip
    if result.warmup:
        warm = ", ".join(f"{t.target} {t.ok}/{t.sent} ok" for t in result.warmup.values())
        lines.append(f"  warm-up (one AuthReq per cardholder, not counted below): {warm}")
        lines += [f"  DOUBT: warm-up {t.target}: {doubt}"
                  for t in result.warmup.values() for doubt in t.accounting_doubts]  # fmt: skip
    for step in result.steps:
        lines += ["", f"{step.shape.label}, {step.shape.duration:g} s", _HEADER, _UNITS]
        lines += [_row(t) for t in step.tallies.values()]
        for counted in step.tallies.values():
            lines += _details(counted, result.plan.channels, step.shape.duration)
        for name, values in ratios(step).items():
            reference = name.split("/")[1]
            lines.append(f"    {name}: throughput {_num(values['throughput'], 2)}; server CPU "
                         f"per answer, {reference}/gateway: "
                         f"{_num(values['server_cpu_per_answer'], 2)}")  # fmt: skip
        lines += [f"    DOUBT: {doubt}" for doubt in doubts(step, result.plan.p99_max_ms)]
    if any(t.latency and t.latency.p999_is_max for s in result.steps for t in s.tallies.values()):
        lines += [
            "",
            f"  {_P999_IS_MAX} p99.9 of fewer than {P999_SAMPLES:,} requests: their maximum",
        ]
    sustained = result.sustained()
    if any(isinstance(s.shape, OpenLoop) for s in result.steps):
        lines.append("")
        # A rate of the plan's, as given (2.5/s, never "2/s"), as the sweep's doubts say it.
        best = f"{sustained:,g}/s" if sustained is not None else "none of the rates"
        lines.append(f"highest open-loop rate with p99 <= {result.plan.p99_max_ms:g} ms and "
                     f"no errors: {best}")  # fmt: skip
        lines += [f"DOUBT: {doubt}" for doubt in sweep_doubts(result)]
    return "\n".join(lines) + "\n"
