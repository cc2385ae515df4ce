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
if it is ``setpay``. Only the program does this (``cli.main.main`` called without
arguments): a test calling ``main(argv)`` in its own process leaves that process as it was.

The kernel lets a process read another's ``/proc/PID/fd``, ``maps``, ``io``, ``environ``
or ``mem``, or attach to it, when both run as the same user and the other is dumpable, or
when it holds ``CAP_SYS_PTRACE`` (root outside a container, or one run with ``--cap-add
SYS_PTRACE``). Not dumpable therefore shuts out every process of the same user without
that capability: any non-root user's own tools, a profiler, and the bench, which reads
the ``/proc/PID/fd`` of the servers it starts to see which worker took each connection.
Processes of another user without the capability are shut out whatever the flag, and
attaching (not reading ``/proc``) may also need Yama's ``ptrace_scope`` to allow it. Two
opt-outs, each read as
``1`` (on) or unset, empty or ``0`` (off); any other value is off and said so:

- ``SETPAY_ALLOW_INSPECTION=1`` keeps the core-file limit at 0 but leaves the process
  (and its workers) dumpable, so that processes of the same user may inspect it: for the
  throwaway servers ``setpay bench --spawn`` starts and the banks the tests serve, or a
  profiler run as the same user. It is logged as a warning.
- ``SETPAY_ALLOW_CORE_DUMPS=1`` leaves both as they were (core files as the limit it was
  given allows), for debugging a crash; it is logged as a warning too.
"""

from __future__ import annotations

import ctypes
import enum
import logging
import resource
import sys
from collections.abc import Mapping
from dataclasses import dataclass

ALLOW_CORE_DUMPS = "SETPAY_ALLOW_CORE_DUMPS"
ALLOW_INSPECTION = "SETPAY_ALLOW_INSPECTION"
# What an opt-out is read as: "1" on, these off; any other value off, with a warning.
_ON = "1"
_OFF = ("", "0")
# What an opt-out set to another value leaves in place, as its warning says.
_IGNORED_MEANS = {
    ALLOW_CORE_DUMPS: "core dumps stay off",
    ALLOW_INSPECTION: "the process stays non-dumpable",
}
# prctl(2)'s option, from <linux/prctl.h>.
_PR_SET_DUMPABLE = 4


class Hardening(enum.Enum):
    """What ``harden_process`` did."""

    APPLIED = "no core file, not dumpable"
    INSPECTABLE = "no core file, left dumpable on request"
    SKIPPED = "skipped on request"


@dataclass(frozen=True)
class Outcome:
    """What ``harden_process`` did, and the opt-outs it found set to a value it ignored."""

    hardening: Hardening
    ignored: tuple[str, ...] = ()


def _prctl(option: int, value: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, value, 0, 0, 0) < 0:
        raise OSError(ctypes.get_errno(), f"prctl({option}, {value}) failed")


def harden_process(environ: Mapping[str, str]) -> Outcome:
    """No core file and no dumpable flag, but for the opt-outs ``environ`` sets."""
    ignored = tuple(name for name in _IGNORED_MEANS if environ.get(name, "") not in (_ON, *_OFF))
    if environ.get(ALLOW_CORE_DUMPS) == _ON:
        return Outcome(Hardening.SKIPPED, ignored)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if environ.get(ALLOW_INSPECTION) == _ON:
        return Outcome(Hardening.INSPECTABLE, ignored)
    if sys.platform.startswith("linux"):
        _prctl(_PR_SET_DUMPABLE, 0)
    return Outcome(Hardening.APPLIED, ignored)


def report(outcome: Outcome, log: logging.Logger) -> None:
    """Say, once logging is set up, what an opt-out did (nothing when there was none)."""
    if outcome.hardening is Hardening.SKIPPED:
        log.warning(
            "%s=1: this process and its workers may write core files and may be read by "
            "other processes of this user; both can hold keys, passphrases and card "
            "numbers. Unset it once profiling or debugging is done.",
            ALLOW_CORE_DUMPS,
        )
    elif outcome.hardening is Hardening.INSPECTABLE:
        log.warning(
            "%s=1: this process and its workers may be read by other processes of this "
            "user (memory, environment, open files), which can hold keys, passphrases and "
            "card numbers; core files stay off. Meant for a throwaway server (the bench's, "
            "a test's) or while profiling.",
            ALLOW_INSPECTION,
        )
    for name in outcome.ignored:
        log.warning("%s is set but not to 1: %s", name, _IGNORED_MEANS[name])
