"""What the tests of the PIN latch's shared refusal record share: a latch on a PIN file,
and a call of it run aside for a bounded time (what is at the record's path, a FIFO,
could hold it for ever, a login lock held)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from hsm.pin_latch import PinLatch
from hsm.pinsource import PinSource

# How long a latch's call may take before it counts as holding the login.
WITHIN_S = 3.0


def file_latch(tmp_path: Path) -> PinLatch:
    """A latch on the PIN file ``token.pin`` in ``tmp_path``, its record shared beside the
    token's lock ``token`` there. The file is written once: another latch, or another
    process, reads the same, unchanged file."""
    pin = tmp_path / "token.pin"
    if not pin.exists():
        pin.write_text("1234\n")
        pin.chmod(0o600)
    latch = PinLatch(PinSource.parse(f"file:{pin}"))
    latch.share_at(str(tmp_path / "token"))
    assert latch._shared_path is not None
    return latch


def ended_within(call: Callable[[], object], seconds: float = WITHIN_S) -> list[object]:
    """``call`` run aside: ``[None]`` if it returned in time, ``[what it raised]`` (what a
    login would meet), ``[]`` if it had not ended."""
    ended: list[object] = []

    def run() -> None:
        try:
            call()
            ended.append(None)
        except BaseException as exc:
            ended.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    return ended
