"""Benchmark campaign: the same ``setpay bench authorize`` run N times, and its medians.

    .venv/bin/python tests/bench/authorize_campaign.py [--runs 3] [--profile ec]
        [--keys URI] [--workers 2] [--duration 10] [--requests 15000] [--out DIR]

Used for the medians in docs/BENCHMARKS.md.

Each run is a full ``setpay bench authorize --spawn --ceiling`` (a fresh bank, the
gateway, the ceiling and the echo, a closed loop then an open loop at 80 % of the
gateway's closed-loop throughput), its JSON and text reports kept in ``--out``. On this
shared two-core machine single runs differ by tens of per cent, so the figures worth
quoting are the medians this prints, with every run's value beside them. The ratio is
printed a second time over the runs whose closed loop the bench did not doubt (a DOUBT
line in its report: the machine changed speed between the gateway's run and the
ceiling's, or the ceiling's run was disturbed). A run whose report is not clean (a
request not accounted for) stops the campaign.

A SoftHSM bank needs a fresh token per run (``setpay init`` refuses a token that already
holds a bank): give ``--keys`` with ``{token}`` in it and a token is made per run in a
throwaway SOFTHSM2_CONF, e.g.
``--keys 'pkcs11:module=/usr/lib/softhsm/libsofthsm2.so;token={token};pin-source=file:{pin}'``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

SOFTHSM_SO_PIN = "so-bench-1357"
SOFTHSM_PIN = "bench-pin-2468"


def _softhsm_env(directory: Path) -> tuple[dict[str, str], dict[str, str]]:
    """A throwaway SoftHSM configuration with one initialized token."""
    tokens = directory / "tokens"
    tokens.mkdir()
    conf = directory / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\n")
    env = dict(os.environ, SOFTHSM2_CONF=str(conf))
    subprocess.run(
        ["softhsm2-util", "--init-token", "--free", "--label", "bench",
         "--so-pin", SOFTHSM_SO_PIN, "--pin", SOFTHSM_PIN],
        env=env, check=True, capture_output=True,
    )  # fmt: skip
    pin = directory / "pin"
    pin.write_text(SOFTHSM_PIN + "\n")
    pin.chmod(0o600)
    return env, {"token": "bench", "pin": str(pin)}


def one_run(args: argparse.Namespace, report: Path) -> dict[str, Any]:
    """One bench invocation; its JSON report."""
    argv = [
        sys.executable, "-m", "cli.main", "bench", "authorize", "--spawn", "--ceiling",
        "--workers", str(args.workers), "--duration", str(args.duration),
        "--requests", str(args.requests), "--profile", args.profile, "--json", str(report),
    ]  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="setpay-campaign-") as tmp:
        env = dict(os.environ)
        if args.keys:
            keys = args.keys
            if "{token}" in keys:
                env, names = _softhsm_env(Path(tmp))
                keys = keys.format(**names)
            argv += ["--keys", keys]
        done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    report.with_suffix(".txt").write_text(done.stdout)  # the text report, for people
    if done.returncode != 0:
        raise SystemExit(f"bench run failed ({done.returncode}):\n{done.stderr[-2000:]}")
    data: dict[str, Any] = json.loads(report.read_text())
    return data


def _steps(data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    closed = next(s for s in data["steps"] if s["mode"] == "closed")
    following = next(s for s in data["steps"] if s["mode"] != "closed")
    return closed, following


def _undoubted_line(ratios: list[float], runs: int) -> str:
    """The median gateway/ceiling ratio of the runs whose closed loop the bench did not
    doubt (the machine kept its speed, the ceiling was not disturbed)."""
    name = "gateway / ceiling, undoubted runs"
    if not ratios:
        return f"  {name:32s}       none of {runs} runs"
    shown = ", ".join(f"{r:.2f}" for r in ratios)
    median = statistics.median(ratios)
    return f"  {name:32s} {median:>10,.2f}   ({shown}: {len(ratios)} of {runs} runs)"


def main() -> None:
    """Run the campaign and print the medians."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--profile", choices=("ec", "rsa"), default="ec")
    parser.add_argument("--keys", default=None)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--requests", type=int, default=15000)
    parser.add_argument("--out", type=Path, default=None, help="report directory (a new one)")
    args = parser.parse_args()
    if args.out is None:
        args.out = Path(tempfile.mkdtemp(prefix="setpay-campaign-"))
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"JSON reports in {args.out}", flush=True)
    rows: dict[str, list[float]] = {}
    undoubted: list[float] = []
    for run in range(1, args.runs + 1):
        data = one_run(args, args.out / f"{args.profile}-{run}.json")
        closed_step, following_step = _steps(data)
        closed, following = closed_step["results"], following_step["results"]
        for results in (closed, following):
            for service, result in results.items():
                if not result["accounted"]:
                    raise SystemExit(f"run {run}: {service} did not account for every request")
        values = {
            "gateway closed-loop answers/s": closed["gateway"]["throughput"],
            "ceiling closed-loop answers/s": closed["ceiling"]["throughput"],
            "echo closed-loop answers/s": closed["echo"]["throughput"],
            "gateway / ceiling": closed["gateway"]["throughput"] / closed["ceiling"]["throughput"],
            "gateway server CPU us/auth": closed["gateway"]["server_cpu_us_per_request"],
            "open loop rate/s": following["gateway"]["offered_rate"],
            "gateway open-loop p99 ms": following["gateway"]["latency_ms"]["p99"],
            "ceiling open-loop p99 ms": following["ceiling"]["latency_ms"]["p99"],
        }
        # The machine's speed in the closed loops (the median reading, ms per million
        # additions; lower is faster), when the bench sampled it.
        for service in ("gateway", "ceiling"):
            speed = closed[service].get("machine_speed")
            if speed is not None:
                values[f"{service} closed-loop speed ms"] = speed["reference_loop_ms_median"]
        for name, value in values.items():
            rows.setdefault(name, []).append(float(value))
        doubted = bool(closed_step["doubts"])
        if not doubted:
            undoubted.append(values["gateway / ceiling"])
        print(f"run {run}: gateway {values['gateway closed-loop answers/s']:.0f}/s, "
              f"ratio {values['gateway / ceiling']:.2f}{' (doubted)' if doubted else ''}",
              flush=True)  # fmt: skip
    print(f"\n{args.profile}, keys {args.keys or 'software'}, {args.workers} workers, "
          f"median of {args.runs} (runs)")  # fmt: skip
    for name, values in rows.items():
        shown = ", ".join(f"{v:,.2f}" if v < 10 else f"{v:,.0f}" for v in values)
        median = statistics.median(values)
        print(f"  {name:32s} {median:>10,.2f}   ({shown})")
    print(_undoubted_line(undoubted, args.runs))


if __name__ == "__main__":
    main()
