"""The default number of workers honours a cgroup CPU quota (Docker's ``--cpus``), read
from a cgroup tree given as a root: v2's cpu.max, v1's cfs_quota_us over cfs_period_us."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gateway.config import MAX_WORKERS, BankConfig, default_workers
from gateway.cpu_quota import cgroup_cpus

AFFINITY = len(os.sched_getaffinity(0))


def _tree(root: Path, cgroup: str, files: dict[str, str]) -> Path:
    """A fake root: /proc/self/cgroup holding ``cgroup``, and ``files`` under /sys/fs/cgroup."""
    (root / "proc/self").mkdir(parents=True)
    (root / "proc/self/cgroup").write_text(cgroup)
    for name, text in files.items():
        path = root / "sys/fs/cgroup" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


V2_DOCKER = "0::/system.slice/docker-abc.scope\n"
V1_DOCKER = (
    "12:memory:/docker/abc\n3:cpuset:/docker/abc\n2:cpu,cpuacct:/docker/abc\n1:name=systemd:/\n"
)


@pytest.mark.parametrize(
    ("cgroup", "files", "cpus"),
    [
        # v2, --cpus 2 on the container's own cgroup.
        (V2_DOCKER, {"system.slice/docker-abc.scope/cpu.max": "200000 100000\n"}, 2),
        # A fraction of a CPU still needs one worker; 1.5 CPUs are two.
        (V2_DOCKER, {"system.slice/docker-abc.scope/cpu.max": "50000 100000\n"}, 1),
        (V2_DOCKER, {"system.slice/docker-abc.scope/cpu.max": "150000 100000\n"}, 2),
        # In the container's namespace its cgroup is the top of the mount.
        ("0::/\n", {"cpu.max": "300000 100000\n"}, 3),
        # An ancestor's quota limits its descendants: the smallest counts.
        (V2_DOCKER, {"system.slice/cpu.max": "100000 100000\n",
                     "system.slice/docker-abc.scope/cpu.max": "400000 100000\n"}, 1),
        # A hybrid host's v2 hierarchy.
        (V2_DOCKER, {"unified/system.slice/docker-abc.scope/cpu.max": "200000 100000\n"}, 2),
        # v1: the host's path in /proc, the container's cgroup at the top of the mount.
        (V1_DOCKER, {"cpu/cpu.cfs_quota_us": "200000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 2),
        (V1_DOCKER, {"cpu/docker/abc/cpu.cfs_quota_us": "250000\n",
                     "cpu/docker/abc/cpu.cfs_period_us": "100000\n"}, 3),
    ],
)  # fmt: skip
def test_a_quota_is_read(tmp_path: Path, cgroup: str, files: dict[str, str], cpus: int) -> None:
    root = _tree(tmp_path, cgroup, files)
    assert cgroup_cpus(root) == cpus
    assert default_workers(root) == max(1, min(AFFINITY, cpus, MAX_WORKERS))


@pytest.mark.parametrize(
    ("cgroup", "files"),
    [
        (V2_DOCKER, {"system.slice/docker-abc.scope/cpu.max": "max 100000\n"}),
        (V1_DOCKER, {"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}),
        (V2_DOCKER, {}),  # no cpu controller files at all
        (V2_DOCKER, {"system.slice/docker-abc.scope/cpu.max": "garbage\n"}),
        (V2_DOCKER, {"system.slice/docker-abc.scope/cpu.max": "100000 0\n"}),
        (V1_DOCKER, {"cpu/cpu.cfs_quota_us": "200000\n"}),  # its period unreadable
        # A v1 quota on a controller that is not cpu's is not a CPU quota.
        ("2:cpuacct:/\n", {"cpuacct/cpu.cfs_quota_us": "100000\n",
                           "cpuacct/cpu.cfs_period_us": "100000\n"}),
        # A path out of the namespace is never followed above the mount.
        ("0::/../../elsewhere\n", {"../elsewhere/cpu.max": "100000 100000\n"}),
    ],
)  # fmt: skip
def test_no_quota_or_an_unreadable_one_means_none(
    tmp_path: Path, cgroup: str, files: dict[str, str]
) -> None:
    root = _tree(tmp_path, cgroup, files)
    assert cgroup_cpus(root) is None
    assert default_workers(root) == min(AFFINITY, MAX_WORKERS)


def test_without_a_cgroup_file_the_affinity_counts(tmp_path: Path) -> None:
    assert cgroup_cpus(tmp_path) is None
    assert default_workers(tmp_path) == min(AFFINITY, MAX_WORKERS)


def test_this_machines_value_is_sane() -> None:
    quota = cgroup_cpus()
    assert quota is None or quota >= 1
    workers = default_workers()
    assert 1 <= workers <= min(AFFINITY, MAX_WORKERS)
    if quota is not None:
        assert workers <= quota
    assert BankConfig(base_dir=Path()).workers == workers
