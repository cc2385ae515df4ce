"""``setpay gateway serve`` whose CA keys sign through ``TokenGone`` while a file exists.

Run as ``python -m tests.gateway.token_gone_serve FLAG SETPAY-ARGS...``. The workers are
forked from this process, so each one's CA keys (``BankPki.authority_keys``) go through
the double: their signatures, re-publishing the CRLs and BCI among them, fail as a
removed token's do while FLAG exists, and succeed again once the test removes it. The
gateway's own keys, the ledger and everything else are the bank's, untouched.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from cli.main import main as setpay
from gateway.bank_pki import BankPki
from gateway.ca import AuthorityKeys
from hsm.base import KeyBackend, KeyHandle

from .ca.revocation_support import TokenGone, authority_keys


class FlaggedToken(TokenGone):
    """``TokenGone``, gone while ``flag`` exists (looked at on every signature)."""

    def __init__(self, inner: KeyBackend, flag: Path) -> None:
        super().__init__(inner)
        self.flag = flag

    def sign(self, key: KeyHandle, data: bytes) -> bytes:
        self.gone = self.flag.exists()
        return super().sign(key, data)


def main(argv: Sequence[str]) -> int:
    """Serve as ``setpay`` does with ``argv[1:]``, the CA keys gone while ``argv[0]`` exists."""
    flag = Path(argv[0])

    def flagged(pki: BankPki) -> AuthorityKeys:
        return authority_keys(pki, FlaggedToken(pki.backend, flag))

    BankPki.authority_keys = flagged  # type: ignore[method-assign]
    return setpay(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
