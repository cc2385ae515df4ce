"""``setpay demo --keys TOKEN`` without ``--dir`` runs again on the same token: the bank it
made there goes with its temporary directory, keys included."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli.main import main
from hsm.uri import open_backend


def test_the_demo_runs_twice_on_one_token_and_leaves_it_empty(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    from tests.hsm.testbed import session_softhsm

    token = session_softhsm(tmp_path_factory).init_token()
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    for run in (1, 2):
        code = main(["demo", "--keys", token.uri(), "--json"])
        out = capsys.readouterr()
        assert code == 0, f"run {run}: {out.err}"
        assert json.loads(out.out)["summary"]["ok"] is True
    # (The PKCS#11 backend's per-user lock directory stays, as for any token user.)
    assert list(tmp_path.glob("setpay-demo-*")) == []
    backend = open_backend(token.uri())
    try:
        assert backend.list_keys() == []
    finally:
        backend.close()
