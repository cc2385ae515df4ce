"""What the merchant's and the wallet's root-pin tests share: a brand root on disk, its
fingerprint as the messages show it, and a command run with writes cut short.

Both commands pin through ``cli.party_options.pin_root``; each is still tested through its
own command line, since each calls it at its own point.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from cli.fingerprint import colon_hex
from tests.clients.wallet.self_signed import self_signed

# A file-size limit below any certificate: the pin's write fails part way.
FILE_SIZE_LIMIT_BYTES = 64
# Bounds the child; it fails in well under a second.
CHILD_TIMEOUT_SECONDS = 60
PROJECT = Path(__file__).resolve().parents[2]
# The child of ``run_with_small_files``: the file-size limit (argv[1]) and SIGXFSZ ignored
# (a write past the limit fails with EFBIG instead of killing the process), then
# ``python -m cli.main`` with the rest of its arguments, as the program.
_SMALL_FILES = """\
import resource, runpy, signal, sys
limit = int(sys.argv.pop(1))
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
runpy.run_module("cli.main", run_name="__main__", alter_sys=True)
"""


def brand_root(tmp_path: Path, name: str) -> tuple[Path, bytes]:
    """A self-signed root named ``name``, written as DER; its path and bytes."""
    der = self_signed(name)
    path = tmp_path / f"{name}.der"
    path.write_bytes(der)
    return path, der


def sha256(der: bytes) -> str:
    """The fingerprint as the refusal names it (after ``SHA-256``)."""
    return colon_hex(hashlib.sha256(der).digest())


def run_with_small_files(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    """``setpay ARGV`` in a child whose writes past ``FILE_SIZE_LIMIT_BYTES`` fail (a full
    disk alike).

    The child sets the limit itself, first thing (``_SMALL_FILES``), not in a
    ``preexec_fn``: with one, subprocess forks this process rather than vfork it, and the
    fork runs gRPC's fork handlers, which start gRPC's poller thread again in the child
    (this process serves the tests' bank over gRPC). The child then closes every
    descriptor but its standard ones before its exec, the poller's epoll descriptor among
    them, and a poller back in epoll_wait before the exec aborted it now and then
    ("epoll_wait error: Bad file descriptor"; grpc/grpc issue 43055)."""
    return subprocess.run(
        [sys.executable, "-c", _SMALL_FILES, str(FILE_SIZE_LIMIT_BYTES), *argv],
        check=False, capture_output=True, text=True, timeout=CHILD_TIMEOUT_SECONDS,
        cwd=PROJECT,
    )  # fmt: skip


def assert_nothing_pinned(pin: Path) -> None:
    """No pin, and nothing half-written beside it."""
    assert not pin.exists()
    left = [p.name for p in pin.parent.iterdir()] if pin.parent.exists() else []
    assert left == []
