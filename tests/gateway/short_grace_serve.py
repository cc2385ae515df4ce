"""``setpay gateway serve`` with a grace period of the test's choosing.

Run as ``python -m tests.gateway.short_grace_serve SECONDS SETPAY-ARGS...``. The grace
period is no setting of the file or the environment; a test that holds a call past it
would otherwise wait out the bank's default (``gateway.config.DEFAULT_GRACE_SECONDS``),
longer than the ledger's busy timeout lets it hold one. The supervisor, the workers and
everything they serve are the bank's, untouched.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import replace

from cli.main import main as setpay
from gateway import workers
from gateway.config import BankConfig


def main(argv: Sequence[str]) -> int:
    """Serve as ``setpay`` does with ``argv[1:]``, the grace period ``argv[0]`` seconds."""
    grace = float(argv[0])
    serve = workers.serve

    def with_grace(config: BankConfig, **options: object) -> int:
        return serve(replace(config, grace_seconds=grace), **options)  # type: ignore[arg-type]

    workers.serve = with_grace  # type: ignore[assignment]
    return setpay(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
