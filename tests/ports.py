"""A loopback port for a server a test starts on a port it must know beforehand.

Most servers in the tests bind port 0 and say which port they got. Some cannot: a bank
that must come back on the same port, a metrics port passed on a command line, a port a
test checks is free again afterwards. For those, ``free_port``: one copy, shared.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

import pytest

# A port handed to a server that binds it a moment later comes from below the kernel's
# ephemeral range: a port the kernel picked for a probe goes back to that range, where any
# outgoing connection may take it first (a test suite's metrics endpoint once failed with
# "Address already in use" exactly so). From 20000 up: above the ports services are
# commonly configured on (Prometheus's 9090, its exporters' 91xx).
FIXED_PORTS_FROM = 20_000
EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
# Random ports tried before giving up: a free one is nearly always among the first.
PORT_TRIES = 200


def free_port() -> int:
    """A loopback port nobody listens on right now, below the ephemeral range.

    Another process may still bind it first; the server then fails to start and says so.
    """
    below = int(EPHEMERAL_RANGE.read_text().split()[0])
    for port in random.sample(range(FIXED_PORTS_FROM, below), PORT_TRIES):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    pytest.fail(f"no free loopback port in {FIXED_PORTS_FROM}-{below - 1}")
