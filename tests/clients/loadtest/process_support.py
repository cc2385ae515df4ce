"""Processes a test started, by pid: whether each still runs, waiting for them to end,
and killing what a failing test left running."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path


def alive(pid: int) -> bool:
    """Whether ``pid`` runs: a zombie, ended and not yet reaped, does not."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def gone(pids: list[int], seconds: float) -> bool:
    """Whether every one of ``pids`` has ended within ``seconds``."""
    give_up = time.monotonic() + seconds
    while any(alive(pid) for pid in pids):
        if time.monotonic() > give_up:
            return False
        time.sleep(0.1)
    return True


def kill_left(pids: list[int]) -> None:
    """Whatever a failing test left running, by the pids it started."""
    for pid in pids:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
