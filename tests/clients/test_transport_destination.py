"""A call that fails names where it went and the setting that named the address: "CA
GetBrandCRLIdentifier: UNAVAILABLE" alone left the user to guess which address was tried
and where to change it. Said once, by the transport, for every peer of both CLIs."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from clients.errors import TransportError
from clients.merchant.config import load as load_merchant_config
from clients.peers import PeerConfig
from clients.transport import Caller, ChannelConfig, RetryPolicy, open_channel
from clients.wallet.config import load as load_wallet_config
from clients.wallet.vault import PASSPHRASE_ENV
from setpay.v1 import common_pb2
from tests.clients.bank_support import (
    WALLET_PASSPHRASE,
    RunningBank,
    configure_merchant,
    new_wallet,
)
from tests.clients.cli_support import run_cli

METHOD = "/setpay.test.Away/Call"
# Tight backoff: the peer is away at every attempt.
FAST = RetryPolicy(attempts=2, first_backoff=0.001, max_backoff=0.002)


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port of 127.0.0.1 bound and not listening: a connection there is refused."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield held.getsockname()[1]


def _failure(config: ChannelConfig, peer: str) -> TransportError:
    with open_channel(config, peer) as channel, pytest.raises(TransportError) as caught:
        Caller(channel, peer, FAST).call(METHOD, b"x", common_pb2.Header, deadline=5)
    return caught.value


def test_unavailable_names_the_address_its_setting_and_what_to_check(closed_port: int) -> None:
    target = f"127.0.0.1:{closed_port}"
    config = ChannelConfig(target, insecure=True, origin="ca.target in shop/merchant.toml")
    failure = _failure(config, "CA")
    assert failure.status == "UNAVAILABLE"
    assert str(failure) == (
        f"CA Call: UNAVAILABLE at {target} (ca.target in shop/merchant.toml): is the CA "
        "running, and reachable there?"
    )


def test_a_channel_of_unknown_origin_still_names_its_address(closed_port: int) -> None:
    target = f"127.0.0.1:{closed_port}"
    failure = _failure(ChannelConfig(target, insecure=True), "merchant")
    assert str(failure) == (
        f"merchant Call: UNAVAILABLE at {target}: is the merchant running, and reachable there?"
    )


def test_the_peer_configuration_says_where_its_target_was_set(tmp_path: Path) -> None:
    source = tmp_path / "merchant.toml"
    table = {"target": "127.0.0.1:7444", "insecure": True}
    peer = PeerConfig.from_table(table, "ca", tmp_path, source)
    assert peer.channel().origin == f"ca.target in {source}"
    moved = peer.with_target("127.0.0.1:7445", "SETPAY_MERCHANT_CA")
    assert moved.channel().origin == "SETPAY_MERCHANT_CA"
    # Where a target was set is no part of the peer.
    assert peer == PeerConfig.from_table(table, "ca", tmp_path)


def test_merchant_with_the_bank_away_names_ca_target_in_its_file(
    bank: RunningBank,
    tmp_path: Path,
    closed_port: int,
    capsys: pytest.CaptureFixture[str],
) -> None:
    directory = tmp_path / "m-bank-away"
    configure_merchant(bank, directory, "m-bank-away")
    config_file = directory / "merchant.toml"
    config_file.write_text(
        config_file.read_text().replace(bank.ca_target, f"127.0.0.1:{closed_port}")
    )
    assert load_merchant_config(directory).ca.target == f"127.0.0.1:{closed_port}"
    status, out, err = run_cli(["merchant", "--dir", str(directory), "register"], capsys)
    assert (status, out) == (1, "")
    assert err == (
        f"setpay merchant: CA GetBrandCRLIdentifier: UNAVAILABLE at 127.0.0.1:{closed_port} "
        f"(ca.target in {config_file}): is the CA running, and reachable there?\n"
    )


def test_wallet_with_the_merchant_away_names_the_setting_it_used(
    bank: RunningBank,
    tmp_path: Path,
    closed_port: int,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(PASSPHRASE_ENV, WALLET_PASSPHRASE)
    directory = tmp_path / "wallet-away"
    target = f"127.0.0.1:{closed_port}"
    new_wallet(bank, directory, target).close()
    assert load_wallet_config(directory).require_merchant().target == target
    purchase = ["wallet", "--dir", str(directory), "purchase", "--lid-m", "00aa",
                "--description", "a lamp", "--amount", "100"]  # fmt: skip
    away = "is the merchant running, and reachable there?"

    status, out, err = run_cli(purchase, capsys)
    assert (status, out) == (1, "")
    assert err == (
        f"setpay wallet: merchant PInit: UNAVAILABLE at {target} "
        f"(merchant.target in {directory / 'wallet.toml'}): {away}\n"
    )

    status, out, err = run_cli([*purchase, "--merchant", target], capsys)
    assert (status, out) == (1, "")
    assert err == f"setpay wallet: merchant PInit: UNAVAILABLE at {target} (--merchant): {away}\n"
