"""What a child of the supervisor (``gateway.workers``) says on its ready pipe, as the
supervisor reads it.

A child says one line: its ports once it serves ("GATEWAY_PORT CA_PORT"; the ledger
process says it serves), or, if it cannot serve, a fault line after its mark
(``gateway.child``). The supervisor reads the pipe, never blocking, as its loop finds it
readable and once more as it reaps the child; the pipe is done with once a whole line
came, the child closed it, or more came than a line may hold.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from gateway import child as children
from gateway.child import WatchedChild

# A ready line is "GATEWAY_PORT CA_PORT\n"; anything longer is not one (a fault line is).
READY_LINE_BYTES = 64


@dataclass(frozen=True)
class Heard:
    """What one read of a child's ready pipe made of what it said so far."""

    ready: str | None  # its ready line, without the newline, once whole
    done: bool  # nothing more to read: the pipe is to be closed


def read_ready(child: WatchedChild, ready_fd: int) -> Heard | None:
    """Read what ``child`` said on ``ready_fd`` (its ``ready_fd``), None when nothing came
    yet. A whole fault line is kept as the child's ``fault``."""
    try:
        chunk = os.read(ready_fd, children.FAULT_LINE_BYTES)
    except BlockingIOError:
        return None
    child.received += chunk
    line, newline, _ = child.received.partition(b"\n")
    fault = child.received[:1] in children.REPORTED_MARKS
    ready = None
    if newline and fault:  # it cannot serve, and exits (``gateway.child``)
        child.fault = line.decode("utf-8", "replace")
    elif newline:
        ready = line.decode("ascii", "replace")
    longest = children.FAULT_LINE_BYTES if fault else READY_LINE_BYTES
    return Heard(ready, bool(newline) or not chunk or len(child.received) > longest)
