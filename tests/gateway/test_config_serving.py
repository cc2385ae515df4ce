"""The configuration of how the bank stops and where it serves metrics: the grace period
(``grace_seconds``, ``SETPAY_GRACE_SECONDS``), the NOT_SERVING notice before it
(``not_serving_seconds``) and a metrics port the OS picks (``metrics_port = "any"``),
each refused clearly when wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway import config as settings
from gateway.config import DEFAULT_GRACE_SECONDS, MAX_GRACE_SECONDS, ConfigError, load
from gateway.environment import METRICS_ANY_PORT

# An insecure bank needs no TLS files: the smallest configuration that loads.
MINIMAL = "[gateway]\ninsecure = true\n"
GRACE_RULE = f"gateway.grace_seconds must be more than 0 and at most {MAX_GRACE_SECONDS:g} seconds"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "setpay.toml"
    path.write_text(text)
    return path


def _refused(path: Path, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        load(path, env={} if env is None else env)
    return str(caught.value)


def test_the_grace_period_comes_from_the_file_or_the_environment(tmp_path: Path) -> None:
    path = _write(tmp_path, MINIMAL)
    assert load(path, env={}).grace_seconds == DEFAULT_GRACE_SECONDS
    path = _write(tmp_path, MINIMAL + "grace_seconds = 30\n")
    assert load(path, env={}).grace_seconds == 30.0
    assert load(path, env={"SETPAY_GRACE_SECONDS": "2.5"}).grace_seconds == 2.5
    path = _write(tmp_path, MINIMAL + f"grace_seconds = {MAX_GRACE_SECONDS}\n")
    assert load(path, env={}).grace_seconds == MAX_GRACE_SECONDS


@pytest.mark.parametrize(
    "value", ["0", "-1", "0.0", str(MAX_GRACE_SECONDS + 1), "5000", "inf", "nan"]
)
def test_a_grace_period_out_of_bounds_is_refused_naming_the_file(
    tmp_path: Path, value: str
) -> None:
    path = _write(tmp_path, MINIMAL + f"grace_seconds = {value}\n")
    assert _refused(path) == f"{path}: {GRACE_RULE}"


@pytest.mark.parametrize(("value", "kind"), [('"5"', "str"), ("true", "bool"), ("[5]", "list")])
def test_a_grace_period_that_is_no_number_is_refused(tmp_path: Path, value: str, kind: str) -> None:
    path = _write(tmp_path, MINIMAL + f"grace_seconds = {value}\n")
    assert _refused(path) == f"{path}: gateway.grace_seconds must be a number, not {kind}"


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("0", f": {GRACE_RULE}"),
        ("-3", f": {GRACE_RULE}"),
        ("301", f": {GRACE_RULE}"),
        ("5s", " must be a number of seconds"),
        ("", " must be a number of seconds"),
        # What float() reads but an operator does not write: no number of seconds either.
        ("nan", " must be a number of seconds"),
        ("inf", " must be a number of seconds"),
        ("1e1", " must be a number of seconds"),
        ("1_0", " must be a number of seconds"),
        (" 5", " must be a number of seconds"),
        ("\uff15", " must be a number of seconds"),  # a fullwidth 5
    ],
)
def test_a_refused_grace_period_from_the_environment_names_its_variable(
    tmp_path: Path, value: str, says: str
) -> None:
    message = _refused(_write(tmp_path, MINIMAL), {"SETPAY_GRACE_SECONDS": value})
    assert message == f"SETPAY_GRACE_SECONDS{says}"


def test_the_not_serving_notice_comes_from_the_file_or_the_environment(tmp_path: Path) -> None:
    path = _write(tmp_path, MINIMAL)
    assert load(path, env={}).not_serving_seconds == settings.DEFAULT_NOT_SERVING_SECONDS
    path = _write(tmp_path, MINIMAL + "not_serving_seconds = 0\n")
    assert load(path, env={}).not_serving_seconds == 0.0  # no notice: stop at once
    assert load(path, env={"SETPAY_NOT_SERVING_SECONDS": "2.5"}).not_serving_seconds == 2.5


@pytest.mark.parametrize("value", ["-1", "61", "inf", "nan"])  # 61: past the limit, 60
def test_a_not_serving_notice_out_of_bounds_is_refused(tmp_path: Path, value: str) -> None:
    path = _write(tmp_path, MINIMAL + f"not_serving_seconds = {value}\n")
    rule = f"must be between 0 and {settings.MAX_NOT_SERVING_SECONDS:g} seconds"
    assert _refused(path) == f"{path}: gateway.not_serving_seconds {rule}"
    if value not in {"inf", "nan"}:
        message = _refused(_write(tmp_path, MINIMAL), {"SETPAY_NOT_SERVING_SECONDS": value})
        assert message == f"SETPAY_NOT_SERVING_SECONDS: gateway.not_serving_seconds {rule}"


def test_metrics_port_any_is_a_port_the_os_picks_and_zero_is_still_off(tmp_path: Path) -> None:
    path = _write(tmp_path, MINIMAL)
    assert load(path, env={}).metrics_port == 0
    assert load(path, env={"SETPAY_METRICS_PORT": "any"}).metrics_port == METRICS_ANY_PORT
    assert load(path, env={"SETPAY_METRICS_PORT": "ANY"}).metrics_port == METRICS_ANY_PORT
    path = _write(tmp_path, MINIMAL + 'metrics_port = "any"\n')
    assert load(path, env={}).metrics_port == METRICS_ANY_PORT
    assert load(path, env={"SETPAY_METRICS_PORT": "0"}).metrics_port == 0


@pytest.mark.parametrize("word", ["any", "ANY", "Any", " any ", "any\t"])
def test_any_is_one_rule_in_the_file_and_the_environment(tmp_path: Path, word: str) -> None:
    """``any`` in any case, spaces around it allowed, wherever it is written. Before, the
    file took exactly "any" and refused what the environment and the command line took."""
    path = _write(tmp_path, MINIMAL + f"metrics_port = {word!r}\n".replace("'", '"'))
    assert load(path, env={}).metrics_port == METRICS_ANY_PORT
    path = _write(tmp_path, MINIMAL)
    assert load(path, env={"SETPAY_METRICS_PORT": word}).metrics_port == METRICS_ANY_PORT


def test_a_metrics_port_neither_a_number_nor_any_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, MINIMAL + 'metrics_port = "anywhere"\n')
    assert _refused(path) == f'{path}: gateway.metrics_port must be int or "any", not str'
    message = _refused(_write(tmp_path, MINIMAL), {"SETPAY_METRICS_PORT": "anywhere"})
    assert message == "SETPAY_METRICS_PORT must be a port number or any"
    message = _refused(_write(tmp_path, MINIMAL), {"SETPAY_METRICS_PORT": "-1"})
    assert message.startswith("SETPAY_METRICS_PORT: gateway.metrics_port must be between 0")
