"""``setpay gateway serve`` whose workers may hang in their start or find the token away,
and whose supervisor allows START_SECONDS for a start and a short closing margin.

Run as ``python -m tests.gateway.stuck_start_serve FLAG AWAY SETPAY-ARGS...``. While FLAG
exists, a worker is held in its start, as one whose token call hangs (``slow_start_serve``,
which also creates FLAG's ``.started`` sibling and shortens the closing margin); while
AWAY exists, a worker's start then fails as it does when the PKCS#11 token is away
(``TokenAbsent``, a fault that passes by itself). Everything else is the bank's.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gateway import child_deadlines, worker
from hsm.errors import TokenAbsent

from . import slow_start_serve

# Far more than a worker's start here on a loaded machine, far less than the bank's 60 s:
# a test sees a stuck start given up on within its own time.
START_SECONDS = 20.0


def main(argv: Sequence[str]) -> int:
    """Serve as ``setpay`` does with ``argv[2:]``; each worker held in its start while
    ``argv[0]`` exists, then failing as with the token away while ``argv[1]`` exists."""
    away = Path(argv[1])
    start_bank = worker.start_bank

    def away_start(*args: Any, **kwargs: Any) -> Any:
        if away.exists():
            raise TokenAbsent("token 'test' is not in the module (the test took it away)")
        return start_bank(*args, **kwargs)

    worker.start_bank = away_start  # type: ignore[assignment]
    child_deadlines.WORKER_START_SECONDS = START_SECONDS
    return slow_start_serve.main([argv[0], *argv[2:]])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
