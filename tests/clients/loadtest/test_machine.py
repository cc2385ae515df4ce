"""The machine description in a bench report, read from a /proc and /sys laid out here."""

from __future__ import annotations

import os
from pathlib import Path

from clients.loadtest import machine


def _write(root: Path, relative: str, text: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_haltpoll_names_its_poll_limit(tmp_path: Path) -> None:
    _write(tmp_path, "devices/system/cpu/cpuidle/current_driver", "haltpoll\n")
    _write(tmp_path, "module/haltpoll/parameters/guest_halt_poll_ns", "0\n")
    assert machine.cpu_idle(tmp_path) == "haltpoll (guest_halt_poll_ns 0)"


def test_another_driver_is_named_alone(tmp_path: Path) -> None:
    _write(tmp_path, "devices/system/cpu/cpuidle/current_driver", "intel_idle\n")
    _write(tmp_path, "module/haltpoll/parameters/guest_halt_poll_ns", "200000\n")
    assert machine.cpu_idle(tmp_path) == "intel_idle"


def test_haltpoll_without_a_readable_limit_is_the_driver_alone(tmp_path: Path) -> None:
    _write(tmp_path, "devices/system/cpu/cpuidle/current_driver", "haltpoll\n")
    _write(tmp_path, "module/haltpoll/parameters/guest_halt_poll_ns", "garbage\n")
    assert machine.cpu_idle(tmp_path) == "haltpoll"


def test_no_cpuidle_leaves_the_entry_out(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    _write(proc, "cpuinfo", "processor\t: 0\nmodel name\t: Test CPU 9000\n")
    described = machine.describe(proc=proc, sys_root=tmp_path / "sys")
    assert "cpuidle" not in described
    assert described["cpu"] == "Test CPU 9000"
    assert set(machine.PACKAGES) <= described.keys()


def test_unreadable_cpuinfo_is_unknown(tmp_path: Path) -> None:
    assert machine.cpu_model(tmp_path) == "unknown"


def test_describe_includes_the_idle_driver(tmp_path: Path) -> None:
    _write(tmp_path, "devices/system/cpu/cpuidle/current_driver", "haltpoll\n")
    _write(tmp_path, "module/haltpoll/parameters/guest_halt_poll_ns", "200000\n")
    described = machine.describe(proc=tmp_path, sys_root=tmp_path)
    assert described["cpuidle"] == "haltpoll (guest_halt_poll_ns 200000)"


def test_the_reference_loop_is_reported_per_million_additions() -> None:
    # A hundredth of the loop, timed: the figure is per million whatever the count, so
    # the two are of one size (a shared machine may slow either, hence the wide margin).
    full = machine.reference_loop_ms()
    short = machine.reference_loop_ms(iterations=10_000, runs=5)
    assert full > 0 and short > 0
    assert full / 10 < short < full * 10


def _mountinfo(proc: Path, table: bytes) -> Path:
    (proc / "self").mkdir(parents=True)
    (proc / "self" / "mountinfo").write_bytes(table)
    return proc


def test_a_mount_point_outside_ascii_is_read_as_the_path_it_is(tmp_path: Path) -> None:
    # The kernel writes a mount point's bytes as they are but for space, tab, newline and
    # backslash (octal escapes): a tmpfs at a UTF-8 name is that name's, not its parent's.
    proc = _mountinfo(
        tmp_path / "proc",
        b"22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
        b"30 22 0:26 / /srv/b\xc3\xa4nk rw,nosuid shared:5 - tmpfs tmpfs rw\n"
        b"31 22 0:27 / /srv/b\xc3\xa4nk\\040two\\134x rw shared:6 - ramfs none rw\n",
    )
    assert machine.filesystem_of(Path("/srv/bänk/bank/ledger"), proc) == "tmpfs"
    assert machine.filesystem_of(Path("/srv/bänk two\\x/bank"), proc) == "ramfs"
    assert machine.filesystem_of(Path("/srv/bank"), proc) == "ext4"


def test_a_mount_point_that_is_no_utf8_is_read_as_the_path_it_is(tmp_path: Path) -> None:
    # Not every path is UTF-8 (a Latin-1 name): it is matched as the bytes it is.
    proc = _mountinfo(
        tmp_path / "proc",
        b"22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
        b"30 22 0:26 / /srv/caf\xe9 rw,nosuid shared:5 - tmpfs tmpfs rw\n",
    )
    ledger = Path(os.fsdecode(b"/srv/caf\xe9/bank"))
    assert machine.filesystem_of(ledger, proc) == "tmpfs"
    assert machine.filesystem_of(Path("/srv/cafe/bank"), proc) == "ext4"
