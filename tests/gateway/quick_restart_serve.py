"""``setpay gateway serve`` whose supervisor starts a worker that died again at once.

Run as ``python -m tests.gateway.quick_restart_serve SETPAY-ARGS...``. The back-off
between quick restarts of one index (``gateway.restarts``: 0.5 s doubling) is
BACKOFF_SECONDS doubling instead, for a test that stops one worker after another and
asserts nothing about the back-off: five stops waited 7.5 s for it. The supervisor reads
the constant at each death, in this process. Everything else is the bank's.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from cli.main import main as setpay
from gateway import restarts

# Short enough that five deaths in a row wait a few tenths of a second in all.
BACKOFF_SECONDS = 0.02


def main(argv: Sequence[str]) -> int:
    """Serve as ``setpay`` does with ``argv``, a quick death's back-off BACKOFF_SECONDS."""
    restarts.FIRST_BACKOFF_SECONDS = BACKOFF_SECONDS
    return setpay(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
