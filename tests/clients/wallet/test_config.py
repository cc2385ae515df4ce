"""The wallet's configuration: TOML and environment overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from clients.errors import ConfigError
from clients.peers import PeerConfig
from clients.wallet.config import load, write_config


def test_written_config_loads(tmp_path: Path) -> None:
    write_config(
        tmp_path, ca=PeerConfig("127.0.0.1:7443", tmp_path / "ca.pem"),
        merchant=PeerConfig("127.0.0.1:8443", tmp_path / "ca.pem"), passphrase_file="pass",
    )  # fmt: skip
    config = load(tmp_path, env={})
    assert config.require_ca().target == "127.0.0.1:7443"
    assert config.require_merchant().tls_ca == tmp_path.resolve() / "ca.pem"
    assert config.passphrase_file == tmp_path.resolve() / "pass"
    assert config.card_file == tmp_path.resolve() / "card.sealed"
    assert config.key_label == "cardholder-sig"


def test_environment_overrides(tmp_path: Path) -> None:
    write_config(tmp_path, ca=PeerConfig("a:1", tmp_path / "ca.pem"),
                 merchant=PeerConfig("b:2", tmp_path / "ca.pem"))  # fmt: skip
    config = load(tmp_path, env={"SETPAY_WALLET_CA": "c:3", "SETPAY_WALLET_MERCHANT": "d:4",
                                 "SETPAY_WALLET_KEYS": "soft:ephemeral"})  # fmt: skip
    assert config.require_ca().target == "c:3"
    assert config.require_merchant().target == "d:4"
    assert config.keys_uri() == "soft:ephemeral"


def test_missing_tables_are_named(tmp_path: Path) -> None:
    (tmp_path / "wallet.toml").write_text('[wallet]\nbrand = "setpay"\n')
    config = load(tmp_path, env={})
    with pytest.raises(ConfigError, match=r"\[ca\]"):
        config.require_ca()
    with pytest.raises(ConfigError, match=r"\[merchant\]"):
        config.require_merchant()


@pytest.mark.parametrize("table", ["wallet", "ca", "merchant"])
@pytest.mark.parametrize("value", ["3", '"127.0.0.1:8443"', "true"])
def test_a_table_that_is_not_one_is_named(tmp_path: Path, table: str, value: str) -> None:
    """``merchant = 3`` instead of ``[merchant]``: refused, naming the file and the key."""
    write_config(tmp_path, ca=PeerConfig("a:1", tmp_path / "ca.pem"),
                 merchant=PeerConfig("b:2", tmp_path / "ca.pem"))  # fmt: skip
    path = tmp_path / "wallet.toml"
    sections = [s for s in path.read_text().split("\n\n") if not s.startswith(f"[{table}]")]
    # A top-level key comes before every table header.
    path.write_text(f"{table} = {value}\n" + "\n\n".join(sections))
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, env={})
    assert str(caught.value).startswith(f"{path}: {table} must be a table, not ")


@pytest.mark.parametrize("language", ["", "en_GB", "e" * 36])
def test_a_language_merchants_would_refuse_is_refused_at_load(
    tmp_path: Path, language: str
) -> None:
    (tmp_path / "wallet.toml").write_text(f'[wallet]\nlanguage = "{language}"\n')
    with pytest.raises(ConfigError, match=r"wallet\.language must be a language tag"):
        load(tmp_path, env={})
    (tmp_path / "wallet.toml").write_text('[wallet]\nlanguage = "en-GB"\n')
    assert load(tmp_path, env={}).language == "en-GB"
