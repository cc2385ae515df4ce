"""How a client's configuration names a peer: its target, TLS files and the insecure switch."""

from __future__ import annotations

from pathlib import Path

import pytest

from clients.errors import ConfigError
from clients.peers import PeerConfig, check_target


@pytest.mark.parametrize("target", ["127.0.0.1:7443", "[::1]:0", "gateway.example:65535"])
def test_a_target_is_host_and_port(target: str) -> None:
    assert check_target(target, "gateway.target") == target


@pytest.mark.parametrize(
    "target",
    [
        "127.0.0.1", ":7443", "127.0.0.1:", "127.0.0.1:65536", "127.0.0.1:99999", "h:-1",
        "127.0.0.1:\u00b2", "127.0.0.1:\uff17\uff14\uff14\uff13",  # superscript, fullwidth
    ],
)  # fmt: skip
def test_a_target_without_a_port_in_range_is_refused(target: str) -> None:
    # A port past 65535 used to pass, and the client then failed every call, after its
    # retries, with UNAVAILABLE rather than a configuration error.
    with pytest.raises(ConfigError, match=r"^gateway\.target must be HOST:PORT"):
        check_target(target, "gateway.target")


def test_a_peer_table_resolves_its_files_in_the_clients_directory(tmp_path: Path) -> None:
    table = {"target": "127.0.0.1:7443", "tls_ca": "tls/root.pem", "tls_cert": "/abs/c.pem",
             "tls_key": "tls/c.key"}  # fmt: skip
    peer = PeerConfig.from_table(table, "gateway", tmp_path)
    assert peer.tls_ca == tmp_path / "tls" / "root.pem"
    assert peer.tls_cert == Path("/abs/c.pem") and peer.tls_key == tmp_path / "tls" / "c.key"


@pytest.mark.parametrize(
    ("table", "says"),
    [
        ({"target": "127.0.0.1:7443"}, "gateway.tls_ca is required unless gateway.insecure"),
        ({"target": "127.0.0.1:7443", "tls_ca": "ca.pem", "tls_cert": "c.pem"}, "go together"),
        ({"target": "127.0.0.1:7443", "insecure": "yes"}, "gateway.insecure must be bool"),
        ({"target": 7443, "insecure": True}, "gateway.target must be str"),
    ],
)
def test_a_peer_table_that_cannot_protect_the_channel_is_refused(
    tmp_path: Path, table: dict[str, object], says: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        PeerConfig.from_table(table, "gateway", tmp_path)
    assert says in str(caught.value)


def test_an_unreadable_tls_file_is_named(tmp_path: Path) -> None:
    peer = PeerConfig("127.0.0.1:7443", tls_ca=tmp_path / "missing.pem")
    with pytest.raises(ConfigError, match=r"cannot read .*missing\.pem"):
        peer.channel()
