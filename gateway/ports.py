"""Ports reserved for worker processes that share them with SO_REUSEPORT.

A reservation is a socket bound to the address with SO_REUSEPORT and never listening, held
by the process that forks the workers for as long as they run (the gRPC multiprocessing
example's way). A port 0 thereby becomes a real port before any worker starts; every
worker, and every worker started again later, binds that same port; no other program can
take it meanwhile; and a socket that does not listen receives no connections. Before
reserving, a plain bind without SO_REUSEPORT checks that nobody holds the address
already, so two banks never silently share a port.

Errors: ``PortError`` (the address is malformed, unknown or taken).
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path

# TCP ports are 16 bits. The resolver would take a larger number modulo 65536 (70000 would
# become 4464, 65536 a port the OS picks), so a port outside this range is refused first.
MAX_PORT = 65535
_INTEGER = re.compile(r"-?[0-9]+")


def parse_integer(text: str) -> int | None:
    """The integer ``text`` writes in ASCII digits, a minus sign allowed, or None: the one
    reading of a number a bank setting takes from text. ``int`` alone would take fullwidth
    and other Unicode digits, underscores (``1_6``) and spaces around them."""
    if not _INTEGER.fullmatch(text):
        return None
    try:
        return int(text)
    except ValueError:  # more digits than Python converts (thousands): no setting's value
        return None


def parse_port(text: str) -> int | None:
    """The port ``text`` names (``parse_integer``, 0 to MAX_PORT), or None; never "-0"."""
    port = None if text.startswith("-") else parse_integer(text)
    return port if port is not None and 0 <= port <= MAX_PORT else None


class PortError(Exception):
    """An address cannot be reserved."""


@dataclass
class Reservation:
    """A bound, non-listening SO_REUSEPORT socket holding a port for the workers."""

    host: str
    port: int
    sock: socket.socket

    @property
    def address(self) -> str:
        """HOST:PORT for the workers' servers."""
        return f"{self.host}:{self.port}"

    def close(self) -> None:
        """Release the port."""
        self.sock.close()


def reserve(listen: str) -> Reservation:
    """Reserve ``listen`` (HOST:PORT; port 0 picks a free one) for the workers."""
    host, _, port_text = listen.rpartition(":")
    try:
        wanted = parse_port(port_text)
        if wanted is None:
            raise ValueError(f"port must be between 0 and {MAX_PORT}")
        infos = socket.getaddrinfo(
            host.strip("[]"), wanted, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        family, _, _, _, address = infos[0]
        # Nobody may hold the address yet (a listener, another bank's reservation); SO_REUSEADDR
        # only lets us past connections of an earlier run still in TIME_WAIT.
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
            port = int(probe.getsockname()[1])
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            sock.bind((address[0], port, *address[2:]))
        except OSError:
            sock.close()
            raise
    except (OSError, ValueError) as exc:
        raise PortError(f"cannot reserve {listen}: {exc}") from exc
    return Reservation(host, port, sock)


def write_port_file(path: Path, *ports: int) -> None:
    """Write the bound ports ("PORT [PORT ...]" and a newline) for a script or test that
    asked for port 0. The file is written beside ``path`` and renamed into place, so a
    reader polling for it finds it whole or not at all, never empty or half written."""
    staging = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    staging.write_text(" ".join(str(port) for port in ports) + "\n")
    os.replace(staging, path)
