"""A card file whose scrypt parameters were rewritten is refused, never run.

The parameters are read from the file, so whoever can write it chooses what opening it
costs: a huge r crashed the wallet with a MemoryError, a huge p kept it busy for hours.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from clients.errors import VaultError
from clients.wallet.vault import (
    MAX_SCRYPT_MEMORY_BYTES,
    MAX_SCRYPT_P,
    MAX_SCRYPT_R,
    SCRYPT_N,
    SCRYPT_R,
    CardSecrets,
    open_vault,
    seal,
)
from setcore.pan import PAN
from tests.cards import VISA

PASSPHRASE = "correct horse battery staple"
# Address space left to the child beyond what it uses after its imports: room for its
# own work, far below the largest scrypt memory the wallet accepts.
CHILD_HEADROOM_BYTES = 64 * 1024 * 1024
# Bounds the child; it fails or succeeds in well under a second.
CHILD_TIMEOUT_SECONDS = 60


def _sealed_with(tmp_path: Path, **kdf: int) -> Path:
    path = tmp_path / "card.sealed"
    seal(path, CardSecrets(PAN(VISA), "203012", b"c" * 32, b"p" * 32), PASSPHRASE)
    sealed = json.loads(path.read_bytes())
    sealed["kdf"].update(kdf)
    path.write_text(json.dumps(sealed))
    return path


@pytest.mark.parametrize(
    "kdf",
    [
        {"r": 2**20},  # 4 PiB: scrypt's MemoryError escaped as a traceback
        {"r": MAX_SCRYPT_R + 1},
        {"p": MAX_SCRYPT_P + 1},  # ran p times the work before failing the tag
        {"n": 2 * MAX_SCRYPT_MEMORY_BYTES // (128 * SCRYPT_R)},
    ],
    ids=["r-absurd", "r-over", "p-over", "memory-over"],
)
def test_costly_parameters_are_refused_before_scrypt_runs(
    tmp_path: Path, kdf: dict[str, int]
) -> None:
    path = _sealed_with(tmp_path, **kdf)
    with pytest.raises(VaultError, match="scrypt parameters out of range") as caught:
        open_vault(path, PASSPHRASE)
    assert "the file was altered" in str(caught.value)


def test_weaker_parameters_are_refused(tmp_path: Path) -> None:
    path = _sealed_with(tmp_path, n=SCRYPT_N // 2)
    with pytest.raises(VaultError, match="weaker than the wallet's"):
        open_vault(path, PASSPHRASE)


def test_memory_the_machine_lacks_is_a_vault_error(tmp_path: Path) -> None:
    """Parameters within the bounds, on a machine (here a process limited in address
    space) without that much memory: a VaultError that says so, no traceback."""
    n = MAX_SCRYPT_MEMORY_BYTES // (128 * SCRYPT_R)
    path = _sealed_with(tmp_path, n=n)
    child = textwrap.dedent(
        f"""
        import resource, sys
        from pathlib import Path
        from clients.errors import VaultError
        from clients.wallet.vault import open_vault
        with open("/proc/self/statm") as statm:
            used = int(statm.read().split()[0]) * resource.getpagesize()
        limit = used + {CHILD_HEADROOM_BYTES}
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        try:
            open_vault(Path(sys.argv[1]), {PASSPHRASE!r})
        except VaultError as exc:
            print("VaultError:", exc)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", child, str(path)],
        check=False, capture_output=True, text=True, timeout=CHILD_TIMEOUT_SECONDS,
        cwd=Path(__file__).resolve().parents[3],
    )  # fmt: skip
    assert done.stderr == "" and done.returncode == 0
    assert done.stdout.startswith(
        f"VaultError: {path}: not enough memory for its scrypt parameters ("
        f"{MAX_SCRYPT_MEMORY_BYTES} bytes)"
    )
