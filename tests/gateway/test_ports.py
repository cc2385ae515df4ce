"""Reserving the workers' ports: what ``gateway.ports.reserve`` refuses, and why."""

from __future__ import annotations

import pytest

from gateway.ports import PortError, reserve


@pytest.mark.parametrize("port", ["65536", "70000", "99999999999", "-1"])
def test_a_port_outside_0_to_65535_is_refused_not_wrapped(port: str) -> None:
    # The resolver takes the port as a 16-bit number: 70000 would have become 4464 and
    # 65536 a port the OS picks, and the bank would have served somewhere nobody asked.
    with pytest.raises(PortError, match=f"cannot reserve 127.0.0.1:{port}"):
        reserve(f"127.0.0.1:{port}")


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1", "127.0.0.1:", "127.0.0.1:http", ":0",
        "127.0.0.1:\uff10",  # a fullwidth 0, which int() reads as 0: any port
    ],
)  # fmt: skip
def test_an_address_without_host_and_numeric_port_is_refused(address: str) -> None:
    with pytest.raises(PortError, match="cannot reserve"):
        reserve(address)
