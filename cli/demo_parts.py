"""The parts of ``setpay demo`` that are not its story: the PAN scan, the tampering, the
bank's stop, its token keys' and its directory's removal, and the signals that end a run
early."""

from __future__ import annotations

import shlex
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cli.bench_workdir import Left, temporary
from clients.peers import PeerConfig
from clients.wallet.config import write_config as write_wallet_config
from gateway.bank_errors import BankExists
from gateway.bank_pki import ALL_LABELS, bank_keys_uri
from gateway.config import BankConfig
from gateway.process import RunningBank
from gateway.provisioning import destroy_bank_keys
from hsm.uri import describe_uri, open_backend
from setcore.pan import PAN
from setpay.v1 import purchase_pb2

# Grace for in-flight calls when the demo shuts its servers down.
SHUTDOWN_GRACE_SECONDS = 2.0
# The name of the temporary directory a run without --dir makes, before its random part.
TEMPORARY_PREFIX = "setpay-demo-"


@dataclass
class Workdir:
    """The temporary directory a run made, if it made one yet. Made as the bench's
    (``cli.bench_workdir.temporary``): removed by the demo on its way out or, when SIGKILL
    runs none of that, by its reaper once the demo is gone. A killed demo left it, keys
    and passphrase files, for good."""

    path: Path | None = None

    @property
    def left_behind(self) -> bool:
        """Whether the directory is still there."""
        return self.path is not None and self.path.exists()

    @contextmanager
    def made(self) -> Iterator[Path]:
        """A new temporary directory, removed at the block's end (``said``)."""
        with temporary(TEMPORARY_PREFIX, self.said) as made:
            self.path = made.path
            yield made.path

    def said(self, directory: Path, left: list[Left]) -> None:
        """Say on stderr when the removed directory stays, or part of it (a mount in it,
        say): it holds keys and passphrase files."""
        if left or directory.exists():
            mounts = f" (left: {'; '.join(map(str, left))})" if left else ""
            print(
                f"setpay demo: could not remove {directory}{mounts}, which holds keys and "
                "passphrase files: remove it",
                file=sys.stderr,
            )


def configure_wallet(
    directory: Path, keys: str, passphrase_file: str, ca: str, merchant: str | None = None
) -> None:
    """Write the demo wallet's ``wallet.toml``: the CA at ``ca``, and, once the merchant
    serves, the merchant at ``merchant``, both trusted through ``tls/root.pem``.

    The story names the merchant at each purchase, but a wallet that ``--dir`` keeps is
    used with ``setpay wallet purchase`` and ``inquire``, which refuse a wallet without a
    ``[merchant]`` table (``--merchant`` only replaces its target): it names the demo's
    merchant, as the README's wallet names its own, a target to replace after the run."""
    root = directory / "tls" / "root.pem"
    write_wallet_config(
        directory, ca=PeerConfig(ca, root), keys=keys, passphrase_file=passphrase_file,
        merchant=None if merchant is None else PeerConfig(merchant, root),
    )  # fmt: skip


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
    """Stop the bank's servers. Their health's NOT_SERVING at a stop asked for is a detail
    (``gateway.health_monitor``): no longer a warning, which this once hid by raising
    the servers' log level to ERROR across the stop, and their other warnings with it."""
    running.stop(SHUTDOWN_GRACE_SECONDS)


