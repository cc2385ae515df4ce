"""The PostgreSQL test cluster: missing server binaries fail the tests, never skip them."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.gateway.ledger import ledger_support


def test_missing_postgresql_fails_loudly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SETPAY_PG_BINDIR", str(tmp_path / "nowhere"))
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(ledger_support, "DEBIAN_PG_ROOT", tmp_path / "no-postgresql")
    with pytest.raises(pytest.fail.Exception, match="postgresql"):
        ledger_support.find_pg_bindir()


def test_installed_postgresql_is_found() -> None:
    bindir = ledger_support.find_pg_bindir()
    assert (bindir / "initdb").is_file() and (bindir / "pg_ctl").is_file()
