"""What a bench report says about the machine it ran on.

Figures from one machine mean little on another, and some of what makes them differ is
not in the CPU model: on a virtual machine, how an idle vCPU waits decides what every
wake-up costs. With the ``haltpoll`` cpuidle driver and ``guest_halt_poll_ns`` at 0, each
idle moment halts the vCPU (a VM exit) and the next request pays to get it back; the
kernel's default polls up to 200 us first. So the report names the idle driver, and the
halt-poll limit where there is one, beside the cores, CPU and versions.

Nor does the CPU model say how fast the machine runs when the bench measures: a host
that shares its cores may give a vCPU half its usual speed for hours (the development
machine did in the seventeenth round). So the report also times a fixed pure-Python loop
before and after the run (``reference_loop_ms``): figures from two days compare only
with it beside them.

Nor does the machine say what a durable commit costs: the filesystem under the ledger
does. On tmpfs or ramfs an fsync returns at once (the reviewer timed 0.011 ms a commit
against ext4's 2.8 ms on the development machine), so a ledger there makes the gateway
look faster than any bank that keeps its ledger. The report names the filesystem type of
the ledger's directory (``filesystem_of``, from the mount table).

Everything else here is read from ``/proc`` and ``/sys`` and is optional: a file that is
missing or unreadable leaves its entry out (or "unknown" for the CPU model).
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import statistics
import time
from collections.abc import Callable
from pathlib import Path

# Filesystems kept in memory: a commit's fsync there writes nothing to a disk.
MEMORY_FILESYSTEMS = frozenset({"tmpfs", "ramfs"})
# The Python packages whose versions change the figures most.
PACKAGES = ("grpcio", "cryptography", "protobuf")
# The reference loop: this many additions, timed this many times, the median reported in
# milliseconds per million. On the development machine it took 22-34 ms within a few
# minutes of the seventeenth round.
REFERENCE_ITERATIONS = 1_000_000
REFERENCE_RUNS = 3
# How the kernel writes a byte of a mount point that would break the table's fields
# (space, tab, newline, backslash): a backslash and three octal digits. Every other byte,
# UTF-8 or not, is written as itself.
_MOUNT_ESCAPE = re.compile(rb"\\([0-7]{3})")


def additions_ms(iterations: int, clock: Callable[[], float] = time.perf_counter) -> float:
    """``iterations`` additions in a Python loop, timed by ``clock``, in ms per million."""
    started = clock()
    total = 0
    for i in range(iterations):
        total += i
    return (clock() - started) * 1000.0 * 1_000_000 / iterations


def reference_loop_ms(iterations: int = REFERENCE_ITERATIONS, runs: int = REFERENCE_RUNS) -> float:
    """How long this machine takes now for a million additions in a Python loop, in ms
    (the median of ``runs`` timings of ``iterations``)."""
    return statistics.median(additions_ms(iterations) for _ in range(runs))


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def cpu_model(proc: Path = Path("/proc")) -> str:
    """The first CPU's model name, or "unknown"."""
    for line in (_read(proc / "cpuinfo") or "").splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def cpu_idle(sys_root: Path = Path("/sys")) -> str | None:
    """The cpuidle driver, with the guest halt-poll limit under ``haltpoll``; None if the
    kernel does not say."""
    driver = _read(sys_root / "devices/system/cpu/cpuidle/current_driver")
    if not driver:
        return None
    if driver == "haltpoll":
        poll_ns = _read(sys_root / "module/haltpoll/parameters/guest_halt_poll_ns")
        if poll_ns is not None and poll_ns.isdigit():
            return f"{driver} (guest_halt_poll_ns {poll_ns})"
    return driver


def describe(proc: Path = Path("/proc"), sys_root: Path = Path("/sys")) -> dict[str, object]:
    """The machine, for a report's ``machine`` entry."""
    described: dict[str, object] = {
        "cores": os.cpu_count(),
        "cpu": cpu_model(proc),
        "kernel": platform.release(),
    }
    idle = cpu_idle(sys_root)
    if idle is not None:
        described["cpuidle"] = idle
    described["python"] = platform.python_version()
    for name in PACKAGES:
        described[name] = importlib.metadata.version(name)
    return described


def filesystem_of(path: Path, proc: Path = Path("/proc")) -> str | None:
    """The type of the filesystem ``path`` lies on (its longest mount point that contains
    it, in this process's mount table); None if the table cannot be read."""
    try:
        table = (proc / "self" / "mountinfo").read_bytes()
    except OSError:
        return None
    target = path.resolve()
    found, depth = None, -1
    for line in table.splitlines():
        fields, _, after = line.partition(b" - ")
        parts = fields.split()
        if len(parts) < 5 or not after.split():
            continue
        point = mount_point(parts[4])
        if (target == point or point in target.parents) and len(point.parts) >= depth:
            found, depth = os.fsdecode(after.split()[0]), len(point.parts)
    return found


def mount_point(field: bytes) -> Path:
    """A mount point as the mount table writes it: its octal escapes undone, in bytes,
    then decoded as the filesystem encoding decodes any path (``os.fsdecode``)."""
    return Path(os.fsdecode(_MOUNT_ESCAPE.sub(lambda m: bytes([int(m[1], 8)]), field)))
