"""``purchases.json.lock``'s mode: narrowed only when wider, and only when it is safe to.

With real files. An immutable or append-only lock file (``chattr +i``, ``+a``) already
private at another mode than 0600 (0400, 0700) was refused, the wallet trying to set
its mode all the same, with advice to remove a file ``rm`` cannot remove; a wider one
got the same advice. Run as root, the wallet narrowed whatever lock file it found: a
hard link to a file of root's there (put by the directory's owner) had that file's mode
changed. Now a private one is used as it is; a wider one is narrowed only when it is the
user's own, with no other name, in a directory no other user may write; any other wider
one is refused, its mode left as it is.

The attribute tests need root (``CAP_LINUX_IMMUTABLE``) and a file system that keeps
those attributes: where ``chattr`` fails, they fail saying so, rather than pass untested.
Every attribute set is cleared again, whatever the test's outcome, so that the test's
directory can be removed.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from clients.errors import ConfigError
from clients.wallet.purchases import PurchaseBook
from tests.clients.other_user import NOBODY
from tests.clients.wallet.test_purchase_book import RECORD

BOOK = "purchases.json"
LOCK = "purchases.json.lock"
IMMUTABLE, APPEND_ONLY = "i", "a"


def _chattr(path: Path, change: str) -> None:
    """``chattr change path``, or the test failed, naming why."""
    chattr = shutil.which("chattr") or pytest.fail("chattr (e2fsprogs) is not installed")
    done = subprocess.run([chattr, change, str(path)], check=False, capture_output=True, text=True)
    if done.returncode != 0:
        pytest.fail(
            f"chattr {change} failed (it needs root and a file system that keeps the "
            f"attribute): {done.stderr.strip()}"
        )


@contextmanager
def _attribute(path: Path, attribute: str) -> Iterator[None]:
    """``path`` immutable or append-only through the block, cleared again after it."""
    _chattr(path, "+" + attribute)
    try:
        # For real: neither lets the file be opened for writing (an append-only one but
        # with O_APPEND), which is what has the lock file opened read-only.
        with pytest.raises(PermissionError):
            os.close(os.open(path, os.O_WRONLY))
        yield
    finally:
        _chattr(path, "-" + attribute)


def _lock_file(directory: Path, mode: int) -> Path:
    directory.mkdir(mode=0o700, exist_ok=True)
    lock = directory / LOCK
    lock.touch()
    lock.chmod(mode)
    return lock


def _said(directory: Path) -> str:
    try:
        PurchaseBook(directory / BOOK).add(RECORD)
    except ConfigError as exc:
        assert not (directory / BOOK).exists()
        return str(exc)
    assert PurchaseBook(directory / BOOK).all() == [RECORD]
    return "written"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _as_root() -> None:
    if os.geteuid() != 0:
        pytest.fail("this test needs root: it makes files of another user's")


@pytest.mark.parametrize(
    ("mode", "attribute"),
    [(0o600, IMMUTABLE), (0o400, IMMUTABLE), (0o700, IMMUTABLE), (0o400, APPEND_ONLY)],
    ids=["0600-immutable", "0400-immutable", "0700-immutable", "0400-append-only"],
)
def test_a_private_lock_file_that_cannot_change_locks_as_it_is(
    tmp_path: Path, mode: int, attribute: str
) -> None:
    """Private at whatever mode, immutable or append-only: the book is written under it,
    its mode as it was."""
    lock = _lock_file(tmp_path, mode)
    with _attribute(lock, attribute):
        assert _said(tmp_path) == "written"
        assert _mode(lock) == mode


@pytest.mark.parametrize("attribute", [IMMUTABLE, APPEND_ONLY])
def test_a_wider_lock_file_that_cannot_change_is_said_to_be_so_not_to_be_removed(
    tmp_path: Path, attribute: str
) -> None:
    """The user's own, wider, immutable or append-only: refused, saying what stops it,
    not "remove it", which neither the wallet's user nor root could do."""
    lock = _lock_file(tmp_path, 0o644)
    with _attribute(lock, attribute):
        said = _said(tmp_path)
        with pytest.raises(PermissionError):
            lock.unlink()  # what the old advice asked for
        assert _mode(lock) == 0o644
    assert said == (
        f"cannot use lock file {lock}: it is wider than private (0644) and its mode cannot "
        "be narrowed (Operation not permitted): immutable or append-only? (lsattr shows "
        "it; chattr -i or -a, as root, clears it, and the next write narrows it): nothing "
        f"was written to {BOOK}"
    )
    assert _said(tmp_path) == "written"  # once cleared: narrowed, and used
    assert _mode(lock) == 0o600


