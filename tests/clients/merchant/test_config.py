"""The merchant's configuration: TOML, environment overrides, validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from clients.errors import ConfigError
from clients.merchant import config as merchant_config
from clients.merchant.config import AnswerMode, load, write_config
from clients.peers import PeerConfig
from gateway.config import BankConfig
from setcore.pki.extensions import MAX_MERCHANT_NAME_CHARS


def _write(directory: Path, **overrides: object) -> None:
    gateway = PeerConfig("127.0.0.1:7443", directory / "tls/ca.pem", directory / "tls/c.pem",
                         directory / "tls/c.key")  # fmt: skip
    ca = PeerConfig("127.0.0.1:7443", directory / "tls/ca.pem")
    args: dict[str, object] = {"merchant_id": "m-0001", "name": "Corner Shop", "gateway": gateway,
                               "ca": ca}  # fmt: skip
    args.update(overrides)
    write_config(directory, **args)  # type: ignore[arg-type]


def test_written_config_loads(tmp_path: Path) -> None:
    _write(tmp_path, answer=AnswerMode.ORDER_RECEIVED)
    config = load(tmp_path, env={})
    assert config.merchant_id == "m-0001" and config.name == "Corner Shop"
    assert config.answer is AnswerMode.ORDER_RECEIVED
    assert config.gateway.tls_cert == tmp_path.resolve() / "tls/c.pem"
    assert config.ca.tls_cert is None
    assert config.keys_uri() == f"soft:{tmp_path.resolve() / 'keys'}"
    assert config.root == tmp_path.resolve() / "certs/root.pem"
    assert config.server.tls_cert == tmp_path.resolve() / "tls/server.pem"


def test_environment_overrides(tmp_path: Path) -> None:
    _write(tmp_path)
    config = load(tmp_path, env={
        "SETPAY_MERCHANT_ID": "m-0002", "SETPAY_MERCHANT_ANSWER": "order-received",
        "SETPAY_MERCHANT_LISTEN": "0.0.0.0:9443", "SETPAY_MERCHANT_GATEWAY": "gw:1",
        "SETPAY_MERCHANT_CA": "ca:2", "SETPAY_MERCHANT_KEYS": "soft:other-keys",
    })  # fmt: skip
    assert config.merchant_id == "m-0002"
    assert config.answer is AnswerMode.ORDER_RECEIVED
    assert config.server.listen == "0.0.0.0:9443"
    assert config.gateway.target == "gw:1" and config.ca.target == "ca:2"
    assert config.keys_uri() == f"soft:{tmp_path.resolve() / 'other-keys'}"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SETPAY_MERCHANT_ANSWER": "whenever"}, "SETPAY_MERCHANT_ANSWER must be one of"),
        ({"SETPAY_MERCHANT_LISTEN": "nowhere"}, "SETPAY_MERCHANT_LISTEN must be HOST:PORT"),
        ({"SETPAY_MERCHANT_ID": "bad id!"}, "SETPAY_MERCHANT_ID must be 1..64"),
        ({"SETPAY_MERCHANT_KEYS": ""}, r"SETPAY_MERCHANT_KEYS \(a key URI\) is required"),
    ],
)
def test_bad_values_named(tmp_path: Path, env: dict[str, str], message: str) -> None:
    _write(tmp_path)
    with pytest.raises(ConfigError, match=message):
        load(tmp_path, env=env)


def test_tls_required_unless_insecure(tmp_path: Path) -> None:
    (tmp_path / "merchant.toml").write_text(
        '[merchant]\nid = "m-1"\n[server]\nlisten = "127.0.0.1:1"\n'
        '[gateway]\ntarget = "a:1"\n[ca]\ntarget = "a:1"\ninsecure = true\n'
    )
    with pytest.raises(ConfigError, match=r"server\.tls_cert"):
        load(tmp_path, env={})


def test_insecure_gateway_needs_saying_so(tmp_path: Path) -> None:
    (tmp_path / "merchant.toml").write_text(
        '[merchant]\nid = "m-1"\n[server]\ninsecure = true\n'
        '[gateway]\ntarget = "a:1"\n[ca]\ntarget = "a:1"\ninsecure = true\n'
    )
    with pytest.raises(ConfigError, match=r"gateway\.tls_ca"):
        load(tmp_path, env={})


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no merchant configuration"):
        load(tmp_path, env={})
    (tmp_path / "merchant.toml").write_text("[merchant\n")
    with pytest.raises(ConfigError, match=r"merchant\.toml"):
        load(tmp_path, env={})
    (tmp_path / "merchant.toml").write_text("[merchant]\nid = 7\n")
    with pytest.raises(ConfigError, match=r"merchant\.id must be str"):
        load(tmp_path, env={})


@pytest.mark.parametrize("table", ["merchant", "server", "gateway", "ca"])
@pytest.mark.parametrize("value", ["3", '"m-0001"', "[1, 2]"])
def test_a_table_that_is_not_one_is_named(tmp_path: Path, table: str, value: str) -> None:
    """``merchant = 3`` instead of ``[merchant]``: refused, naming the file and the key."""
    _write(tmp_path)
    path = tmp_path / "merchant.toml"
    sections = [s for s in path.read_text().split("\n\n") if not s.startswith(f"[{table}]")]
    # A top-level key comes before every table header.
    path.write_text(f"{table} = {value}\n" + "\n\n".join(sections))
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, env={})
    assert str(caught.value).startswith(f"{path}: {table} must be a table, not ")


def test_an_array_of_tables_is_not_a_table(tmp_path: Path) -> None:
    _write(tmp_path)
    path = tmp_path / "merchant.toml"
    path.write_text(path.read_text().replace("[server]", "[[server]]"))
    with pytest.raises(ConfigError, match=r"merchant\.toml: server must be a table, not list"):
        load(tmp_path, env={})


@pytest.mark.parametrize("keys", ["soft:ephemeral", "soft:%65phemeral"])
def test_ephemeral_keys_are_refused_in_the_file(tmp_path: Path, keys: str) -> None:
    """register would certify keys gone when it exits, leaving the ID certified for
    nothing; %-encoded, the URI still names them (hsm.uri decodes the location)."""
    _write(tmp_path, keys=keys)
    with pytest.raises(ConfigError, match=r"^merchant\.keys must not be soft:ephemeral"):
        load(tmp_path, env={})


def test_ephemeral_keys_are_refused_in_the_variable(tmp_path: Path) -> None:
    _write(tmp_path)
    with pytest.raises(ConfigError, match=r"^SETPAY_MERCHANT_KEYS must not be soft:ephemeral"):
        load(tmp_path, env={"SETPAY_MERCHANT_KEYS": "soft:ephemeral"})


def test_a_keystore_directory_named_like_ephemeral_is_a_directory(tmp_path: Path) -> None:
    _write(tmp_path, keys="soft:ephemeral-keys")
    assert load(tmp_path, env={}).keys_uri() == f"soft:{tmp_path.resolve() / 'ephemeral-keys'}"


def test_a_name_the_merchant_ca_would_refuse_is_refused_at_load(tmp_path: Path) -> None:
    _write(tmp_path, name="n" * MAX_MERCHANT_NAME_CHARS)
    assert len(load(tmp_path, env={}).name) == MAX_MERCHANT_NAME_CHARS
    _write(tmp_path, name="n" * (MAX_MERCHANT_NAME_CHARS + 1))
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, env={})
    assert str(caught.value) == (
        f"merchant.name must be at most {MAX_MERCHANT_NAME_CHARS} characters, not "
        f"{MAX_MERCHANT_NAME_CHARS + 1}"
    )


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("Corner\u202eShop", "U+202E RIGHT-TO-LEFT OVERRIDE"),
        ("Corner\nShop", "U+000A control character"),
        ("Corner\u2028Shop", "U+2028 LINE SEPARATOR"),
    ],
)
def test_a_name_with_a_character_the_ca_refuses_is_refused_at_load(
    tmp_path: Path, name: str, message: str
) -> None:
    _write(tmp_path, name=name)
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, env={})
    assert (
        str(caught.value)
        == f"merchant.name holds {message}, which the Merchant CA refuses in a name"
    )


def test_a_name_with_joiners_is_taken_at_load(tmp_path: Path) -> None:
    name = "\u0645\u06cc\u200c\u062e\u0627\u0646\u0647 \U0001f468\u200d\U0001f469"
    _write(tmp_path)
    # Written in the file as UTF-8, as an editor writes it.
    path = tmp_path / "merchant.toml"
    path.write_text(path.read_text().replace('"Corner Shop"', f'"{name}"'), encoding="utf-8")
    assert load(tmp_path, env={}).name == name


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('listen = "8443"', "server.listen must be HOST:PORT, not '8443'"),
        ("threads = 0", "server.threads must be 1..256, not 0"),
        ("max_concurrent_rpcs = 10001", "server.max_concurrent_rpcs must be 1..10000, not 10001"),
    ],
)
def test_server_refusals_name_their_key(tmp_path: Path, line: str, message: str) -> None:
    _write(tmp_path)
    path = tmp_path / "merchant.toml"
    key = line.split(" =", maxsplit=1)[0]
    kept = [row for row in path.read_text().splitlines() if not row.startswith(f"{key} =")]
    path.write_text("\n".join(kept).replace("[server]", f"[server]\n{line}") + "\n")
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, env={})
    assert str(caught.value) == message


def test_the_documented_example_names_the_ca_port(tmp_path: Path) -> None:
    """The module's example loads, its [ca] target the port the bank's CA listens on by
    default (it gave the gateway's)."""
    doc = merchant_config.__doc__ or ""
    example = doc.split("Example::\n", 1)[1]
    (tmp_path / "merchant.toml").write_text("\n".join(line[4:] for line in example.splitlines()))
    config = load(tmp_path, env={})
    assert config.ca.target == BankConfig.ca_listen
    assert config.gateway.target == BankConfig.listen
