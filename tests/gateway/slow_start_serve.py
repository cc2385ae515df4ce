"""``setpay gateway serve`` whose workers may be held in their start, and whose supervisor
kills stragglers after a short closing margin.

Run as ``python -m tests.gateway.slow_start_serve FLAG SETPAY-ARGS...``. Each worker,
forked from this process, creates FLAG's ``.started`` sibling as it begins to open the
bank, then waits while FLAG exists (at most PAUSE_SECONDS), as one queued on a token's
login would; a FLAG the test never creates holds no one. The supervisor allows
MARGIN_SECONDS rather than ``STOP_MARGIN_SECONDS`` for closing, so a test sees a
straggler killed within seconds, not ten. Everything else is the bank's.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cli.main import main as setpay
from gateway import child_deadlines, worker

# Far longer than a test holds a worker; a test that never lets it go still ends.
PAUSE_SECONDS = 60.0
# The supervisor's closing margin here: long enough for a worker with nothing in flight
# to close its keys and ledger, short enough that a test waits for it.
MARGIN_SECONDS = 1.0


def started_path(flag: Path) -> Path:
    """The file a worker creates as it begins its start."""
    return flag.with_name(f"{flag.name}.started")


def main(argv: Sequence[str]) -> int:
    """Serve as ``setpay`` does with ``argv[1:]``, each worker held in its start while
    ``argv[0]`` exists."""
    flag = Path(argv[0])
    start_bank = worker.start_bank

    def held_start(*args: Any, **kwargs: Any) -> Any:
        started_path(flag).touch()
        give_up = time.monotonic() + PAUSE_SECONDS
        while flag.exists() and time.monotonic() < give_up:
            time.sleep(0.02)
        return start_bank(*args, **kwargs)

    worker.start_bank = held_start  # type: ignore[assignment]
    child_deadlines.STOP_MARGIN_SECONDS = MARGIN_SECONDS  # type: ignore[misc]
    return setpay(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
