"""Keeping a setpay process's memory its own: no core file, no reading by its peers.

A gateway worker holds the ledger keys, PANs it has opened, the keystore's passphrase
and perhaps a token PIN from the environment; a wallet holds its card. A crash (in gRPC,
in a PKCS#11 module) would write all of it to a core file, and Docker's default core
size is unlimited while the kernel's default core pattern writes into the working
directory: the bank's volume, which backups archive. So every ``setpay`` command, first
of all:

- sets ``RLIMIT_CORE`` to 0, soft and hard, so that nothing under it can raise it again;
- clears the process's dumpable flag (Linux ``PR_SET_DUMPABLE``), which also stops other
  processes of the same user from attaching to it or reading ``/proc/PID/mem``,
  ``/proc/PID/environ`` or ``/proc/PID/maps``.

Both pass to the children ``os.fork`` makes (the workers and the ledger process); a
program started by ``execve`` keeps the limit but is dumpable again, and hardens itself
if it is ``setpay``. Root with ``CAP_SYS_PTRACE`` may still attach, so a sampling
profiler run as root works as before; one without that capability (another user, or root
in a container without ``--cap-add SYS_PTRACE``) needs ``SETPAY_ALLOW_CORE_DUMPS=1``,
which leaves both as they were and says so in a warning.
"""

from __future__ import annotations

import ctypes
import enum
import logging
import resource
import sys
from collections.abc import Mapping

ALLOW_CORE_DUMPS = "SETPAY_ALLOW_CORE_DUMPS"
# prctl(2)'s option, from <linux/prctl.h>.
_PR_SET_DUMPABLE = 4


class Hardening(enum.Enum):
    """What ``harden_process`` did."""

    APPLIED = "applied"
    APPLIED_VALUE_IGNORED = "applied, the opt-out's value not understood"
    SKIPPED = "skipped on request"


def _prctl(option: int, value: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, value, 0, 0, 0) < 0:
        raise OSError(ctypes.get_errno(), f"prctl({option}, {value}) failed")


def harden_process(environ: Mapping[str, str]) -> Hardening:
    """No core file and no dumpable flag, unless ``SETPAY_ALLOW_CORE_DUMPS=1``."""
    choice = environ.get(ALLOW_CORE_DUMPS, "")
    if choice == "1":
        return Hardening.SKIPPED
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if sys.platform.startswith("linux"):
        _prctl(_PR_SET_DUMPABLE, 0)
    return Hardening.APPLIED if choice in ("", "0") else Hardening.APPLIED_VALUE_IGNORED


def report(outcome: Hardening, log: logging.Logger) -> None:
    """Say, once logging is set up, what an opt-out did (nothing when there was none)."""
    if outcome is Hardening.SKIPPED:
        log.warning(
            "%s=1: this process and its workers may write core files and may be read by "
            "other processes of this user; both can hold keys, passphrases and card "
            "numbers. Unset it once profiling or debugging is done.",
            ALLOW_CORE_DUMPS,
        )
    elif outcome is Hardening.APPLIED_VALUE_IGNORED:
        log.warning("%s is set but not to 1: core dumps stay off", ALLOW_CORE_DUMPS)
