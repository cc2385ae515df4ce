"""``setpay demo --keys TOKEN`` without ``--dir`` runs again on the same token: the bank it
made there goes with its temporary directory, keys included."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli.main import main
from tests.cli.demo_support import assert_no_key_left, token_for_a_demo_here


def test_the_demo_runs_twice_on_one_token_and_leaves_it_empty(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    token = token_for_a_demo_here(tmp_path, tmp_path_factory, monkeypatch)
    for run in (1, 2):
        code = main(["demo", "--keys", token.uri(), "--json"])
        out = capsys.readouterr()
        assert code == 0, f"run {run}: {out.err}"
        assert json.loads(out.out)["summary"]["ok"] is True
    # (The PKCS#11 backend's per-user lock directory stays, as for any token user.)
    assert list(tmp_path.glob("setpay-demo-*")) == []
    assert_no_key_left(token)
