"""``setpay gateway serve`` whose ledger process may be held in its start.

Run as ``python -m tests.gateway.slow_ledger_serve FLAG SETPAY-ARGS...``. The ledger
process, forked from this process, creates FLAG's ``.started`` sibling as it begins,
then waits while FLAG exists (at most PAUSE_SECONDS) before it opens the ledger and
serves, as one opening a big file on a slow disk would; a FLAG the test never creates
holds no one, so a test creates it once the bank serves to hold only a restarted one.
Everything else is the bank's.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cli.main import main as setpay
from gateway import child

# Far longer than a test holds the ledger process; a test that never lets it go still ends.
PAUSE_SECONDS = 60.0


def started_path(flag: Path) -> Path:
    """The file a ledger process creates as it begins its start."""
    return flag.with_name(f"{flag.name}.started")


def main(argv: Sequence[str]) -> int:
    """Serve as ``setpay`` does with ``argv[1:]``, the ledger process held in its start
    while ``argv[0]`` exists."""
    flag = Path(argv[0])
    run_ledger_process = child.run_ledger_process

    def held_start(*args: Any, **kwargs: Any) -> Any:
        if flag.exists():
            started_path(flag).touch()
        give_up = time.monotonic() + PAUSE_SECONDS
        while flag.exists() and time.monotonic() < give_up:
            time.sleep(0.02)
        return run_ledger_process(*args, **kwargs)

    child.run_ledger_process = held_start  # type: ignore[assignment]  # what the child calls
    return setpay(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
