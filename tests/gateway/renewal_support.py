"""What the tests of the gateway's key renewal share: fixed ports for a bank stopped and
started again, and the key versions its backend holds."""

from __future__ import annotations

import random
import socket
from pathlib import Path

import pytest

from gateway.bank_pki import bank_keys_uri
from gateway.config import BankConfig
from hsm.uri import open_backend

# A port handed to a server that binds it a moment later comes from below the kernel's
# ephemeral range: a port the kernel picked for a probe goes back to that range, where any
# outgoing connection may take it first (a test suite's metrics endpoint once failed with
# "Address already in use" exactly so).
FIXED_PORTS_FROM = 20000
EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
# Random ports tried before giving up.
PORT_TRIES = 200


def free_port() -> int:
    """A loopback port nobody listens on right now, outside the ephemeral range.

    For a bank that must come back on the same port, or whose ports the renewal probes.
    Another process may still bind it first; the bank then fails to start and says so."""
    below = int(EPHEMERAL_RANGE.read_text().split()[0])
    for port in random.sample(range(FIXED_PORTS_FROM, below), PORT_TRIES):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    pytest.fail(f"no free loopback port in {FIXED_PORTS_FROM}-{below - 1}")


def key_versions(config: BankConfig) -> set[tuple[str, int]]:
    """Every (label, version) in the bank's key backend."""
    backend = open_backend(bank_keys_uri(config))
    try:
        return {(k.label, k.version) for k in backend.list_keys()}
    finally:
        backend.close()
