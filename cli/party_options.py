"""What the merchant's and the wallet's commands share: usage errors, the CA's form
fields, and the brand root each pins on its first registration.

The root is pinned on first use, written whole or not at all (a crash never leaves a
truncated ``root.pem``); afterwards a ``--root`` naming another root is refused, both
named by SHA-256 fingerprint, rather than silently ignored while the party goes on
trusting the one it pinned.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from cli.fingerprint import colon_hex
from clients.errors import ClientError
from clients.identity import read_root, write_certificates


class UsageError(ClientError):
    """The command line is incomplete or malformed (exit 2, as argparse's own errors)."""


def parse_form(values: list[str]) -> dict[str, str]:
    """``--form NAME=VALUE`` pairs, as the CA's registration form takes them."""
    form = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"--form takes NAME=VALUE, not {item!r}")
        form[name] = value
    return form


def _fingerprint(der: bytes) -> str:
    return f"SHA-256 {colon_hex(hashlib.sha256(der).digest())}"


def pin_root(pinned_at: Path, root: Path | None, party: str) -> None:
    """Pin ``root`` at ``pinned_at`` on first use; later, refuse a ``root`` that is not
    the pinned one (``party``: who trusts it, for the message)."""
    if pinned_at.exists():
        if root is not None:
            pinned, given = read_root(pinned_at), read_root(root)
            if pinned != given:
                raise ClientError(
                    f"--root {root} ({_fingerprint(given)}) is not the brand root pinned at "
                    f"{pinned_at} ({_fingerprint(pinned)}): the {party} trusts only the "
                    "pinned root"
                )
        return
    if root is None:
        raise UsageError(f"no pinned brand root at {pinned_at}: give --root")
    write_certificates(pinned_at, [read_root(root)])
