"""A new file of the bank's, written once: never replacing one, durably, and when private
readable by its owner only whatever the umask.

``setpay init`` writes the bank directory's keys, certificates and passphrase so
(``gateway.provisioning``), the gateway's renewal its certificates, and
``gateway.ledger_keys`` the ledger keys file. Errors: ``OSError`` passes through
(``FileExistsError`` for a file already there).
"""

from __future__ import annotations

import os
from pathlib import Path

PRIVATE_MODE = 0o600
# A public file (a certificate) made by ``write_new``: readable by all, less the umask.
PUBLIC_MODE = 0o644


def write_new(path: Path, data: bytes, *, private: bool = False) -> None:
    """Create ``path`` holding ``data``, durably; refuse to replace an existing file.

    ``private``: readable by its owner only, whatever the umask; else ``PUBLIC_MODE``
    less the umask. The renewal of the gateway's keys writes its certificates so too."""
    mode = PRIVATE_MODE if private else PUBLIC_MODE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        if private:
            os.fchmod(fd, PRIVATE_MODE)  # whatever the umask did
        view = memoryview(data)
        while view:  # a write may take less than it is given (a full disk, a signal)
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def write_private(path: Path, data: bytes) -> None:
    """Create ``path`` readable by its owner only; refuse to replace an existing file."""
    write_new(path, data, private=True)
