"""merchant.toml and wallet.toml hold known tables and keys only, in UTF-8: anything else
is refused at load with the file and the setting named, never ignored for its default."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from clients.errors import ConfigError
from clients.merchant import config as merchant_config
from clients.merchant.config import AnswerMode
from clients.peers import PeerConfig
from clients.wallet import config as wallet_config


def _merchant(directory: Path) -> Path:
    gateway = PeerConfig("127.0.0.1:7443", directory / "tls/ca.pem", directory / "tls/c.pem",
                         directory / "tls/c.key")  # fmt: skip
    return merchant_config.write_config(
        directory, merchant_id="m-0001", name="Corner Shop", gateway=gateway,
        ca=PeerConfig("127.0.0.1:7443", directory / "tls/ca.pem"),
    )  # fmt: skip


def _wallet(directory: Path) -> Path:
    peer = PeerConfig("127.0.0.1:7443", directory / "ca.pem")
    return wallet_config.write_config(directory, ca=peer, merchant=peer, passphrase_file="pass")


LoadFn = Callable[[Path, dict[str, str]], object]
FILES: dict[str, tuple[Callable[[Path], Path], LoadFn]] = {
    "merchant": (_merchant, merchant_config.load),
    "wallet": (_wallet, wallet_config.load),
}


def _add(path: Path, table: str, line: str) -> None:
    """Put ``line`` at the head of ``[table]`` in the file (a new key of that table)."""
    text = path.read_text()
    assert f"[{table}]\n" in text
    path.write_text(text.replace(f"[{table}]\n", f"[{table}]\n{line}\n", 1))


def test_the_misspelt_answer_mode_of_the_review_is_refused(tmp_path: Path) -> None:
    # ``answr`` used to be ignored: the merchant then answered after authorization, the
    # default, while its operator had asked for another mode.
    path = _merchant(tmp_path)
    _add(path, "merchant", 'answr = "order-received"')
    with pytest.raises(ConfigError) as caught:
        merchant_config.load(tmp_path, env={})
    assert str(caught.value) == f"{path}: unknown setting merchant.answr"


@pytest.mark.parametrize(
    ("kind", "table", "key"),
    [
        ("merchant", "merchant", "ansewr"),
        ("merchant", "server", "threds"),
        ("merchant", "gateway", "tls_crt"),
        ("merchant", "ca", "insecur"),
        ("wallet", "wallet", "passphrase"),
        ("wallet", "ca", "tls-ca"),
        ("wallet", "merchant", "targt"),
    ],
)
def test_an_unknown_key_is_refused_naming_file_and_key(
    tmp_path: Path, kind: str, table: str, key: str
) -> None:
    write, load = FILES[kind]
    path = write(tmp_path)
    load(tmp_path, {})  # as written, it loads
    _add(path, table, f'{key} = "x"')
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, {})
    assert str(caught.value) == f"{path}: unknown setting {table}.{key}"


@pytest.mark.parametrize("kind", sorted(FILES))
def test_an_unknown_table_is_refused(tmp_path: Path, kind: str) -> None:
    write, load = FILES[kind]
    path = write(tmp_path)
    path.write_text(path.read_text() + '\n[gatewey]\ntarget = "127.0.0.1:1"\n')
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, {})
    assert str(caught.value) == f"{path}: unknown table [gatewey]"


@pytest.mark.parametrize("kind", sorted(FILES))
def test_a_key_outside_every_table_is_refused(tmp_path: Path, kind: str) -> None:
    # A key written above the first table header belongs to no table.
    write, load = FILES[kind]
    path = write(tmp_path)
    path.write_text('answer = "order-received"\n' + path.read_text())
    with pytest.raises(ConfigError, match=r"unknown setting answer \(outside every table\)"):
        load(tmp_path, {})


def test_every_documented_key_is_known(tmp_path: Path) -> None:
    """Each key the loaders read passes: the lists of known keys leave none out."""
    (tmp_path / "merchant.toml").write_text(
        '[merchant]\nid = "m-1"\nname = "n"\nbrand = "setpay"\nkeys = "soft:keys"\n'
        'answer = "order-received"\nroot = "r.pem"\nchain = "c.pem"\nstore = "m.db"\n'
        '[server]\nlisten = "127.0.0.1:1"\ntls_cert = "s.pem"\ntls_key = "s.key"\n'
        "insecure = false\nthreads = 4\nmax_concurrent_rpcs = 8\n"
        '[gateway]\ntarget = "a:1"\ntls_ca = "ca.pem"\ntls_cert = "c.pem"\ntls_key = "c.key"\n'
        'insecure = false\n[ca]\ntarget = "a:2"\ntls_ca = "ca.pem"\n'
    )
    config = merchant_config.load(tmp_path, env={})
    assert config.answer is AnswerMode.ORDER_RECEIVED and config.server.threads == 4
    assert config.store == tmp_path.resolve() / "m.db"
    (tmp_path / "wallet.toml").write_text(
        '[wallet]\nbrand = "setpay"\nkeys = "soft:keys"\nkey_label = "k"\nlanguage = "en-GB"\n'
        'root = "r.pem"\nchain = "c.pem"\npassphrase_file = "p"\n'
        '[ca]\ntarget = "a:1"\ntls_ca = "ca.pem"\n'
        '[merchant]\ntarget = "b:2"\ninsecure = true\n'
    )
    wallet = wallet_config.load(tmp_path, env={})
    assert wallet.language == "en-GB" and wallet.require_merchant().insecure


@pytest.mark.parametrize("kind", sorted(FILES))
def test_a_file_that_is_not_utf8_is_named(tmp_path: Path, kind: str) -> None:
    write, load = FILES[kind]
    path = write(tmp_path)
    # Latin-1 for "Café": the byte 0xE9 starts no UTF-8 sequence here.
    path.write_bytes(path.read_bytes().replace(b"Corner Shop", b"Caf\xe9") + b"# caf\xe9\n")
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, {})
    assert str(caught.value) == f"{path} is not UTF-8 text"
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_the_missing_merchant_table_says_what_it_needs(tmp_path: Path) -> None:
    # --merchant gives an address only: the table's tls_ca is what the wallet trusts.
    wallet_config.write_config(tmp_path, ca=PeerConfig("127.0.0.1:7443", tmp_path / "ca.pem"))
    config = wallet_config.load(tmp_path, env={})
    with pytest.raises(ConfigError) as caught:
        config.require_merchant()
    message = str(caught.value)
    assert message.startswith(f"{tmp_path.resolve() / 'wallet.toml'} has no [merchant] table")
    assert "tls_ca" in message and "only replace its target" in message
    assert "(or give --merchant)" not in message
