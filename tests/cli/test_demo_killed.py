"""A demo killed with SIGKILL runs no cleanup, and left its temporary directory (mode
0700, the parties' keys and passphrase files in it) for good. Its reaper, as the bench's
(``cli.bench_workdir``), now removes it once the demo is gone, and then ends.

The test runs the real command in a subprocess and kills it mid-story."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from clients.loadtest.cpu import descendants
from tests.clients.loadtest.process_support import alive, gone, kill_left

REPOSITORY = Path(__file__).resolve().parents[2]
# The demo is past its merchant's registration within seconds; a loaded 2-core CI
# machine may take much longer.
START_SECONDS = 60.0
# The reaper removes the directory as soon as the demo's end closes its pipe.
REMOVED_SECONDS = 10.0


def test_a_demo_killed_with_sigkill_leaves_no_temporary_directory(tmp_path: Path) -> None:
    tmp, out_file = tmp_path / "tmp", tmp_path / "out"
    tmp.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SETPAY_")}
    with out_file.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "demo"], env={**env, "TMPDIR": str(tmp)},
            cwd=REPOSITORY, stdout=out, stderr=subprocess.DEVNULL,
        )  # fmt: skip
    reapers: list[int] = []
    try:
        deadline = time.monotonic() + START_SECONDS
        # The merchant's first line: the parties' keys and passphrase files are written.
        while "     merchant: " not in out_file.read_text():
            assert process.poll() is None, out_file.read_text()
            assert time.monotonic() < deadline, out_file.read_text()
            time.sleep(0.05)
        (work,) = tmp.glob("setpay-demo-*")
        assert (work / "merchant" / "keys.pass").exists()
        assert (work / "wallet" / "card.pass").exists()
        reapers = [pid for pid in descendants([process.pid]) if pid != process.pid]
        process.send_signal(signal.SIGKILL)
        assert process.wait(START_SECONDS) == -signal.SIGKILL
        give_up = time.monotonic() + REMOVED_SECONDS
        while work.exists() and time.monotonic() < give_up:
            time.sleep(0.05)
        assert not work.exists(), sorted(str(p.relative_to(work)) for p in work.rglob("*"))
        assert len(reapers) == 1, reapers  # the demo starts no other process
        assert gone(reapers, REMOVED_SECONDS), "the reaper outlived its directory"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        kill_left([pid for pid in reapers if alive(pid)])
