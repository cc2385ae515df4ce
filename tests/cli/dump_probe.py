"""``setpay`` with a probe of its own hardening, read inside each of its processes.

Run as ``python -m tests.cli.dump_probe DIR ENTRY SETPAY-ARGS...``, ENTRY saying how
setpay is run: ``script`` as the installed ``setpay`` console script does (the entry
point its package metadata names, called with ``sys.argv`` set), ``module`` as ``python
-m cli.main`` does, ``call`` as a test calls ``main(argv)`` from inside its own process.
Before ``setpay`` starts, the process gets the core-file limit Docker gives a container
(unlimited, or as high as this user may raise it), so that a limit of 0 afterwards is
setpay's doing and not inherited from the test; ``DIR/.given`` says what it got. Then
each process writes ``DIR/PID``: this one after each fork and at exit, every child
``os.fork`` makes just after its fork. A record holds the process's dumpable flag, asked
of the kernel from inside (``prctl(PR_GET_DUMPABLE)``: no ``/proc`` file shows it, and the
owner of ``/proc/PID/status``, which follows it, is root either way for a root process),
and the core-file line of its ``/proc/self/limits``.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import resource
import runpy
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points
from pathlib import Path

# prctl(2)'s option, from <linux/prctl.h>.
PR_GET_DUMPABLE = 3
CORE_LIMIT_LINE = "Max core file size"
# The file holding the core-file limit line this probe gave setpay.
GIVEN = ".given"
# How the probe runs setpay (ENTRY above).
SCRIPT, MODULE, CALL = "script", "module", "call"


def core_limit_line(pid: int | str) -> str:
    """The core-file line of ``/proc/PID/limits``, its spaces collapsed."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith(CORE_LIMIT_LINE):
            return " ".join(line.split())
    raise AssertionError(f"no {CORE_LIMIT_LINE!r} in /proc/{pid}/limits")


def _record(directory: Path) -> None:
    dumpable = ctypes.CDLL(None).prctl(PR_GET_DUMPABLE, 0, 0, 0, 0)
    pid = os.getpid()
    # Written aside, then renamed: a test reading the directory sees whole records only.
    partial = directory / f".{pid}"
    partial.write_text(f"dumpable={dumpable}\n{core_limit_line('self')}\n")
    partial.replace(directory / str(pid))


def given_limit(directory: Path) -> str:
    """The core-file limit line setpay started with."""
    return (directory / GIVEN).read_text().strip()


def read_records(directory: Path) -> dict[int, tuple[int, str]]:
    """PID -> (dumpable flag, core-file limit line), as each process recorded them."""
    records = {}
    for path in directory.iterdir():
        if path.name.startswith("."):
            continue
        flag, limit = path.read_text().splitlines()
        records[int(path.name)] = (int(flag.removeprefix("dumpable=")), limit)
    return records


def _run_setpay(entry: str, words: list[str]) -> int:
    if entry == CALL:
        from cli.main import main as setpay  # imported here: ``module`` runs it afresh

        return setpay(words)
    sys.argv = ["setpay", *words]
    if entry == MODULE:
        runpy.run_module("cli.main", run_name="__main__", alter_sys=True)
        return 0  # not reached: the module exits with setpay's status
    assert entry == SCRIPT, entry
    [script] = entry_points(group="console_scripts", name="setpay")
    code: int = script.load()()
    return code


def main(argv: Sequence[str]) -> int:
    """Raise the core limit, set the probes, and run ``setpay`` with ``argv[2:]``."""
    directory, entry, words = Path(argv[0]), argv[1], list(argv[2:])
    directory.mkdir(parents=True, exist_ok=True)
    unlimited = resource.RLIM_INFINITY
    try:
        resource.setrlimit(resource.RLIMIT_CORE, (unlimited, unlimited))
    except (ValueError, OSError):  # not root: up to the hard limit this user has
        hard = resource.getrlimit(resource.RLIMIT_CORE)[1]
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_CORE, (hard, hard))

    # What setpay was given: a process that hardened itself before (a test process that
    # ran a hardening setpay ``main``) passes a hard limit of 0 on, which an unprivileged
    # (or capability-less root) user cannot raise.
    (directory / GIVEN).write_text(core_limit_line("self") + "\n")

    def record() -> None:
        _record(directory)

    os.register_at_fork(after_in_parent=record, after_in_child=record)
    atexit.register(record)
    return _run_setpay(entry, words)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
