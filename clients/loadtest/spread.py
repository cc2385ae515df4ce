"""How the connections the bench opened are spread over a spawned server's workers.

Every worker of a server listens on the same port (SO_REUSEPORT) and the kernel hands
each new connection to one of them at random; every call on a connection then goes to
that worker. With 8 channels on two workers, all eight land on one worker one time in
128, and a run over them measures one worker, not the server: the sixteenth and
seventeenth rounds each had such a run (docs/BENCHMARKS.md). For a server the bench
started, it need not find out afterwards: it can see where each of its connections
went. ``/proc/net/tcp`` and ``tcp6`` give each socket's addresses, state and inode, and
``/proc/PID/fd`` the inodes a process holds. The bench's connections are the sockets of
its own process connected to the server's port; a worker is a child of the server's
process holding a socket that listens on that port, and it accepted the connections
whose server side it holds. ``load`` re-dials its channels while a worker has none.

For a bank the bench did not start there is nothing to look at; its metrics page's
calls per worker (``bank_page``) show a worker that got no connection after the run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from clients.loadtest.cpu import children_of

PROC = Path("/proc")
# /proc/net/tcp states, in hex.
ESTABLISHED = "01"
LISTEN = "0A"


@dataclass(frozen=True)
class _Socket:
    local_port: int
    remote_port: int
    state: str


def _port(address: str) -> int:
    return int(address.rsplit(":", 1)[1], 16)  # "0100007F:1F90": address and port in hex


def _tcp_sockets() -> dict[int, _Socket]:
    """Every TCP socket of this network namespace, by inode."""
    sockets = {}
    for table in ("tcp", "tcp6"):
        try:
            lines = (PROC / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue  # no IPv6 here
        for line in lines:
            # sl, local address:port, remote address:port, state, ..., inode (the 10th)
            fields = line.split()
            inode = int(fields[9])
            if inode:  # 0: no process holds it yet (queued for accept) or any more
                sockets[inode] = _Socket(_port(fields[1]), _port(fields[2]), fields[3])
    return sockets


def _socket_inodes(pid: int) -> set[int]:
    """The inodes of the sockets ``pid`` holds (none once it is gone)."""
    inodes: set[int] = set()
    fd_dir = PROC / str(pid) / "fd"
    try:
        names = os.listdir(fd_dir)
    except OSError:
        return inodes
    for name in names:
        try:
            target = os.readlink(fd_dir / name)
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:["):
            inodes.add(int(target[len("socket:[") : -1]))
    return inodes


@dataclass(frozen=True)
class WorkerSpread:
    """The workers of the server process ``root`` serving ``port``, and which of this
    process's connections each one accepted."""

    root: int
    port: int

    def client_ports(self) -> frozenset[int]:
        """The local ports of this process's connections to the server's port."""
        sockets = _tcp_sockets()
        return frozenset(
            sockets[inode].local_port
            for inode in _socket_inodes(os.getpid())
            if inode in sockets
            and sockets[inode].state == ESTABLISHED
            and sockets[inode].remote_port == self.port
        )

    def reached(self, client_ports: frozenset[int]) -> tuple[int, ...] | None:
        """How many of the connections from ``client_ports`` each worker accepted, in pid
        order; None when no process listening on the port can be seen. A server without
        worker children counts as one worker, itself."""
        sockets = _tcp_sockets()

        def accepted(pid: int) -> int | None:
            held = [sockets[i] for i in _socket_inodes(pid) if i in sockets]
            if not any(s.local_port == self.port and s.state == LISTEN for s in held):
                return None  # not a worker of this port (the ledger process, say)
            return sum(
                s.local_port == self.port
                and s.state == ESTABLISHED
                and s.remote_port in client_ports
                for s in held
            )

        counts = [n for pid in sorted(children_of(self.root)) if (n := accepted(pid)) is not None]
        if not counts and (own := accepted(self.root)) is not None:
            counts = [own]
        return tuple(counts) or None
