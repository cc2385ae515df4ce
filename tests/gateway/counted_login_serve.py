"""``setpay gateway serve`` that writes a line to a file for each PIN offered to a token.

Run as ``python -m tests.gateway.counted_login_serve FILE SETPAY-ARGS...``. The workers
are forked from this process, so each one's C_Login (``hsm.token_login.LoginCalls``)
goes through the counter: one line "offered" appended to FILE (one write, O_APPEND: the
processes' lines never mix) before the PIN is handed to the token. Nothing of the PIN is
written. Everything else is the bank's.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

from cli.main import main as setpay
from hsm.token_login import LoginCalls


def main(argv: Sequence[str]) -> int:
    """Serve as ``setpay`` does with ``argv[1:]``, counting C_Logins in ``argv[0]``."""
    counted = argv[0]
    log_in = LoginCalls.log_in

    def counting(self: LoginCalls, session: Any, pin: str) -> None:
        fd = os.open(counted, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, b"offered\n")
        finally:
            os.close(fd)
        log_in(self, session, pin)

    LoginCalls.log_in = counting  # type: ignore[method-assign]
    return setpay(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
