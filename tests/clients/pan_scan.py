"""Finding card numbers where none may be: any Luhn-valid run of 13 to 19 digits.

One kind of text is set aside: a long hexadecimal token, such as a digest or a random
id. That is a run of letters and digits at least ``HEX_TOKEN_CHARS`` long, all of them
hex digits and at least one a letter. Random hex holds a Luhn-valid run of 13-19 decimal
digits surprisingly often (about 0.4 % of 64-character strings; the merchant's order
listing once showed a 16-character id whose first 13 were such a run), the bench and client
tests write dozens of such ids and thumbprints, and a card number is never written
inside one. ``luhn_runs`` is the scan without that exception.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from setcore.pan import luhn_valid

_DIGIT_RUN = re.compile(rb"(?<![0-9])[0-9]{13,19}(?![0-9])")
_TOKEN = re.compile(rb"[0-9A-Za-z]+")
_HEX_WITH_A_LETTER = re.compile(rb"(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]+")
# A 64-bit id in hex (the merchant's order listing shows LID-M so) is at least this long.
HEX_TOKEN_CHARS = 16


def _masked(digits: bytes) -> str:
    text = digits.decode()
    return text[:6] + "..." + text[-4:]


def luhn_runs(data: bytes) -> list[str]:
    """Every Luhn-valid 13-19 digit run in ``data``, masked (BIN and last four)."""
    return [_masked(m.group()) for m in _DIGIT_RUN.finditer(data) if luhn_valid(m.group().decode())]


def _is_hex_token(token: bytes) -> bool:
    return len(token) >= HEX_TOKEN_CHARS and _HEX_WITH_A_LETTER.fullmatch(token) is not None


def pan_like_runs(data: bytes) -> list[str]:
    """``luhn_runs`` outside long hexadecimal tokens: what may be a card number."""
    found = []
    for token in _TOKEN.finditer(data):
        if not _is_hex_token(token.group()):
            found.extend(luhn_runs(token.group()))
    return found


def files_with_pans(root: Path) -> dict[str, list[str]]:
    """Files under ``root`` (recursively) holding a PAN-like run, with what was found."""
    hits: dict[str, list[str]] = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            found = pan_like_runs(path.read_bytes())
            if found:
                hits[str(path.relative_to(root))] = found
    return hits


def lines_with_pans(lines: Iterable[str]) -> list[str]:
    """Log lines holding a PAN-like run."""
    return [line for line in lines if pan_like_runs(line.encode())]
