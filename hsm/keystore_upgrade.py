"""Upgrading an older software keystore to authenticated key metadata (format 3).

A keystore from before (header format 1 or 2, each N.json in format 1, without MAC) is
refused at open (``legacy_refusal``), before any lock is taken or anything written. It
is not upgraded by an open, because nothing stored in the directory can tell a first
upgrade from a replayed one: whoever can write the directory can put back a keystore.json
from before the upgrade (any backup holds one) beside N.json files edited to say what
they like, and an automatic upgrade would then MAC what they said. So the operator
upgrades it, once, with ``setpay keys upgrade-keystore`` (``Keystore.upgrade``), shown
every key version it is about to authenticate, and warned when some already carry a MAC
(the header is older than its entries). Each N.json is rewritten with its MAC, then the
header in format 3, last: a cut upgrade leaves an old keystore, which the same command
finishes. The upgrade also clears the temp files killed writes left.

Errors raised (``hsm.errors``): ``PermanentBackendError``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from hsm.base import KeyHandle
from hsm.errors import PermanentBackendError
from hsm.policy import LABEL_PATTERN

#: The temp files ``hsm.keystore`` writes before each rename (``.NAME.PID.HEX.tmp``, HEX
#: being 4 random bytes): the header's and a key version's files'. Nothing else matches.
TEMP_NAME = re.compile(
    r"\.(keystore\.json|[0-9]+\.(json|key\.pem|pub\.pem|cert\.der))\.[0-9]+\.[0-9a-f]{8}\.tmp"
)


@dataclass(frozen=True)
class Upgrade:
    """What an upgrade found: shown before it writes, returned after."""

    #: Every key version, as its metadata is authenticated (by label, then version).
    keys: tuple[KeyHandle, ...]
    #: Those whose JSON file already carried a valid MAC under the old header: an upgrade
    #: cut short, or an old keystore.json put back (restored from a pre-upgrade copy).
    authenticated: tuple[KeyHandle, ...]
    #: Temp files of killed writes, removed by the upgrade.
    stale_temp_files: int
    #: False when the keystore was already in format 3: nothing was written.
    upgraded: bool


def legacy_refusal(root: Path) -> PermanentBackendError:
    """The refusal of an older keystore at open: what it is, and the command to run."""
    return PermanentBackendError(
        f"keystore {root} was written by an earlier setpay: its key metadata is not "
        "authenticated; check it and upgrade it once with `setpay keys upgrade-keystore "
        "--keys URI` (a read-only copy must first be copied somewhere writable)"
    )


def stale_temp_files(root: Path) -> list[Path]:
    """The temp files killed writes left in keystore ``root`` and its label directories.

    Only under the keystore lock, which every writer holds while its temp file exists:
    none found then is still being written.
    """
    keys_dir = root / "keys"
    directories = [root]
    stale: list[Path] = []
    try:
        if keys_dir.is_dir():
            labels = [name for name in os.listdir(keys_dir) if LABEL_PATTERN.fullmatch(name)]
            directories += [keys_dir / label for label in sorted(labels)]
        for directory in directories:
            names = os.listdir(directory)
            stale += [directory / name for name in sorted(names) if TEMP_NAME.fullmatch(name)]
    except OSError as exc:
        raise PermanentBackendError(
            f"cannot read keystore directory {root}: {exc.strerror or type(exc).__name__}"
        ) from exc
    return stale