def tamper(request: purchase_pb2.PurchaseRequest) -> None:
    """Flip one bit of the PI's sealed ciphertext after the wallet signed it."""
    preq = purchase_pb2.PReqDualSigned.FromString(request.p_req)
    pi = purchase_pb2.PIDualSigned.FromString(preq.pi_dual_signed)
    ciphertext = bytearray(pi.ex_pi.ciphertext)
    ciphertext[len(ciphertext) // 2] ^= 0x01
    pi.ex_pi.ciphertext = bytes(ciphertext)
    preq.pi_dual_signed = pi.SerializeToString()
    request.p_req = preq.SerializeToString()


def _deletions(uri: str, labels: list[str]) -> str:
    """The commands that delete ``labels`` from the key backend ``uri`` names, one a line:
    ``--no-bank``, as the bank, its configuration and its key lock are gone."""
    return "".join(
        f"\n  setpay keys delete --keys {shlex.quote(describe_uri(uri))} --no-bank "
        f"--label {label} --all-versions"
        for label in labels
    )


@contextmanager
def refusing_a_used_key_backend(keys: str | None) -> Iterator[None]:
    """Say how to go on when ``--keys`` names a backend that holds a bank's keys already,
    which ``setpay init`` refuses (``BankExists``): a demo run with ``--dir`` keeps the
    keys it made, so the next run on that token meets them. Whose they are the demo cannot
    tell, so it deletes nothing itself: another token, or their deletion if no bank uses
    them."""
    try:
        yield
    except BankExists as exc:
        if keys is None:  # the demo's own new keystore: nothing there to advise on
            raise
        raise BankExists(
            f"{exc}: a bank's keys are on it (a `setpay demo --dir` run keeps those it "
            "made). Give --keys another token or, only if no bank uses these keys, delete "
            f"them:{_deletions(keys, list(ALL_LABELS))}"
        ) from exc


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
        print(
            f"setpay demo: could not remove the demo bank's keys {', '.join(left)}; remove "
            f"them with:{_deletions(uri, labels)}",
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


class StopSignals:
    """Where a stop signal ends the demo at once (``Stopped``) and where it waits.

    While the story runs, a signal raises ``Stopped`` wherever the main thread is. Inside
    ``held()`` and once ``begin_cleanup()`` was called, it is only noted: raised inside a
    cleanup, ``Stopped`` cut it short (``shutil.rmtree`` left keys and passphrase files,
    an ``except Exception`` around the token keys' deletion let it through); raised
    between the bank's init and the registration of its keys' deletion, it left the keys
    on the token. A noted signal is raised as ``Stopped`` at the end of ``held()``, and
    after the cleanup by ``raise_noted()``. Python runs a signal's handler in the main
    thread whichever thread the signal reached, so a flag it reads there is enough; a
    signal mask would hold back only the threads it was set in, not the servers'.
    """

    def __init__(self) -> None:
        self._holding = 0
        self._cleaning = False
        self._noted: int | None = None

    def handle(self, signum: int, _frame: object) -> None:
        """The handler of each stop signal."""
        if self._holding or self._cleaning:
            if self._noted is None:
                self._noted = signum
            return
        self._stop(signum)

    def _stop(self, signum: int) -> None:
        # One stop: a second signal (Ctrl-C pressed twice) must not cut the cleanup short.
        # It is bounded (the servers' grace, a few deletes); SIGKILL still ends it.
        for number in _STOP_SIGNALS:
            signal.signal(number, signal.SIG_IGN)
        raise Stopped(signum)

    @contextmanager
    def held(self) -> Iterator[None]:
        """A stop signal waits for the block's end, then raises ``Stopped``."""
        self._holding += 1
        try:
            yield
        finally:
            self._holding -= 1
        self.raise_noted()

    def begin_cleanup(self) -> None:
        """From now on a stop signal is only noted, until ``raise_noted``."""
        self._cleaning = True

    def raise_noted(self) -> None:
        """``Stopped`` for a signal noted meanwhile, if one was (outside ``held``)."""
        if self._noted is not None and not self._holding:
            signum, self._noted = self._noted, None
            self._stop(signum)


@contextmanager
def stopped_by_signals() -> Iterator[StopSignals]:
    """SIGINT, SIGTERM and SIGHUP handled by the ``StopSignals`` given, inside the block."""
    stops = StopSignals()
    # Handlers can be set in the main thread only; elsewhere (a caller's worker thread)
    # the signals stay as they were.
    if threading.current_thread() is not threading.main_thread():
        yield stops
        return
    previous = {number: signal.signal(number, stops.handle) for number in _STOP_SIGNALS}
    try:
        yield stops
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
