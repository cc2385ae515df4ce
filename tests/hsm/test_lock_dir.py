"""Where PKCS#11 lock files live: a directory only this user can use, not the temp dir,
and by default one per host, whatever a process's $TMPDIR.

Lock files with predictable names in a world-writable directory let any local user
create or hold them first, and stall every login on the token.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from hsm import filelock
from hsm.errors import InvalidKeyURI, PermanentBackendError
from hsm.pkcs11 import Pkcs11Backend
from hsm.uri import Pkcs11KeyURI, describe_uri, open_backend, parse_key_uri

from .testbed import SOFTHSM_MODULE, SoftToken


@pytest.fixture
def private_tempdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A stand-in for the host's temp directory, where the default lock directory is
    made (world-writable and sticky, as usual)."""
    shared = tmp_path / "shared-tmp"
    shared.mkdir()
    shared.chmod(0o1777)
    monkeypatch.setattr("hsm.filelock.DEFAULT_LOCK_PARENT", str(shared))
    return shared


def _lock_files(directory: Path) -> list[str]:
    return sorted(name for name in os.listdir(directory) if name.endswith(".lock"))


@pytest.mark.integration
def test_default_lock_files_live_in_a_private_per_user_directory(
    token: SoftToken, private_tempdir: Path
) -> None:
    backend = Pkcs11Backend(replace(token.config(), lock_dir=None))
    backend.close()
    assert _lock_files(private_tempdir) == []
    own = private_tempdir / f"setpay-locks-{os.geteuid()}"
    assert stat.S_IMODE(own.stat().st_mode) == 0o700
    assert _lock_files(own) != []


def _open_directory(path: Path) -> None:
    path.mkdir()
    path.chmod(0o755)


def _symlink(path: Path) -> None:
    target = path.parent / "real"
    target.mkdir(mode=0o700)
    path.symlink_to(target, target_is_directory=True)


def _file(path: Path) -> None:
    path.write_text("")


@pytest.mark.integration
@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (_open_directory, r"is open to group or others \(mode 0755\)"),
        (_symlink, "is a symbolic link"),
        (_file, "is not a directory"),
    ],
    ids=["mode-755", "symlink", "file"],
)
def test_default_lock_directory_taken_by_someone_else_is_refused(
    token: SoftToken, private_tempdir: Path, make: Callable[[Path], None], problem: str
) -> None:
    make(private_tempdir / f"setpay-locks-{os.geteuid()}")
    with pytest.raises(PermanentBackendError, match=f"lock directory .* {problem}"):
        Pkcs11Backend(replace(token.config(), lock_dir=None))


@pytest.mark.integration
def test_default_lock_directory_of_another_user_is_refused(
    token: SoftToken, private_tempdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Run as some other user: the directory under that user's name was made by us, so
    # it belongs to someone else. (Making one owned by another uid would need root.)
    me, other = os.geteuid(), os.geteuid() + 1
    (private_tempdir / f"setpay-locks-{other}").mkdir(mode=0o700)
    monkeypatch.setattr("hsm.filelock.os.geteuid", lambda: other)
    with pytest.raises(
        PermanentBackendError,
        match=rf"lock directory .* is owned by uid {me}, not by this user \(uid {other}\)",
    ):
        Pkcs11Backend(replace(token.config(), lock_dir=None))


def test_the_default_lock_directory_is_one_per_host_whatever_tmpdir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Before, it followed $TMPDIR (tempfile.gettempdir()): a service and an operator's
    # shell given different ones (libpam-tmpdir, sudo) took different key locks on one
    # token, and two key creations at once both claimed the same version.
    made = []
    for name in ("service-tmp", "shell-tmp"):
        own = tmp_path / name
        own.mkdir(mode=0o700)
        monkeypatch.setenv("TMPDIR", str(own))
        monkeypatch.setattr(tempfile, "tempdir", None)  # as in a process started so
        made.append(filelock.lock_directory(None))
        assert os.listdir(own) == []
    assert made[0] == made[1]
    assert made[0] == os.path.join(filelock.DEFAULT_LOCK_PARENT, f"setpay-locks-{os.geteuid()}")


@pytest.mark.integration
def test_lock_dir_from_the_key_uri(token: SoftToken, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir(mode=0o700)
    uri = token.uri() + f";x-lock-dir={run_dir}"
    parsed = parse_key_uri(uri)
    assert isinstance(parsed, Pkcs11KeyURI)
    assert parsed.lock_dir == str(run_dir)
    assert describe_uri(uri).endswith(f";x-lock-dir={run_dir}")
    open_backend(uri).close()
    assert _lock_files(run_dir) != []
    run_dir.chmod(0o755)
    with pytest.raises(PermanentBackendError, match="open to group or others"):
        open_backend(uri)


def test_lock_dir_in_a_key_uri_must_be_absolute() -> None:
    uri = f"pkcs11:module={SOFTHSM_MODULE};token=t;pin-source=env:P;x-lock-dir=run/setpay"
    with pytest.raises(InvalidKeyURI, match="x-lock-dir must be an absolute path"):
        parse_key_uri(uri)
    assert describe_uri(uri).endswith(";x-lock-dir=***")
