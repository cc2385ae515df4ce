"""A step run on a thread of its own, for tests that hold one command while another runs."""

from __future__ import annotations

import threading
from collections.abc import Callable


def in_thread(run: Callable[[], object]) -> tuple[threading.Thread, list[BaseException]]:
    """``run()`` on a thread of its own, started; what it raised, once joined."""
    raised: list[BaseException] = []

    def body() -> None:
        try:
            run()
        except BaseException as exc:  # handed to the test
            raised.append(exc)

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    return thread, raised
