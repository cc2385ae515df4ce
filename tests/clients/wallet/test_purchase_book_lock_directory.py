"""``purchases.json.lock``'s directory, as the mode rule judges it: with real files.

Under a umask of 002 (a user-private group, as Debian and Fedora give each user) the
wallet made its directory group-writable, and a wider lock file of the user's own was
then refused, "in a directory other users may write", though the group held no one else.
Now the directory is made private, and a directory writable by the user's private group
alone counts as the user's. The directory was also looked up by its path after the lock
file was opened by its own: the path could name another directory by then. Now the lock
file is opened in the directory's descriptor, and that directory is judged.

Cases that make files of another user's need root: not run as root, they fail saying so.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from clients.errors import ConfigError
from clients.lock_file import open_lock_file
from clients.wallet import purchase_book
from clients.wallet.purchases import PurchaseBook
from tests.clients.other_user import NOBODY
from tests.clients.wallet.test_purchase_book import RECORD

BOOK = "purchases.json"
LOCK = "purchases.json.lock"
OTHERS_MAY_WRITE = "it is wider than private (0664) in a directory other users may write"
# The Linux POSIX ACL's extended attribute: version 2, then (tag, permissions, id) each.
_ACL_ATTRIBUTE = "system.posix_acl_access"
_ACL_VERSION = 2
_USER_OBJ, _USER, _GROUP_OBJ, _MASK, _OTHER = 0x01, 0x02, 0x04, 0x10, 0x20
_NO_ID = 0xFFFFFFFF


def _said(directory: Path) -> str:
    try:
        PurchaseBook(directory / BOOK).add(RECORD)
    except ConfigError as exc:
        return str(exc)
    return "written"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _as_root() -> None:
    if os.geteuid() != 0:
        pytest.fail("this test needs root: it makes files of another user's")


def _private_group() -> int:
    """This user's own group, holding no one else, or the test failed, naming why."""
    user = pwd.getpwuid(os.geteuid())
    group = grp.getgrgid(user.pw_gid)
    others = [u.pw_name for u in pwd.getpwall() if u.pw_gid == group.gr_gid]
    if (
        group.gr_name != user.pw_name
        or set(group.gr_mem) - {user.pw_name}
        or others != [user.pw_name]
    ):
        pytest.fail(f"this test needs a user-private group: {user.pw_name}'s is {group}")
    return group.gr_gid


def _wallet(parent: Path, gid: int, mode: int = 0o775) -> Path:
    """A wallet directory of this user's, group ``gid``, holding the user's own lock file
    at 0664: one the wallet made, widened since (``chmod -R g+w``, a copy back)."""
    wallet = parent / "wallet"
    wallet.mkdir()
    os.chown(wallet, os.geteuid(), gid)
    wallet.chmod(mode)
    lock = wallet / LOCK
    lock.touch()
    lock.chmod(0o664)
    return wallet


def test_the_wallet_s_directory_it_makes_is_private_whatever_the_umask(tmp_path: Path) -> None:
    before = os.umask(0o002)
    try:
        assert _said(tmp_path / "wallet") == "written"
    finally:
        os.umask(before)
    assert _mode(tmp_path / "wallet") == 0o700
    assert _mode(tmp_path / "wallet" / LOCK) == 0o600


def test_a_directory_only_the_user_s_private_group_may_write_is_the_user_s(
    tmp_path: Path,
) -> None:
    """Made under a umask of 002 (0775): the user's own wider lock file there is narrowed,
    as in a directory of 0755."""
    wallet = _wallet(tmp_path, _private_group())
    assert _said(wallet) == "written"
    assert _mode(wallet / LOCK) == 0o600


@pytest.mark.parametrize("mode", [0o775, 0o777, 0o757], ids=["group", "all", "others"])
def test_a_directory_another_group_or_others_may_write_is_not(tmp_path: Path, mode: int) -> None:
    """Its group ``nogroup`` (as root), or open to others: the lock file is left as it
    is, and refused."""
    if mode & 0o002:
        gid = _private_group()
    else:
        _as_root()
        gid = NOBODY
    wallet = _wallet(tmp_path, gid, mode)
    said = _said(wallet)
    assert f"{LOCK}: {OTHERS_MAY_WRITE}: its mode left as it is; remove it" in said
    assert _mode(wallet / LOCK) == 0o664


def test_a_directory_whose_acl_lets_another_user_write_is_not(tmp_path: Path) -> None:
    """The group's bits (0770) are the ACL's mask: ``nobody``, named in the ACL, may
    write, though the directory's group is the user's private group."""
    wallet = _wallet(tmp_path, _private_group(), 0o770)
    entries = [
        (_USER_OBJ, 0o7, _NO_ID), (_USER, 0o7, NOBODY), (_GROUP_OBJ, 0o5, _NO_ID),
        (_MASK, 0o7, _NO_ID), (_OTHER, 0, _NO_ID),
    ]  # fmt: skip
    acl = struct.pack("<I", _ACL_VERSION) + b"".join(struct.pack("<HHI", *e) for e in entries)
    try:
        os.setxattr(wallet, _ACL_ATTRIBUTE, acl)
    except OSError as exc:
        pytest.fail(f"this test needs a file system that keeps ACLs: {exc.strerror}")
    assert _mode(wallet) == 0o770  # the mask, shown as the group's bits
    said = _said(wallet)
    assert f"{LOCK}: {OTHERS_MAY_WRITE}: its mode left as it is; remove it" in said
    assert _mode(wallet / LOCK) == 0o664


def _racing(monkeypatch: pytest.MonkeyPatch, after: Callable[[], None]) -> None:
    """``open_lock_file`` as the wallet calls it, ``after`` run once the file is open:
    what another process may do between the open and the directory's check."""

    def opening(*args: Any, **kwargs: Any) -> tuple[int, bool]:
        opened = open_lock_file(*args, **kwargs)
        after()
        return opened

    monkeypatch.setattr(purchase_book, "open_lock_file", opening)


@pytest.mark.parametrize("directory", ["open to all", "another user's"])
def test_the_directory_judged_is_the_one_the_lock_file_was_opened_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, directory: str
) -> None:
    """The wallet's path is a link to a directory another user may write, who put there a
    hard link to a file of this user's (root's); once it is open, that user removes their
    own name of it (one name left) and points the link at a directory only this user may
    write. The file is judged in the directory it was found in: refused, its mode kept."""
    shared = tmp_path / "shared"
    shared.mkdir()
    if directory == "open to all":
        shared.chmod(0o777)
    else:
        _as_root()
        os.chown(shared, NOBODY, NOBODY)
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    victim = tmp_path / "victim"
    victim.write_text("not a lock\n")
    victim.chmod(0o666)
    os.link(victim, shared / LOCK)
    wallet = tmp_path / "wallet"
    wallet.symlink_to(shared)

    def swapped() -> None:
        (shared / LOCK).unlink()
        wallet.unlink()
        wallet.symlink_to(private)

    _racing(monkeypatch, swapped)
    said = _said(wallet)
    assert f"{LOCK}: it is wider than private (0666) in a directory other users may " in said
    assert _mode(victim) == 0o666
    assert victim.stat().st_nlink == 1  # the race was run: one name left
    assert not (private / BOOK).exists() and not (shared / BOOK).exists()
