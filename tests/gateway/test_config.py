"""The bank's configuration: every bad or missing value refused by file and key, no secret
echoed, relative paths taken from the file's directory, environment overrides checked."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from gateway import config as settings
from gateway.bank_pki import bank_keys_uri
from gateway.config import BankConfig, ConfigError, config_option, load
from hsm.uri import SoftwareKeyURI, parse_key_uri

# An insecure bank needs no TLS files: the smallest configuration that loads.
MINIMAL = "[gateway]\ninsecure = true\n"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "setpay.toml"
    path.write_text(text)
    return path


def _refused(path: Path, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        load(path, env={} if env is None else env)
    return str(caught.value)


def test_the_minimal_configuration_loads(tmp_path: Path) -> None:
    config = load(_write(tmp_path, MINIMAL), env={})
    assert config.insecure and config.base_dir == tmp_path.resolve()


def test_advised_commands_name_the_file_the_bank_was_loaded_from(tmp_path: Path) -> None:
    # Any file name, in a directory a shell would split: the --config an advice carries
    # (``config_option``) pastes as that very file, not the directory's setpay.toml.
    directory = tmp_path / "the bank"
    directory.mkdir()
    path = directory / "prod.toml"
    path.write_text(MINIMAL)
    option = shlex.split(config_option(load(path, env={})))
    assert option == ["--config", str(path.resolve())]
    # A link to a file kept elsewhere: named as the bank was started, where its relative
    # paths resolve, not as the file it points at.
    elsewhere = tmp_path / "etc"
    elsewhere.mkdir()
    (elsewhere / "bank.toml").write_text(MINIMAL)
    link = directory / "setpay.toml"
    link.symlink_to(elsewhere / "bank.toml")
    linked = shlex.split(config_option(load(link, env={})))
    assert linked == ["--config", str(directory.resolve() / "setpay.toml")]
    built = BankConfig(base_dir=directory)  # in code, from no file: the directory's own
    assert shlex.split(config_option(built)) == ["--config", str(directory / "setpay.toml")]


@pytest.mark.parametrize("missing", ["cert", "key", "client_ca"])
def test_a_tls_table_without_one_of_its_files_is_refused(tmp_path: Path, missing: str) -> None:
    # A missing file used to become the configuration's directory, found only when the
    # server failed to read it as a PEM file.
    files = {"cert": "tls/gateway.pem", "key": "tls/gateway.key", "client_ca": "tls/ca.pem"}
    del files[missing]
    lines = "".join(f'{name} = "{value}"\n' for name, value in files.items())
    message = _refused(_write(tmp_path, f"[gateway.tls]\n{lines}"))
    assert str(tmp_path / "setpay.toml") in message
    assert f"gateway.tls.{missing} is required" in message


def test_a_value_of_the_wrong_type_names_the_file_and_the_key(tmp_path: Path) -> None:
    message = _refused(_write(tmp_path, MINIMAL + 'workers = "four"\n'))
    assert message == f"{tmp_path / 'setpay.toml'}: gateway.workers must be int, not str"


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ('bank = "ec"\n', "bank"),
        ("gateway = 3\n", "gateway"),
        (MINIMAL + 'tls = "tls/gateway.pem"\n', "gateway.tls"),
        ('[[ledger]]\nstore = "sqlite:ledger.db"\n', "ledger"),
    ],
)
def test_a_section_that_is_not_a_table_is_refused(tmp_path: Path, text: str, named: str) -> None:
    message = _refused(_write(tmp_path, text))
    assert message.startswith(f"{tmp_path / 'setpay.toml'}: {named} must be a table")


@pytest.mark.parametrize(
    ("text", "named"),
    [
        (MINIMAL + "reflexion = false\n", "gateway.reflexion"),  # reflection stayed on
        (MINIMAL + "[gateway.tls]\ncert = 'a'\nkey = 'b'\nclient-ca = 'c'\n", "gateway.tls"),
        (MINIMAL + "[ledgers]\nstore = 'sqlite:other.db'\n", "ledgers"),
        (MINIMAL + "[ledger]\nprepared_statements = true\n", "ledger.prepared_statements"),
    ],
)
def test_an_unknown_setting_is_refused_rather_than_ignored(
    tmp_path: Path, text: str, named: str
) -> None:
    message = _refused(_write(tmp_path, text))
    assert str(tmp_path / "setpay.toml") in message and named in message


def test_an_unreadable_file_is_a_configuration_error(tmp_path: Path) -> None:
    directory = tmp_path / "setpay.toml"
    directory.mkdir()
    message = _refused(directory)
    assert message.startswith(f"cannot read {directory}")


@pytest.mark.parametrize(
    "listen",
    ["127.0.0.1:65536", "127.0.0.1:99999", "[::1]:-1", "127.0.0.1:\u00b2", "127.0.0.1:\uff17"],
)
def test_a_port_out_of_range_is_refused(tmp_path: Path, listen: str) -> None:
    message = _refused(_write(tmp_path, MINIMAL + f'listen = "{listen}"\n'))
    assert "listen must be HOST:PORT" in message and str(tmp_path) in message


@pytest.mark.parametrize(
    ("key", "value"),
    [("max_message_bytes", 0), ("max_message_bytes", -1), ("max_concurrent_rpcs", 0)],
)
def test_limits_must_be_positive(tmp_path: Path, key: str, value: int) -> None:
    # gRPC reads -1 as "no limit": a typo would lift the bound on what a peer may send.
    message = _refused(_write(tmp_path, MINIMAL + f"{key} = {value}\n"))
    assert f"gateway.{key} must be between" in message


@pytest.mark.parametrize("key", ["brand_id", "keys"])
def test_an_empty_bank_setting_is_refused(tmp_path: Path, key: str) -> None:
    message = _refused(_write(tmp_path, MINIMAL + f'[bank]\n{key} = ""\n'))
    assert f"bank.{key} must not be empty" in message


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("SETPAY_WORKERS", "0", "workers must be between 1 and"),
        ("SETPAY_WORKERS", "many", "must be an integer"),
        ("SETPAY_LISTEN", "no-port", "listen must be HOST:PORT"),
        ("SETPAY_CA_LISTEN", "127.0.0.1:70000", "ca_listen must be HOST:PORT"),
        ("SETPAY_METRICS_PORT", "70000", "metrics_port must be between 0"),
        ("SETPAY_SCHEDULING", "fifo", "scheduling must be one of"),
    ],
)
def test_a_refused_environment_override_names_its_variable(
    tmp_path: Path, variable: str, value: str, says: str
) -> None:
    message = _refused(_write(tmp_path, MINIMAL), {variable: value})
    assert message.startswith(variable) and says in message


@pytest.mark.parametrize(
    ("variable", "must_be"),
    [
        ("SETPAY_WORKERS", "an integer"),
        ("SETPAY_THREADS", "an integer"),
        ("SETPAY_METRICS_PORT", "a port number or any"),
    ],
)
@pytest.mark.parametrize("value", ["\uff12", "1_6", " 2", "2 ", "+2", "2.0"])  # fullwidth 2
def test_a_number_in_the_environment_is_ascii_digits_only(
    tmp_path: Path, variable: str, must_be: str, value: str
) -> None:
    """int() took a fullwidth digit as 2, 1_6 as 16 and spaces around either: a value
    that is not what it looks like in a unit file or a shell, and which ``parse_port``
    already refused in an address."""
    assert _refused(_write(tmp_path, MINIMAL), {variable: value}) == f"{variable} must be {must_be}"


def test_the_threads_limit_is_the_named_one(tmp_path: Path) -> None:
    limit = settings.MAX_THREADS
    path = _write(tmp_path, MINIMAL)
    assert load(path, env={"SETPAY_THREADS": str(limit)}).threads == limit
    message = _refused(path, {"SETPAY_THREADS": str(limit + 1)})
    assert message == f"SETPAY_THREADS: gateway.threads must be between 1 and {limit}"


def test_a_refused_ledger_url_is_never_echoed(tmp_path: Path) -> None:
    secret = "s3cret-passw0rd"
    message = _refused(
        _write(tmp_path, MINIMAL), {"SETPAY_LEDGER": f"mysql://bank:{secret}@db/ledger"}
    )
    assert message.startswith("SETPAY_LEDGER: ") and secret not in message
    path = _write(tmp_path, MINIMAL + f'[ledger]\nstore = "mysql://bank:{secret}@db/x"\n')
    message = _refused(path)
    assert message.startswith(f"{path}: ") and secret not in message


def test_a_file_value_refused_by_validation_names_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path, MINIMAL + "workers = 0\n")
    assert _refused(path).startswith(f"{path}: gateway.workers must be between 1 and")


@pytest.mark.parametrize("name", ["bank;1", "bank%41", "bank 1"])
def test_a_relative_keystore_resolves_in_any_directory(tmp_path: Path, name: str) -> None:
    # The directory went into the key URI unencoded: ';' split it into attributes and
    # '%41' was decoded to 'A', so the bank looked for its keys somewhere else.
    base = tmp_path / name
    config = BankConfig(base_dir=base, keys="soft:keys;pin-source=file:keys.pass")
    parsed = parse_key_uri(config.keys_uri())
    assert isinstance(parsed, SoftwareKeyURI)
    assert parsed.directory == str(base / "keys")


@pytest.mark.parametrize(
    ("attribute", "file_name"),
    [
        ("pin-source=file:keys.pass", "keys.pass"),
        ("pin-source=file:my%20pin", "my pin"),  # %-encoded as a URI value must be
        ("PIN-SOURCE=file:keys.pass", "keys.pass"),  # names are case-insensitive
    ],
)
def test_a_relative_pin_file_resolves_in_the_configurations_directory(
    tmp_path: Path, attribute: str, file_name: str
) -> None:
    # It was encoded a second time ("my%2520pin") or, spelled in capitals, left relative
    # to whatever directory the bank was started from.
    base = tmp_path / "bank;1"
    config = BankConfig(base_dir=base, keys=f"soft:keys;{attribute}")
    parsed = parse_key_uri(bank_keys_uri(config))
    assert parsed.pin_source.describe() == f"file:{base / file_name}"


def test_a_relative_pin_file_in_a_pkcs11_query_resolves_there_too(tmp_path: Path) -> None:
    # RFC 7512 puts pin-source in the query part (``?`` then ``&``), which hsm.uri reads.
    base = tmp_path / "bank"
    config = BankConfig(
        base_dir=base, keys="pkcs11:module=/m.so;token=t?pin-source=file:tok.pin&x-pool-size=2"
    )
    parsed = parse_key_uri(bank_keys_uri(config))
    assert parsed.pin_source.describe() == f"file:{base / 'tok.pin'}"
    assert parsed.pool_size == 2  # the rest of the query is kept


def test_a_setting_the_environment_replaces_is_judged_as_replaced(tmp_path: Path) -> None:
    # The file's value never serves, so it is not refused; an error in the file's other
    # settings still names the file.
    path = _write(tmp_path, MINIMAL + 'listen = "127.0.0.1:70000"\n')
    assert load(path, env={"SETPAY_LISTEN": "127.0.0.1:7443"}).listen == "127.0.0.1:7443"
    message = _refused(path)
    assert message.startswith(f"{path}: ") and "listen must be HOST:PORT" in message


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("1", "currency 1 is not assigned in ISO 4217"),
        ("2", "currency 2 is not assigned in ISO 4217"),
        ("932", "currency 932 (ZWL) was withdrawn from ISO 4217"),
        ("975", "currency 975 (BGN) was withdrawn from ISO 4217"),
    ],
)
def test_a_settlement_currency_iso_4217_does_not_list_now_is_refused_by_its_number(
    tmp_path: Path, value: str, says: str
) -> None:
    """The CA opens merchant accounts in it: the old code took any code from 1 to 999."""
    message = _refused(_write(tmp_path, MINIMAL + f"[ledger]\nsettlement_currency = {value}\n"))
    assert "ledger.settlement_currency must be the ISO 4217 numeric code" in message
    assert says in message


@pytest.mark.parametrize("value", [924, 925, 532])  # ZWG, SLE, XCG: the successors
def test_a_settlement_currency_iso_4217_added_lately_is_taken(tmp_path: Path, value: int) -> None:
    path = _write(tmp_path, MINIMAL + f"[ledger]\nsettlement_currency = {value}\n")
    assert load(path, env={}).settlement_currency == value


def test_a_settlement_currency_out_of_range_is_not_repeated(tmp_path: Path) -> None:
    """A long number there could be a card number pasted in the wrong place."""
    message = _refused(_write(tmp_path, MINIMAL + "[ledger]\nsettlement_currency = 4999\n"))
    assert "1 to 999" in message and "4999" not in message


@pytest.mark.parametrize(
    ("store", "lines", "prepares"),
    [
        ("postgresql://ledger@db/bank", "", False),  # the default: a pooler may be in between
        ("postgresql://ledger@db/bank", "prepare_statements = false\n", False),
        ("postgresql://ledger@db/bank", "prepare_statements = true\n", True),
        # Taken and ignored for SQLite, as ``service`` is for PostgreSQL: the same file
        # serves either store.
        ("sqlite:ledger.db", "prepare_statements = true\n", True),
    ],
)
def test_the_ledger_prepares_statements_only_when_the_file_says_so(
    tmp_path: Path, store: str, lines: str, prepares: bool
) -> None:
    path = _write(tmp_path, MINIMAL + f'[ledger]\nstore = "{store}"\n{lines}')
    assert load(path, env={}).ledger_prepare_statements is prepares


@pytest.mark.parametrize(("value", "kind"), [('"true"', "str"), ("1", "int"), ("[true]", "list")])
def test_a_prepare_statements_setting_that_is_no_bool_is_refused(
    tmp_path: Path, value: str, kind: str
) -> None:
    path = _write(tmp_path, MINIMAL + f"[ledger]\nprepare_statements = {value}\n")
    assert _refused(path) == f"{path}: ledger.prepare_statements must be bool, not {kind}"
