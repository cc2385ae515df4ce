"""The CPUs a cgroup CPU quota gives this process, for the default number of workers
(``gateway.config.default_workers``).

A quota (Docker's ``--cpus``, a Kubernetes CPU limit) is not in sched_getaffinity: on a
64-core host a bank given 2 CPUs would start 64 workers to contend for them. The kernel
shows this process's cgroups in ``/proc/self/cgroup``; the quota of each, and of each
ancestor, is read from the cgroup mount: v2's ``cpu.max``, v1's ``cpu.cfs_quota_us`` over
``cpu.cfs_period_us``. Nothing here raises: a quota that cannot be read is none.
"""

from __future__ import annotations

import math
from pathlib import Path

# Where the kernel shows this process's cgroups (``/proc`` and ``/sys/fs/cgroup`` below
# it); a test gives a tree of its own.
CGROUP_ROOT = Path("/")


def _quota(directory: Path, v2: bool) -> int | None:
    """The CPUs one cgroup's quota allows, rounded up; None: no quota, or unreadable."""
    try:
        if v2:  # "QUOTA PERIOD", QUOTA "max" for none
            quota, period = (directory / "cpu.max").read_text().split()
        else:  # a quota of -1 is none
            files = ("cpu.cfs_quota_us", "cpu.cfs_period_us")
            quota, period = ((directory / name).read_text() for name in files)
        cpus = math.ceil(int(quota) / int(period))
    except (OSError, ValueError, ZeroDivisionError):
        return None
    return cpus if cpus > 0 else None


def cgroup_cpus(root: Path = CGROUP_ROOT) -> int | None:
    """The fewest CPUs a cgroup CPU quota (v2 or v1) of this process or of an ancestor
    allows, rounded up; None when none is set or readable."""
    try:
        lines = (root / "proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    found: list[int] = []
    for line in lines:
        _, controllers, own = [*line.split(":", 2), "", ""][:3]
        v2 = controllers == ""
        if not v2 and "cpu" not in controllers.split(","):
            continue
        # A container's mount shows its own cgroup at the top, under a path that is the
        # host's ("/docker/ID"): every ancestor is tried, so is the top.
        parts = () if ".." in own else Path(own).parts[1:]
        for mount in ("", "unified") if v2 else ("cpu",):  # unified: a hybrid host's v2
            for depth in range(len(parts) + 1):
                cpus = _quota(root / "sys/fs/cgroup" / mount / Path(*parts[:depth]), v2)
                found += [] if cpus is None else [cpus]
    return min(found, default=None)
