"""A bank whose SQLite ``ledger.store`` (or ``SETPAY_LEDGER``) names a directory or a
special file is refused as the configuration is read, naming the path and why: opened,
SQLite said only "SQLite is unavailable (SQLITE_IOERR_READ)" of a directory, naming
nothing, and the store-only commands said there was "no ledger" there."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.config import ConfigError, load
from gateway.provisioning import InitResult, init_bank
from tests.cli.command_support import run_bank

LEDGER_LINE = 'store = "sqlite:ledger.db"'


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> InitResult:
    return init_bank(tmp_path_factory.mktemp("ledger-store-path") / "bank", env={})


@pytest.fixture
def store_set(made: InitResult, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The bank's setpay.toml, its ``ledger.store`` line to be replaced by the test; put
    back after it."""
    monkeypatch.delenv("SETPAY_LEDGER", raising=False)
    text = made.config_path.read_text()
    assert LEDGER_LINE in text
    yield made.config_path
    made.config_path.write_text(text)


def _with_store(config_path: Path, url: str) -> None:
    text = config_path.read_text()
    config_path.write_text(text.replace(LEDGER_LINE, f'store = "{url}"'))


@pytest.mark.parametrize("url", ["sqlite:.", "sqlite:", "sqlite:certs"])
@pytest.mark.parametrize(
    "command",
    [
        ["prune-ledger", "--dry-run"],
        ["check-books"],
        ["show-account", "--account", "card-" + "a" * 24],
    ],
)
def test_a_directory_as_the_ledger_is_named_with_the_reason(
    made: InitResult,
    store_set: Path,
    url: str,
    command: list[str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    _with_store(store_set, url)
    directory = made.directory / url.removeprefix("sqlite:")
    code, out, err = run_bank(["--config", str(store_set), *command], capsys)
    assert (code, out) == (1, "")
    assert err == (
        f"setpay bank: {store_set}: ledger.store must name the ledger's database file, not "
        f"the directory {Path(os.path.normpath(directory))}\n"
    )


def test_setpay_ledger_naming_a_directory_is_named_as_the_source(
    store_set: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SETPAY_LEDGER", f"sqlite:{tmp_path}")
    with pytest.raises(ConfigError) as refused:
        load(store_set)
    assert str(refused.value) == (
        f"SETPAY_LEDGER: ledger.store must name the ledger's database file, not the "
        f"directory {tmp_path}"
    )


def test_a_fifo_as_the_ledger_is_refused_unopened(store_set: Path, tmp_path: Path) -> None:
    # Opened, SQLite would wait on it for ever: refused as the configuration is read.
    fifo = tmp_path / "ledger.db"
    os.mkfifo(fifo)
    _with_store(store_set, f"sqlite:{fifo}")
    with pytest.raises(ConfigError, match="must name the ledger's database file") as refused:
        load(store_set)
    assert str(refused.value).endswith(f"not the special file {fifo}")


def test_a_ledger_file_not_made_yet_is_still_taken(store_set: Path, tmp_path: Path) -> None:
    # A new bank's ledger is made on first open: its absence is no refusal.
    _with_store(store_set, f"sqlite:{tmp_path / 'new-ledger.db'}")
    assert load(store_set).ledger_url() == f"sqlite:{tmp_path / 'new-ledger.db'}"
