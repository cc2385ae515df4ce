"""``setpay gateway serve`` whose ledger fails as it closes, after closing for real.

Run as ``python -m tests.gateway.failing_close_serve SETPAY-ARGS...``. The workers are
forked from this process, so each one's ledger goes through the double: it serves as the
bank's does, and its ``close`` raises ``LedgerError`` once the real one has run, as a
ledger whose last commits could not be written would. Everything else is the bank's.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from cli.main import main as setpay
from gateway.ledger import Ledger, LedgerError

# What the double's close raises; the test looks for it in the log.
CLOSE_FAILURE = "the ledger's last commits could not be written (a test's double)"


def main(argv: Sequence[str]) -> int:
    """Serve as ``setpay`` does with ``argv``, every ledger failing as it closes."""
    close = Ledger.close

    def failing_close(ledger: Ledger) -> None:
        close(ledger)
        raise LedgerError(CLOSE_FAILURE)

    Ledger.close = failing_close  # type: ignore[method-assign,assignment]
    return setpay(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