def test_a_hard_link_to_another_file_keeps_that_file_s_mode(tmp_path: Path) -> None:
    """A file of root's linked in by the directory's owner, for a wallet run as root (or
    any user's own file, linked): left as it is, and refused while wider."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text("not a lock\n")
    elsewhere.chmod(0o666)
    wallet = tmp_path / "wallet"
    wallet.mkdir(mode=0o700)
    os.link(elsewhere, wallet / LOCK)
    said = _said(wallet)
    assert f"{LOCK}: it is wider than private (0666) and has 2 names (a hard link" in said
    assert said.endswith(
        "its mode left as it is; remove it, with no other wallet command running: "
        f"nothing was written to {BOOK}"
    )
    assert _mode(elsewhere) == 0o666
    assert elsewhere.read_text() == "not a lock\n"
    (wallet / LOCK).unlink()  # as advised: a lock file of its own is made, and used
    assert _said(wallet) == "written"
    assert _mode(wallet / LOCK) == 0o600 and (wallet / LOCK).stat().st_nlink == 1


def test_a_private_hard_link_is_locked_and_left_as_it_is(tmp_path: Path) -> None:
    """Private, it is no way in for another user: locked as found, as the registration
    lock locks any file it found, nothing written to it, its mode as it was."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text("not a lock\n")
    elsewhere.chmod(0o600)
    wallet = tmp_path / "wallet"
    wallet.mkdir(mode=0o700)
    os.link(elsewhere, wallet / LOCK)
    assert _said(wallet) == "written"
    assert _mode(elsewhere) == 0o600
    assert elsewhere.read_text() == "not a lock\n"


@pytest.mark.parametrize("directory", ["open to all", "another user's"])
def test_a_single_name_in_a_directory_another_user_may_write_is_not_narrowed(
    tmp_path: Path, directory: str
) -> None:
    """One name left proves nothing there: the directory's other writer may have linked
    a file of this user's and removed its other name after the wallet opened it."""
    lock = _lock_file(tmp_path / "wallet", 0o644)
    if directory == "open to all":
        lock.parent.chmod(0o777)
    else:
        _as_root()
        os.chown(lock.parent, NOBODY, NOBODY)
    said = _said(lock.parent)
    assert f"{LOCK}: it is wider than private (0644) in a directory other users may " in said
    assert "its mode left as it is; remove it" in said
    assert _mode(lock) == 0o644


def test_another_user_s_wider_lock_file_keeps_its_mode_under_root(tmp_path: Path) -> None:
    """Root may narrow it, but another's file is not root's to change: it may be a hard
    link to any of that user's files."""
    _as_root()
    lock = _lock_file(tmp_path, 0o644)
    os.chown(lock, NOBODY, NOBODY)
    said = _said(tmp_path)
    assert f"{LOCK}: it is wider than private (0644) and belongs to uid {NOBODY}: " in said
    assert _mode(lock) == 0o644


def test_the_user_s_own_wider_lock_file_is_still_narrowed(tmp_path: Path) -> None:
    lock = _lock_file(tmp_path, 0o664)
    assert _said(tmp_path) == "written"
    assert _mode(lock) == 0o600
