"""Identifiers the ledger mints: accounts, holds and batches.

Random (unguessable, and safe to mint on several hosts at once without coordination) and
written in lowercase base32, letters and the digits 2-7: unlike hex, such an id almost
never holds a long run of decimal digits, so it cannot look like a PAN to the PAN scanners
that check logs and merchant files for Luhn-valid 13-19 digit runs.
"""

from __future__ import annotations

import base64
import secrets

# Random bytes per id: 15 bytes = 120 bits (collision-free in practice), 24 base32 chars.
ID_RANDOM_BYTES = 15


def new_id(prefix: str, random_bytes: int = ID_RANDOM_BYTES) -> str:
    """``prefix-`` followed by ``random_bytes`` random bytes in lowercase base32."""
    encoded = base64.b32encode(secrets.token_bytes(random_bytes)).decode("ascii")
    return f"{prefix}-{encoded.rstrip('=').lower()}"
