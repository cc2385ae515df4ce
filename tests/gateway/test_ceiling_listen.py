"""A reference service's listen address is HOST:PORT as a bank's ``listen`` setting is:
a port beyond 16 bits was handed to gRPC, which took it modulo 65536 and served
elsewhere (99999 on 34463) with one worker, while two workers refused it."""

from __future__ import annotations

import pytest

from gateway.ceiling import ReferenceOptions, is_host_port


@pytest.mark.parametrize(
    "listen",
    [
        "127.0.0.1:99999",  # beyond 16 bits
        "127.0.0.1:65536",
        "127.0.0.1:-0",
        "127.0.0.1:-1",
        "127.0.0.1",  # no port
        ":8080",  # no host
        "127.0.0.1:",
        "127.0.0.1:0x50",
        "127.0.0.1:\u0665\u0660",  # digits, not ASCII ones
        "127.0.0.1: 80",
    ],
)
def test_a_listen_address_that_is_not_host_port_is_refused(listen: str) -> None:
    assert not is_host_port(listen)
    with pytest.raises(ValueError, match=r"listen must be HOST:PORT \(port 0 to 65535\), not "):
        ReferenceOptions(mode="echo", listen=listen)
    with pytest.raises(ValueError, match="listen must be HOST:PORT"):
        ReferenceOptions(mode="echo", listen=listen, workers=2)


@pytest.mark.parametrize("listen", ["127.0.0.1:0", "127.0.0.1:65535", "[::1]:7443", "localhost:1"])
def test_a_host_port_address_is_taken(listen: str) -> None:
    assert is_host_port(listen)
    assert ReferenceOptions(mode="echo", listen=listen).listen == listen
