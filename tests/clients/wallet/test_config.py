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
                                 "SETPAY_WALLET_KEYS": "soft:other-keys"})  # fmt: skip
    assert config.require_ca().target == "c:3"
    assert config.require_merchant().target == "d:4"
    assert config.keys_uri() == f"soft:{tmp_path.resolve() / 'other-keys'}"


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


def _peers(tmp_path: Path, *tables: str) -> None:
    """A wallet.toml holding only the peer ``tables`` named (``ca``, ``merchant``)."""
    text = "".join(f'[{t}]\ntarget = "127.0.0.1:9"\ntls_ca = "ca.pem"\n' for t in tables)
    (tmp_path / "wallet.toml").write_text(text)


@pytest.mark.parametrize(
    ("table", "variable", "require"),
    [("merchant", "SETPAY_WALLET_MERCHANT", "require_merchant"),
     ("ca", "SETPAY_WALLET_CA", "require_ca")],
)  # fmt: skip
def test_a_peer_variable_without_its_table_stops_only_what_calls_the_peer(
    tmp_path: Path, table: str, variable: str, require: str
) -> None:
    """It stopped every command at load, ``show`` and ``register`` included."""
    _peers(tmp_path, *({"ca", "merchant"} - {table}))
    config = load(tmp_path, env={variable: "shop.example:8443"})
    with pytest.raises(ConfigError) as caught:
        getattr(config, require)()
    message = str(caught.value)
    assert message.startswith(f"{tmp_path.resolve() / 'wallet.toml'} has no [{table}] table")
    assert f"{variable} only replace" in message
    with pytest.raises(ConfigError, match=f"^{variable} must be HOST:PORT, not 'shop'$"):
        load(tmp_path, env={variable: "shop"})


def test_the_missing_ca_table_names_the_file(tmp_path: Path) -> None:
    _peers(tmp_path, "merchant")
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, env={}).require_ca()
    assert str(caught.value) == (
        f"{tmp_path.resolve() / 'wallet.toml'} has no [ca] table: add one with the CA's "
        "target and tls_ca (SETPAY_WALLET_CA only replaces its target)"
    )


@pytest.mark.parametrize("keys", ["soft:ephemeral", "soft:%65phemeral"])
def test_ephemeral_keys_are_refused_in_the_file(tmp_path: Path, keys: str) -> None:
    (tmp_path / "wallet.toml").write_text(f'[wallet]\nkeys = "{keys}"\n')
    with pytest.raises(ConfigError, match=r"^wallet\.keys must not be soft:ephemeral"):
        load(tmp_path, env={})


@pytest.mark.parametrize(
    ("value", "message"),
    [("soft:ephemeral", "must not be soft:ephemeral"), ("", r"\(a key URI\) is required")],
)
def test_a_keys_variable_is_refused_under_its_own_name(
    tmp_path: Path, value: str, message: str
) -> None:
    (tmp_path / "wallet.toml").write_text("[wallet]\n")
    with pytest.raises(ConfigError, match=f"^SETPAY_WALLET_KEYS {message}"):
        load(tmp_path, env={"SETPAY_WALLET_KEYS": value})


@pytest.mark.parametrize("key", ["brand", "keys", "key_label"])
def test_an_empty_key_is_named_alone(tmp_path: Path, key: str) -> None:
    (tmp_path / "wallet.toml").write_text(f'[wallet]\n{key} = ""\n')
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, env={})
    assert str(caught.value).startswith(f"wallet.{key} ")
    assert "must not be empty" in str(caught.value) or "is required" in str(caught.value)
