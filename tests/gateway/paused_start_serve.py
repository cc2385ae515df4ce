"""``setpay gateway serve`` that pauses once everything is prepared, before its supervisor
runs, while a file exists.

Run as ``python -m tests.gateway.paused_start_serve FLAG SETPAY-ARGS...``. ``serve`` has
reserved the ports and made the metrics and ledger socket directories; this process then
creates FLAG and waits, at most PAUSE_SECONDS, until the test removes it, so a test can
send a signal exactly in that moment. The supervisor and all it runs are the bank's.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path

from cli.main import main as setpay
from gateway.workers import Supervisor

# Far longer than a test takes to signal and remove the flag; a test that never removes
# it still ends.
PAUSE_SECONDS = 60.0


def main(argv: Sequence[str]) -> int:
    """Serve as ``setpay`` does with ``argv[1:]``, pausing before the supervisor runs
    until ``argv[0]`` is removed."""
    flag = Path(argv[0])
    run = Supervisor.run

    def paused_run(supervisor: Supervisor) -> int:
        flag.touch()
        give_up = time.monotonic() + PAUSE_SECONDS
        while flag.exists() and time.monotonic() < give_up:
            time.sleep(0.02)
        return run(supervisor)

    Supervisor.run = paused_run  # type: ignore[method-assign,assignment]
    return setpay(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
