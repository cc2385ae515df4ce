"""Context switches per request: the gateway, the ceiling and the echo, side by side.

Runs ``setpay bench authorize --spawn --ceiling`` in a closed loop and, every second,
reads the voluntary and involuntary context switches and the CPU time of every process
the bench spawned (``/proc/PID/task/*/status``, ``/proc/PID/stat``). For each service it
keeps the seconds the service was busy (its processes used more than ``BUSY_SHARE`` of
their busiest second, and more than ``IDLE_CORES``), drops the first and last
``EDGE_SECONDS`` of them (start and drain; ``--edge-seconds``), and divides the switches
in the rest by the answers per second the bench reports for that service. Every service
the bench ran gets a row with the busy seconds it kept; a service left with none (a run
too short, or a machine too loaded) is shown with 0 and no figures, never left out.
Before the load it measures what one switch costs here: two threads handing a lock back
and forth, the CPU per hand-off (a wake and a switch each), median of ``PING_RUNS``.

A voluntary switch is a thread that slept (a lock, a condition, a read) and was woken:
the hand-offs between threads and the waits for I/O. docs/BENCHMARKS.md (twenty-fourth
round) says what one costs here and what the gateway's extra ones are.

    PYTHONPATH=. python tests/bench/context_switches.py --profile ec --duration 20
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

# A second is busy when the service's processes used more than this share of their
# busiest second. A closed loop keeps two workers at 1.4-1.5 cores on an idle machine but
# at 0.8-1.0 beside other work, where a fixed 0.8 cores kept too few of the gateway's
# seconds to leave any after the edges; at rest a service uses a few per cent.
BUSY_SHARE = 0.5
# ... and more than this many cores: a service never above it was never under load (its
# start-up second, the most it used otherwise, took about a quarter core here).
IDLE_CORES = 0.3
# Seconds dropped at each end of a service's busy span: connections made, calls drained.
EDGE_SECONDS = 2
SERVICES = {"gateway serve": "gateway", "--mode ceiling": "ceiling", "--mode echo": "echo"}
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
Figures = tuple[float, float, float, int]
"""Voluntary and involuntary switches per second, cores, and the busy seconds counted."""
# The hand-off measurement: round trips per run, and runs (median).
PING_ROUNDS = 20_000
PING_RUNS = 3


def _handoff_cpu_us() -> float:
    """CPU microseconds per hand-off between two threads on locks (one wake and switch)."""
    ping, pong = threading.Lock(), threading.Lock()
    ping.acquire()
    pong.acquire()

    def other() -> None:
        for _ in range(PING_ROUNDS):
            ping.acquire()
            pong.release()

    thread = threading.Thread(target=other)
    thread.start()
    started = time.process_time()
    for _ in range(PING_ROUNDS):
        ping.release()
        pong.acquire()
    spent = time.process_time() - started
    thread.join()
    return spent / (2 * PING_ROUNDS) * 1e6


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        children = (task / "children").read_text().split() if (task / "children").exists() else []
        found.extend(int(c) for c in children)
    return found


def _descendants(root: int) -> list[int]:
    pending, seen = [root], []
    while pending:
        pid = pending.pop()
        seen.append(pid)
        try:
            pending.extend(_children(pid))
        except OSError:
            continue
    return seen[1:]


def _service(pid: int) -> str | None:
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return None
    return next((name for marker, name in SERVICES.items() if marker in command), None)


def _counters(pid: int) -> tuple[int, int, float] | None:
    """Voluntary and involuntary switches over the process's threads, and its CPU seconds."""
    voluntary = involuntary = 0
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            for line in (task / "status").read_text().splitlines():
                if line.startswith("voluntary_ctxt_switches"):
                    voluntary += int(line.split()[1])
                elif line.startswith("nonvoluntary_ctxt_switches"):
                    involuntary += int(line.split()[1])
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError, ValueError):
        return None
    return voluntary, involuntary, (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def _sample(root: int) -> dict[int, tuple[str, int, int, float]]:
    found = {}
    for pid in _descendants(root):
        name, counted = _service(pid), _counters(pid)
        if name is not None and counted is not None:
            found[pid] = (name, *counted)
    return found


def _per_service(
    samples: list[tuple[float, dict[int, tuple[str, int, int, float]]]],
    edge: int = EDGE_SECONDS,
) -> dict[str, Figures | None]:
    """Each service's busy seconds: switches per second and cores (None: no busy second
    left once ``edge`` seconds are dropped at each end)."""
    spans: dict[str, list[tuple[float, int, int, float]]] = {}
    for (t0, before), (t1, after) in itertools.pairwise(samples):
        for name in set(SERVICES.values()):
            common = [p for p in before if p in after and before[p][0] == name]
            if not common:
                continue
            deltas = [tuple(after[p][i] - before[p][i] for i in (1, 2, 3)) for p in common]
            voluntary, involuntary, cpu = (sum(d[i] for d in deltas) for i in range(3))
            spans.setdefault(name, []).append((t1 - t0, voluntary, involuntary, cpu))
    result: dict[str, Figures | None] = {}
    for name, seconds in spans.items():
        peak = max(s[3] / s[0] for s in seconds)
        threshold = max(IDLE_CORES, BUSY_SHARE * peak)
        busy = [s for s in seconds if s[3] > threshold * s[0]]
        busy = busy[edge : len(busy) - edge]
        result[name] = None
        if busy:
            span = sum(s[0] for s in busy)
            result[name] = (sum(s[1] for s in busy) / span, sum(s[2] for s in busy) / span,
                            sum(s[3] for s in busy) / span, len(busy))  # fmt: skip
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="ec")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--requests", type=int, default=30000)
    # Fewer than EDGE_SECONDS only to see the script run in a short test: the figures
    # then include a service's start and drain.
    parser.add_argument("--edge-seconds", type=int, default=EDGE_SECONDS)
    args = parser.parse_args()
    handoff = statistics.median(_handoff_cpu_us() for _ in range(PING_RUNS))
    print(f"one hand-off between two threads: {handoff:.1f} us of CPU (median of {PING_RUNS})")
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "bench.json"
        bench = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "bench", "authorize", "--spawn", "--ceiling",
             "--profile", args.profile, "--workers", str(args.workers),
             "--concurrency", str(args.concurrency), "--duration", str(args.duration),
             "--requests", str(args.requests), "--json", str(report)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        samples = []
        while bench.poll() is None:
            samples.append((time.monotonic(), _sample(bench.pid)))
            time.sleep(1.0)
        if bench.returncode not in (0, 3):  # 3: a step with errors, still accounted for
            print(f"the bench exited {bench.returncode}", file=sys.stderr)
            return 1
        results = json.loads(report.read_text())["steps"][0]["results"]
    print("service   answers/s  cores  voluntary/s  involuntary/s  voluntary/answer  busy s")
    measured, unmeasured = _per_service(samples, args.edge_seconds), []
    for name in sorted(name for name in SERVICES.values() if name in results):
        rate, figures = results[name]["throughput"], measured.get(name)
        if figures is None:
            unmeasured.append(name)
            print(f"{name:8s} {rate:10.0f} {'-':>6s} {'-':>12s} {'-':>14s} {'-':>17s} {0:7d}")
            continue
        voluntary, involuntary, cores, busy = figures
        print(f"{name:8s} {rate:10.0f} {cores:6.2f} {voluntary:12.0f} {involuntary:14.0f}"
              f" {voluntary / rate:17.1f} {busy:7d}")  # fmt: skip
    if unmeasured:
        print(f"no busy second left for {', '.join(unmeasured)} once {args.edge_seconds} "
              "were dropped at each end: run longer, or on a quieter machine")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
