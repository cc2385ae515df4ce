"""A check run as a user other than the test's root: ``nobody``, in a forked child that
enters the directory before it drops root (so the test's directories above need not be
open to it) and reports through a pipe. A test not run as root is that other user
already: the check runs in this process, in the directory."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

NOBODY = 65534


def answer_as_another_user(directory: Path, run: Callable[[], str]) -> str:
    """``run``'s answer, run in ``directory`` as another user than root (the module
    docstring)."""
    if os.geteuid() != 0:
        here = os.getcwd()
        os.chdir(directory)
        try:
            return run()
        finally:
            os.chdir(here)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        code = 1
        try:
            os.close(read)
            os.chdir(directory)
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            os.write(write, run().encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        said = pipe.read().decode()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, said
    return said
