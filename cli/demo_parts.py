"""The parts of ``setpay demo`` that are not its story: the PAN scan, the tampering, the
bank's stop and its token keys' removal, and the signals that end a run early."""

from __future__ import annotations

import logging
import shlex
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from gateway.bank_pki import ALL_LABELS, bank_keys_uri
from gateway.config import BankConfig
from gateway.process import RunningBank
from gateway.provisioning import destroy_bank_keys
from hsm.uri import describe_uri, open_backend
from setcore.pan import PAN
from setpay.v1 import purchase_pb2

# Grace for in-flight calls when the demo shuts its servers down.
SHUTDOWN_GRACE_SECONDS = 2.0


def scan_for_pan(root: Path, pan: PAN) -> list[str]:
    """Files under ``root`` holding ``pan``'s digits (names only).

    The card the demo opened, not any Luhn-valid run of 13 to 19 digits: the merchant
    keeps the cardholder's certificate, whose subject is a random hexadecimal id, and
    such an id holds a Luhn-valid run of that length now and then.
    """
    digits = pan.reveal().encode()
    hits = []
    for path in sorted(root.rglob("*")):
        if path.is_file() and digits in path.read_bytes():
            hits.append(str(path.relative_to(root)))
    return hits


def stop_on_purpose(running: RunningBank) -> None:
    """Stop the bank's servers, their health log saying only errors meanwhile: NOT_SERVING
    is a warning for a server that goes away unasked, news to no one here."""
    logger = logging.getLogger("setpay.server")
    old_level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        running.stop(SHUTDOWN_GRACE_SECONDS)
    finally:
        logger.setLevel(old_level)


def tamper(request: purchase_pb2.PurchaseRequest) -> None:
    """Flip one bit of the PI's sealed ciphertext after the wallet signed it."""
    preq = purchase_pb2.PReqDualSigned.FromString(request.p_req)
    pi = purchase_pb2.PIDualSigned.FromString(preq.pi_dual_signed)
    ciphertext = bytearray(pi.ex_pi.ciphertext)
    ciphertext[len(ciphertext) // 2] ^= 0x01
    pi.ex_pi.ciphertext = bytes(ciphertext)
    preq.pi_dual_signed = pi.SerializeToString()
    request.p_req = preq.SerializeToString()


def delete_bank_keys(config: BankConfig) -> None:
    """Remove the keys ``setpay init`` made for a temporary bank from its key backend."""
    uri = bank_keys_uri(config)
    try:
        backend = open_backend(uri)
        try:
            left = destroy_bank_keys(backend)
        finally:
            backend.close()
        labels = [entry.partition(" ")[0] for entry in left]  # "label (error type)"
    except Exception as exc:  # noqa: BLE001 - the story's own outcome must not be hidden
        left, labels = [f"all ({type(exc).__name__}: {exc})"], list(ALL_LABELS)
    if left:
        # --no-bank: the bank, its configuration and its key lock went with the directory.
        commands = "".join(
            f"\n  setpay keys delete --keys {shlex.quote(describe_uri(uri))} --no-bank "
            f"--label {label} --all-versions"
            for label in labels
        )
        print(
            f"setpay demo: could not remove the demo bank's keys {', '.join(left)}; remove "
            f"them with:{commands}",
            file=sys.stderr,
        )


class Stopped(BaseException):
    """A signal ends the demo: raised in the main thread, so that the story unwinds as
    after a failure (servers stopped, the token's keys deleted, the temporary directory
    removed). A BaseException, as KeyboardInterrupt is: no ``except Exception`` takes it
    for one of the story's failures."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


# The signals that end a demo early: Ctrl-C, a closed terminal, a supervisor or timeout(1).
# Python's own action for SIGTERM and SIGHUP ends the process at once, running no
# ``finally``: every key and passphrase file would outlive the run.
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextmanager
def stopped_by_signals() -> Iterator[None]:
    # Handlers can be set in the main thread only; elsewhere (a caller's worker thread)
    # the signals stay as they were.
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, _frame: object) -> None:
        # One stop: a second signal (Ctrl-C pressed twice) must not cut the cleanup short.
        # It is bounded (the servers' grace, a few deletes); SIGKILL still ends it.
        for number in _STOP_SIGNALS:
            signal.signal(number, signal.SIG_IGN)
        raise Stopped(signum)

    previous = {number: signal.signal(number, stop) for number in _STOP_SIGNALS}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
