"""``setpay ca issue-tls --out DIR`` where DIR is not a directory: refused naming what is
in the way, with nothing written nor the bank opened, not with the OSError's own text
("[Errno 17] File exists: ...")."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from cli import ca
from gateway.provisioning import InitResult, init_bank
from tests.cli.command_support import run_command


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> InitResult:
    return init_bank(tmp_path_factory.mktemp("issue-tls-out") / "bank", env={})


def _issue(made: InitResult, out: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    return run_command(
        ca,
        ["ca", "issue-tls", "--config", str(made.config_path), "--role", "client",
         "--name", "shop-7", "--out", str(out)],
        capsys,
    )  # fmt: skip


def test_a_file_named_as_the_out_directory_is_refused_and_kept(
    made: InitResult, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "creds"
    out.write_bytes(b"the operator's own file\n")
    code, stdout, err = _issue(made, out, capsys)
    assert (code, stdout) == (1, "")
    assert err == (
        f"setpay ca issue-tls: --out {out}: a file is there, not a directory: issue-tls "
        "writes shop-7.pem, shop-7.key and root.pem into a directory, and overwrites no "
        "file; nothing written\n"
    )
    assert "Errno" not in err
    assert out.read_bytes() == b"the operator's own file\n"
    assert sorted(os.listdir(tmp_path)) == ["creds"]


def test_a_file_on_the_out_directorys_path_is_named(
    made: InitResult, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocking = tmp_path / "creds"
    blocking.write_bytes(b"")
    out = blocking / "shop"
    code, stdout, err = _issue(made, out, capsys)
    assert (code, stdout) == (1, "")
    assert err.startswith(
        f"setpay ca issue-tls: --out {out}: a file is there ({blocking}, on its path), "
        "not a directory"
    )
    assert "Errno" not in err
    assert sorted(os.listdir(tmp_path)) == ["creds"]


def test_a_dangling_link_as_the_out_directory_is_refused(
    made: InitResult, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "creds"
    out.symlink_to(tmp_path / "nowhere")
    code, _, err = _issue(made, out, capsys)
    assert code == 1 and "a file is there, not a directory" in err and "Errno" not in err
    assert not (tmp_path / "nowhere").exists()


def test_a_new_directory_is_still_made(
    made: InitResult, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "new" / "creds"
    code, stdout, _ = _issue(made, out, capsys)
    assert code == 0 and stdout.startswith("wrote ")
    assert sorted(os.listdir(out)) == ["root.pem", "shop-7.key", "shop-7.pem"]


def test_a_name_too_long_on_the_out_path_is_refused_plainly(
    made: InitResult, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``is_dir`` raises for a name past the file system's limit: the refusal said it,
    not a traceback out of ``run``."""
    out = tmp_path / ("a" * 300) / "certs"
    code, stdout, err = _issue(made, out, capsys)
    assert (code, stdout) == (1, "")
    assert err == f"setpay ca issue-tls: --out {out}: File name too long; nothing written\n"
    assert sorted(os.listdir(tmp_path)) == []


def test_a_parent_that_cannot_be_searched_is_named(
    made: InitResult,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """EACCES, as a directory of mode 000 gives any user but root: the place looked at
    is named when it is not ``--out`` itself."""
    locked = tmp_path / "locked"
    out = locked / "certs"
    looked_at = Path.is_dir

    def is_dir(place: Path) -> bool:
        if place == out:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(locked))
        return looked_at(place)

    monkeypatch.setattr(Path, "is_dir", is_dir)
    code, stdout, err = _issue(made, out, capsys)
    assert (code, stdout) == (1, "")
    assert err == (
        f"setpay ca issue-tls: --out {out}: Permission denied ({locked}, on its path); "
        "nothing written\n"
    )
