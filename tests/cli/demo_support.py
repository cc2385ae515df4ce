"""What the tests of a demo on a token share: a fresh token for its bank, its temporary
directory made where the test looks, and the check that no bank key stayed on the token."""

from __future__ import annotations

from pathlib import Path

import pytest

from hsm.uri import open_backend
from tests.hsm.testbed import SoftToken, session_softhsm


def demo_token(tmp_path_factory: pytest.TempPathFactory) -> SoftToken:
    """A fresh token of the session's SoftHSM, for a demo's ``--keys``."""
    return session_softhsm(tmp_path_factory).init_token()


def temporary_directories_in(directory: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A demo run in this process makes its temporary directory in ``directory``."""
    monkeypatch.setattr("tempfile.tempdir", str(directory))


def token_for_a_demo_here(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> SoftToken:
    """A fresh token (``demo_token``) for a demo run in this process, whose temporary
    directory is made in ``tmp_path``."""
    temporary_directories_in(tmp_path, monkeypatch)
    return demo_token(tmp_path_factory)


def assert_no_key_left(token: SoftToken) -> None:
    """The demo took its bank's keys off ``token``: it holds none."""
    backend = open_backend(token.uri())
    try:
        assert backend.list_keys() == []
    finally:
        backend.close()
