"""What a process of the same user may read of a hardened setpay process, seen by an
unprivileged user (``nobody`` when the tests run as root, who reads every ``/proc`` file
anyway): nothing of one that is not dumpable, ``/proc/PID/fd`` and ``maps`` of one that
``SETPAY_ALLOW_INSPECTION=1`` left dumpable, as the bench and the tests need of their
servers. The core-file limit stays 0 either way."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from cli.hardening import ALLOW_INSPECTION
from tests.gateway.served import REPOSITORY

# nobody's user and group ids on Linux, to run the probe as when the tests run as root.
NOBODY = 65534
# setpriv's exit statuses when it cannot run the program (as util-linux's errexec sets).
EXEC_FAILED = (126, 127)
NO_CORE = "Max core file size 0 0 bytes"
# The probe forks, hardens one process and reads a few files: a second on a quiet machine.
PROBE_SECONDS = 60.0


def _as_unprivileged(argv: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return argv
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        # A missing tool fails loudly: a skip would count the check as done.
        pytest.fail("run as root without setpriv (util-linux): no unprivileged user to probe as")
    ids = str(NOBODY)
    return [setpriv, "--reuid", ids, "--regid", ids, "--clear-groups", *argv]


@pytest.mark.parametrize(
    ("environ", "state"),
    [((), "shut"), ((f"{ALLOW_INSPECTION}=1",), "open"), ((f"{ALLOW_INSPECTION}=yes",), "shut")],
    ids=["hardened", "inspectable", "inspection-value-not-understood"],
)
def test_the_same_user_reads_the_proc_files_of_an_inspectable_setpay_only(
    environ: tuple[str, ...], state: str
) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SETPAY_")}
    done = subprocess.run(
        _as_unprivileged([sys.executable, "-m", "tests.cli.peer_probe", *environ]),
        env={**clean, "PYTHONPATH": str(REPOSITORY), "PYTHONDONTWRITEBYTECODE": "1"},
        cwd=REPOSITORY, capture_output=True, text=True, timeout=PROBE_SECONDS, check=False,
    )  # fmt: skip
    if done.returncode in EXEC_FAILED and os.geteuid() == 0:
        pytest.fail(f"nobody cannot run this interpreter: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"fd {state}", f"maps {state}", NO_CORE]
