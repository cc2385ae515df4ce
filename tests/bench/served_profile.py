"""Where a served worker's Python time goes: py-spy on each gateway worker under load.

Runs ``setpay bench authorize --spawn --workers 2`` in a closed loop and, once the load
has started, records each worker with ``py-spy record --gil --nonblocking`` (so only the
samples where the worker's Python held the GIL: the cryptography and SQLite run with it
released and show up only as the Python around them). Each sample's stack is put in the
first bucket whose frame it holds, in the order of ``BUCKETS``:

- the ledger's writer thread (applying and committing groups);
- opening the AuthReq, opening the PI, building and signing the AuthRes (its
  AuthDecision and capture token included);
- the handler's side of the ledger call (handing the decision to the writer, waiting);
- the rest of the handler (whatever else runs under the gateway's gRPC wrapper);
- gRPC's own Python (its thread pool's too); everything else (the hold sweeper, health
  and metrics threads, the main thread);
- stacks py-spy read without their outer frames (``--nonblocking`` reads a running
  process), which cannot be placed.

With ``SETPAY_LEDGER_SERVICE=1`` the ledger process is recorded too, and named so.

docs/BENCHMARKS.md names these shares for each round that took a profile.

    PYTHONPATH=. .venv/bin/python tests/bench/served_profile.py --profile ec --seconds 20

py-spy comes with the dev extra; it reads other processes' memory, so it needs root or
``kernel.yama.ptrace_scope`` 0.
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

from cli.bench import EXIT_NOT_CLEAN
from gateway.ledger_process import PROCESS_NAME as LEDGER_PROCESS

# (bucket, a frame that puts a stack in it): first match wins, so the writer thread and
# the handler's named steps come before the catch-alls. The AuthDecision (and the capture
# token sealed in it) is built as an argument of ``build_auth_response``, before that
# frame exists, and a decline's or a sale's answer is built under the ledger call: both
# count as the AuthRes. Every handler stack passes through the gateway's gRPC wrapper in
# gateway/server.py; the gateway's other threads (hold sweeper, health, metrics) do not,
# and count as "other".
BUCKETS: tuple[tuple[str, str], ...] = (
    ("ledger writer", "GroupCommitWriter._run "),
    ("AuthReq", "open_auth_request "),
    ("PI", "open_payment_instruction "),
    ("AuthRes", "build_auth_response "),
    ("AuthRes", "decision_for "),
    ("AuthRes", "authorize.<locals>.build "),
    ("handler's ledger call", "_ask_issuer "),
    ("handler's ledger call", "AuthorizationOperations.decline "),
    ("rest of the handler", "(gateway/server.py:"),
    ("gRPC", "(grpc/"),
    ("gRPC", "(concurrent/futures/thread.py:"),
)
OTHER = "other"
# A stack read while the worker changed it (``--nonblocking``) may lack its outer frames
# (or be empty); it cannot be placed, so it is counted apart rather than as "other". One
# torn lower down keeps its outer frames and is placed by them.
PARTIAL = "partial stack"
WHOLE = ("Thread._bootstrap ", "_run_module_as_main ", "<module> ")
LOAD_STARTED = "closed loop x"


def bucket_of(stack: str) -> str:
    """The bucket of one py-spy raw stack (frames joined by ``;``, outermost first)."""
    if not stack.startswith(WHOLE):
        return PARTIAL
    for name, frame in BUCKETS:
        if frame in stack:
            return name
    return OTHER


def shares(lines: Iterable[str]) -> tuple[collections.Counter[str], int]:
    """Samples per bucket over py-spy ``raw`` lines (``stack count``), and their total."""
    counts: collections.Counter[str] = collections.Counter()
    for line in lines:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if count.isdigit():
            counts[bucket_of(stack)] += int(count)
    return counts, sum(counts.values())


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def _is_gateway(pid: int) -> bool:
    try:
        return b"gateway\0serve" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _named(pid: int) -> str:
    """A gateway child as the report names it: the ledger process (forked from the
    supervisor like the workers, with their command line, but renamed) or a worker."""
    try:
        comm = Path(f"/proc/{pid}/comm").read_bytes().strip()
    except OSError:
        comm = b""
    return "ledger process" if comm == LEDGER_PROCESS else "worker"


def _processes(bench_pid: int) -> list[tuple[str, int]]:
    """The spawned gateway's processes under its supervisor, named (``_named``): its
    workers, and the ledger process when ``SETPAY_LEDGER_SERVICE`` runs one."""
    supervisors = [p for p in _children(bench_pid) if _is_gateway(p)]
    children = sorted(w for s in supervisors for w in _children(s) if _is_gateway(w))
    return [(_named(pid), pid) for pid in children]


def _wait_for(log: Path, text: str, process: subprocess.Popen[bytes], limit: float) -> None:
    deadline = time.monotonic() + limit
    while text not in log.read_text(errors="replace"):
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the bench never started its load:\n{log.read_text()[-2000:]}")
        time.sleep(0.25)


def _record(spy: str, pid: int, args: argparse.Namespace, out: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [spy, "record", "--gil", "--nonblocking", "-r", str(args.rate), "-d", str(args.seconds),
         "-f", "raw", "-o", out, "-p", str(pid)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="ec", choices=("ec", "rsa"))
    parser.add_argument("--seconds", type=int, default=20, help="py-spy's recording time")
    parser.add_argument("--rate", type=int, default=100, help="py-spy's samples per second")
    parser.add_argument("--requests", type=int, default=70000, help="AuthReqs prepared")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds after the load starts")
    parser.add_argument(
        "--margin", type=float, default=10.0,
        help="seconds the load is planned to outlast the recording (py-spy's start included)",
    )  # fmt: skip
    args = parser.parse_args()
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        raise SystemExit("py-spy is not installed: `make venv` installs the dev extra")
    with tempfile.TemporaryDirectory(prefix="setpay-profile-") as scratch:
        log = Path(scratch) / "bench.log"
        duration = str(args.seconds + int(args.settle) + args.margin)
        with log.open("wb") as out:
            bench = subprocess.Popen(
                [sys.executable, "-m", "cli.main", "bench", "authorize", "--spawn",
                 "--workers", "2", "--concurrency", "32", "--duration", duration,
                 "--requests", str(args.requests), "--profile", args.profile],
                stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        spies: list[subprocess.Popen[bytes]] = []
        try:
            _wait_for(log, LOAD_STARTED, bench, limit=900)
            time.sleep(args.settle)
            processes = _processes(bench.pid)
            if not any(name == "worker" for name, _ in processes):
                raise SystemExit("found no gateway worker under the bench")
            spies = [_record(spy, pid, args, f"{scratch}/{pid}.raw") for _, pid in processes]
            for spy_process in spies:
                _, err = spy_process.communicate(timeout=args.seconds + 60)
                if spy_process.returncode != 0:
                    raise SystemExit(f"py-spy failed: {err.decode(errors='replace')[-1000:]}")
            status = bench.wait(timeout=900)
        finally:
            for left in [*spies, bench]:
                _stop(left)
        _report(args, [(name, Path(f"{scratch}/{pid}.raw")) for name, pid in processes], log)
    if status not in (0, EXIT_NOT_CLEAN):
        raise SystemExit(f"the bench failed (exit {status}): its figures are not a profile")


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Ends ``process`` if it still runs: asked first, then killed."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _report(args: argparse.Namespace, raws: list[tuple[str, Path]], log: Path) -> None:
    recorded = args.seconds * args.rate
    print(f"served profile, {args.profile}, closed loop x32, 2 workers, py-spy --gil "
          f"{args.rate} Hz for {args.seconds} s per process")  # fmt: skip
    names = [*dict.fromkeys(name for name, _ in BUCKETS), OTHER, PARTIAL]
    workers = 0
    for kind, raw in raws:
        counts, total = shares(raw.read_text().splitlines())
        held = f"{100 * total / recorded:.0f} %" if recorded else "-"
        workers += kind == "worker"
        named = f"worker {workers}" if kind == "worker" else kind
        print(f"  {named}: {total} samples holding the GIL (~{held} of the time)")
        for name in names:
            share = 100 * counts[name] / total if total else 0.0
            print(f"    {name:<24}{share:5.1f} %")
    text = log.read_text(errors="replace")
    row = re.search(r"^ +gateway +[\d,]+ +[\d,]+ .*$", text, re.MULTILINE)
    print(
        "  bench (sent, ok, err, t/o, answers/s, p50, p90, p99, p99.9, max ms, server CPU"
        " us/answer, bench CPU us/request):"
    )
    print("  " + (row.group(0).strip() if row else "no gateway row in the bench's report"))
    # What the bench doubted of its run (a machine too slow, requests run out) holds for
    # the profile taken during it.
    for line in text.splitlines():
        if "DOUBT" in line or "ran out of prepared requests" in line:
            print("  bench: " + line.strip())


if __name__ == "__main__":
    main()
