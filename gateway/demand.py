"""Requests computing in the workers, as the ledger process sees them.

A group commit is worth more when it carries more operations: the fsync, the WAL pages
and the write transaction are paid once per group. Inside one worker the writer knows
when to wait a moment for more (``gateway.cpu_turn.CpuTurn.wanting``: requests are
computing and will submit soon). The ledger process (``gateway.ledger.service``) serves
every worker and cannot see their threads; without that knowledge it commits at once,
and its groups held 1.2 operations on average at full load here, against 2.9 for the
writers inside the workers.

So each worker publishes its own ``wanting`` count in a slot of a small shared file
(``DemandBoard``), and the ledger process's writer lingers while the slots add up to more
than zero (``SharedDemand``). A slot is one aligned 32-bit integer written by one process
at a time; a reader may see a value a moment old, which costs at most one linger.

A worker that dies while its requests compute (a crash, a SIGKILL) cannot take its count
back, and the writer would then linger on every commit of every worker until a
replacement took the slot: up to MAX_BACKOFF_SECONDS of ``gateway.restarts`` per death in
a crash loop (the median commit went from 0.1 to 1.2 ms, measured). So the supervisor
clears the slot as it reaps the worker (``gateway.child.withdraw_demand``). It alone
learns of the death for certain, and before it can fork that index's replacement (its
loop is single-threaded), so the clearing never erases a live worker's count. A reader
that checked whether each slot's worker still lives would cost a system call per slot on
every linger, and would be fooled by a dead worker not yet reaped and by a reused pid.
"""

from __future__ import annotations

import mmap
import os
import struct
from collections.abc import Callable

from gateway.cpu_turn import CpuTurn

# One slot per worker index; a worker beyond the board publishes nothing.
SLOTS = 64
_SLOT = struct.Struct("=i")
# The board's file name, beside the ledger service's socket.
DEMAND_NAME = "demand"


def demand_path(socket_path: str) -> str:
    """Where the demand board of the ledger service at ``socket_path`` is."""
    return os.path.join(os.path.dirname(socket_path), DEMAND_NAME)


class DemandBoard:
    """A file of ``SLOTS`` counters, mapped into every process of the bank."""

    def __init__(self, path: str, *, create: bool = False) -> None:
        """Map the board at ``path``; ``create`` makes it (zeroed, this user's only).

        Made by writing its zeros, not by extending it: a file extended is sparse, and a
        write through a mapping onto a block a full filesystem cannot give is SIGBUS in
        every process of the bank (as ``gateway.metrics_files`` says of its samples);
        written, the file holds its blocks, and a full filesystem is an OSError (ENOSPC)
        here, at the start, with nothing mapped."""
        size = SLOTS * _SLOT.size
        flags = os.O_RDWR | (os.O_CREAT | os.O_EXCL if create else 0)
        fd = os.open(path, flags, 0o600)
        try:
            if create:
                zeros = memoryview(bytes(size))
                while zeros:
                    zeros = zeros[os.write(fd, zeros) :]
            self._map = mmap.mmap(fd, size)
        finally:
            os.close(fd)

    def publisher(self, index: int) -> Callable[[int], None]:
        """What worker ``index`` calls with its count whenever it changes."""
        if not 0 <= index < SLOTS:
            return lambda count: None
        offset = index * _SLOT.size
        board = self._map

        def publish(count: int) -> None:
            _SLOT.pack_into(board, offset, count)

        publish(0)  # a restarted worker replaces whatever its predecessor left
        return publish

    def withdraw(self, index: int) -> None:
        """Zero worker ``index``'s slot: the worker is gone (reaped), its requests with it.
        An index the board has no slot for (the ledger process's, one beyond it) has
        nothing to withdraw."""
        if 0 <= index < SLOTS:
            _SLOT.pack_into(self._map, index * _SLOT.size, 0)

    def total(self) -> int:
        """Requests computing now, over every worker."""
        return sum(count for (count,) in _SLOT.iter_unpack(self._map))

    def close(self) -> None:
        """Unmap the board (the file stays: other processes map it)."""
        self._map.close()


class SharedDemand(CpuTurn):
    """The ledger process's turn to compute, whose ``wanting`` is the workers' demand."""

    def __init__(self, board: DemandBoard) -> None:
        """Read demand from ``board``."""
        super().__init__()
        self._board = board

    @property
    def wanting(self) -> int:
        """Requests computing in the workers now (they will submit soon)."""
        return self._board.total()
