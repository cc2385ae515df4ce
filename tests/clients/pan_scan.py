"""Finding card numbers where none may be: any Luhn-valid run of 13 to 19 digits."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from setcore.pan import luhn_valid

_DIGIT_RUN = re.compile(rb"(?<![0-9])[0-9]{13,19}(?![0-9])")


def pan_like_runs(data: bytes) -> list[str]:
    """Every Luhn-valid 13-19 digit run in ``data``, masked (BIN and last four)."""
    found = []
    for match in _DIGIT_RUN.finditer(data):
        digits = match.group().decode()
        if luhn_valid(digits):
            found.append(digits[:6] + "..." + digits[-4:])
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
