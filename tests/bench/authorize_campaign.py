"""Benchmark campaign: the same ``setpay bench authorize`` run N times, and its medians.

    .venv/bin/python tests/bench/authorize_campaign.py [--runs 3] [--profile ec]
        [--keys URI] [--workers 2] [--duration 10] [--requests 15000] [--out DIR]

Used for the medians in docs/BENCHMARKS.md. The summary is ``setpay bench compare``'s
(``clients.loadtest.compare``) over the run's reports.

Each run is a full ``setpay bench authorize --spawn --ceiling`` (a fresh bank, the
gateway, the ceiling and the echo, a closed loop then an open loop at 80 % of the
gateway's closed-loop throughput), its JSON and text reports kept in ``--out``. On this
shared two-core machine single runs differ by tens of per cent, so the figures worth
quoting are the medians this prints, with every run's value beside them. The ratio is
printed a second time over the runs whose closed loop the bench did not doubt (a DOUBT
line in its report: the machine changed speed between the gateway's run and the
ceiling's, or the ceiling's run was disturbed). A run that failed, or left a request
unaccounted for (the bench's exit status 1), stops the campaign. A run that was not
clean or that its report doubts (errors, timeouts, a closed loop that ran out of
requests, requests not checked against the bank: exit status 3, recorded beside the
run) stays in the medians and is named NOT CLEAN with what went wrong, as ``setpay bench
compare`` does, each DOUBT of its report on a line of its own: leaving it out would
flatter exactly the figures that went wrong (an open-loop p99 is worst in the runs that
had timeouts). The medians are then printed a second time over the clean runs alone,
labelled so.

Each run's bank is kept in a directory of the repository's ``build/`` (``--workdir``),
removed after the run: the bench's own default, the temporary directory, is a tmpfs on
many hosts, where a ledger's fsync costs nothing and every run would be doubted.

A SoftHSM bank needs a fresh token per run (``setpay init`` refuses a token that already
holds a bank): give ``--keys`` with ``{token}`` in it and a token is made per run in a
throwaway SOFTHSM2_CONF, e.g.
``--keys 'pkcs11:module=/usr/lib/softhsm/libsofthsm2.so;token={token};pin-source=file:{pin}'``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from cli.bench import EXIT_NOT_CLEAN
from clients.loadtest import compare

SOFTHSM_SO_PIN = "so-bench-1357"
SOFTHSM_PIN = "bench-pin-2468"
# Where each run's bank is kept: on the repository's disk (the module docstring).
BANK_DIRECTORY = Path(__file__).resolve().parents[2] / "build" / "bench-campaign"


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


def one_run(args: argparse.Namespace, report: Path) -> int:
    """One bench invocation, its JSON report written to ``report``; its exit status."""
    shutil.rmtree(BANK_DIRECTORY, ignore_errors=True)  # a run stopped half-way left it
    argv = [
        sys.executable, "-m", "cli.main", "bench", "authorize", "--spawn", "--ceiling",
        "--workers", str(args.workers), "--duration", str(args.duration),
        "--requests", str(args.requests), "--profile", args.profile, "--json", str(report),
        "--workdir", str(BANK_DIRECTORY),
    ]  # fmt: skip
    try:
        done = _bench(args, argv)
    finally:
        shutil.rmtree(BANK_DIRECTORY, ignore_errors=True)
    report.with_suffix(".txt").write_text(done.stdout)  # the text report, for people
    if done.returncode not in (0, EXIT_NOT_CLEAN):  # an unclean run is judged by its report
        raise SystemExit(f"bench run failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return done.returncode


def _bench(args: argparse.Namespace, argv: list[str]) -> subprocess.CompletedProcess[str]:
    """The bench run ``argv`` asks, with a SoftHSM token of its own if ``--keys`` wants one."""
    with tempfile.TemporaryDirectory(prefix="setpay-campaign-") as tmp:
        env = dict(os.environ)
        if args.keys:
            keys = args.keys
            if "{token}" in keys:
                env, names = _softhsm_env(Path(tmp))
                keys = keys.format(**names)
            argv += ["--keys", keys]
        return subprocess.run(argv, env=env, capture_output=True, text=True, check=False)


def report_doubts(report: Path) -> list[str]:
    """The DOUBTs a report states for the whole run (its top-level ``doubts``)."""
    found = json.loads(report.read_text()).get("doubts")
    return [str(doubt) for doubt in found] if isinstance(found, list) else []


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
    runs: list[compare.Run] = []
    for number in range(1, args.runs + 1):
        report = args.out / f"{args.profile}-{number}.json"
        status = one_run(args, report)
        run = compare.read_run(report)
        runs.append(run)
        figures = run.figures
        doubts = report_doubts(report)
        # The report's DOUBTs get lines of their own below, whether or not the comparison
        # names them among its problems too.
        problems = [p for p in run.problems if not p.startswith("DOUBT: ")]
        not_clean = f" ({'; '.join(problems)})" if problems else ""
        print(f"run {number} (exit {status}): gateway "
              f"{figures.get('gateway closed-loop answers/s', 0.0):.0f}/s, ratio "
              f"{figures.get(compare.RATIO, 0.0):.2f}{' (doubted)' if run.doubted else ''}"
              + ("" if run.clean and not doubts else f"; NOT CLEAN{not_clean}"),
              flush=True)  # fmt: skip
        for doubt in doubts:
            print(f"    DOUBT: {doubt}", flush=True)
    label = f"{args.profile}, keys {args.keys or 'software'}, {args.workers} workers"
    print("\n" + compare.to_text([compare.Group(f"{label}, every run", runs)]), end="")
    clean = [run for run in runs if run.clean]
    if len(clean) == len(runs):
        return
    if not clean:
        print(f"\nnone of the {len(runs)} runs was clean: no medians over clean runs alone")
        return
    group = compare.Group(f"{label}, clean runs alone ({len(clean)} of {len(runs)})", clean)
    print("\n" + compare.to_text([group]), end="")


if __name__ == "__main__":
    main()
