"""What an end-to-end bench test takes for a run that went right on a shared machine."""

from __future__ import annotations

from typing import Any

from cli.bench import EXIT_NOT_CLEAN

# The one DOUBT a busy machine raises in a run that otherwise went right: the bench sent
# late, its own CPU short (other work on the machine's two cores). Any DOUBT makes the exit
# status 3 by design; a test of something else accepts that one, and no other.
LATE_SENDS = "the bench sent to the "


def went_right(code: int, report: dict[str, Any]) -> bool:
    """Exit 0; or 3 with every run clean and the bench's own lateness its only doubts."""
    if code == 0:
        return True
    doubts = report.get("doubts", [])
    steps = report.get("steps", [])
    every_run_clean = all(
        result.get("clean") is True and not result.get("accounting_doubts")
        for step in steps
        for result in step.get("results", {}).values()
    )
    return (
        code == EXIT_NOT_CLEAN
        and bool(doubts)
        and every_run_clean
        and all(LATE_SENDS in doubt for doubt in doubts)
    )
