"""Moving time for a test: every clock of the project's own that dates a request or
checks its date, the merchant's and the gateway's alike, without waiting."""

from __future__ import annotations

import sys

import pytest

from setcore import freshness

# The wall clock, taken before any test moves it.
_WALL_CLOCK = freshness.now_ms


def clocks_moved(monkeypatch: pytest.MonkeyPatch, ms: int) -> None:
    """Every ``now_ms`` of setcore, clients and gateway reads ``ms`` (negative: earlier)
    away from the wall clock; calling it again moves them from the wall clock, not
    further. The ledger's own clock, which decides holds and expiries, is not moved."""

    def moved() -> int:
        return _WALL_CLOCK() + ms

    for name, module in list(sys.modules.items()):
        clock = getattr(module, "now_ms", None)
        ours = name.split(".")[0] in ("setcore", "clients", "gateway")
        already = getattr(clock, "__qualname__", "") == moved.__qualname__
        if ours and (clock is _WALL_CLOCK or already):
            monkeypatch.setattr(module, "now_ms", moved)
