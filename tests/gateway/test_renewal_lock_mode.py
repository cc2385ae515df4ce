"""``gateway-keys.lock`` is readable by all whatever the umask: a bank's user must be able
to check it, while a renewal may run as another user (an operator with sudo)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.config import BankConfig
from gateway.renewal_lock import (
    LOCK_FILE_MODE,
    RENEW_TASK,
    check_unlocked,
    holding_keys_lock,
    lock_path,
)


@pytest.fixture
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    mask: int = request.param
    old = os.umask(mask)
    try:
        yield mask
    finally:
        os.umask(old)


# Strict umasks, the ones that would hide the file from others; and none at all.
@pytest.mark.parametrize("umask", [0o077, 0o277, 0o027, 0o000], indirect=True)
def test_the_lock_file_is_made_readable_by_all(tmp_path: Path, umask: int) -> None:
    config = BankConfig(base_dir=tmp_path)
    path = lock_path(config)
    with holding_keys_lock(config, RENEW_TASK) as held:
        assert held.path == path
        assert stat.S_IMODE(path.stat().st_mode) == LOCK_FILE_MODE == 0o644
        assert path.read_text() == f"{os.getpid()} {RENEW_TASK}\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    check_unlocked(config)  # released: the bank may start
