"""Where a PIN or keystore passphrase comes from: a file or an environment variable.

The secret itself is read only when a backend logs in or unlocks, and never stored in a
field that a ``repr`` or a log line could show: ``PinSource`` holds the place, not the
value. Errors raised are ``hsm.errors.PermanentBackendError`` (nothing to retry: the
configuration is wrong).

A bank start. The processes a ``setpay gateway serve`` forks (``join_bank_start``) all
inherit its environment, so an ``env:NAME`` PIN is the same in each, for the whole start:
what the token said of it in one holds in every other, replacements too, until the bank
is started again (``hsm.pin_latch`` relies on that, and on nothing of the value). A start
lasts as long as its supervisor, the process that forked them: its pid is part of it.
Any other process belongs to no bank start.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from typing import Literal

from hsm.errors import PermanentBackendError

#: A PIN or passphrase file is a few bytes; anything bigger is the wrong file, and
#: reading it whole into memory (to be kept for re-login) would be a mistake.
MAX_SECRET_FILE_BYTES = 4096

#: An environment variable name as shells accept it.
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

#: The name of the bank start this process was forked for (``join_bank_start``), if any,
#: and the pid of that start's supervisor.
_bank_start: str | None = None
_bank_supervisor: int | None = None


def join_bank_start(name: str, supervisor: int | None = None) -> None:
    """Make this process one of the bank start ``name`` (a random name, new at each start)
    whose supervisor is the process ``supervisor`` (None: this process's parent): call it
    in each process the bank's supervisor forks, before any backend opens."""
    global _bank_start, _bank_supervisor  # noqa: PLW0603 - one per process, inherited
    _bank_start = name
    _bank_supervisor = os.getppid() if supervisor is None else supervisor


def bank_start() -> str | None:
    """The bank start this process belongs to (``join_bank_start``); None for any other."""
    return _bank_start


def bank_supervisor() -> int | None:
    """The pid of this process's bank start's supervisor; None outside a bank start."""
    return _bank_supervisor


@dataclass(frozen=True)
class PinSource:
    """A place to read a secret from: ``file:PATH`` or ``env:NAME``."""

    kind: Literal["file", "env"]
    location: str

    @classmethod
    def parse(cls, text: str) -> PinSource:
        """Parse ``file:PATH`` or ``env:NAME``; ``ValueError`` says what is wrong.

        The message never repeats the text: a PIN pasted in its place would be shown.
        """
        kind, sep, location = text.partition(":")
        if not sep or not location:
            raise ValueError("pin-source must be file:PATH or env:NAME")
        if kind == "file":
            return cls("file", location)
        if kind == "env":
            if not _ENV_NAME.fullmatch(location):
                raise ValueError(
                    "pin-source env:NAME needs a variable name (letters, digits and _, "
                    "not starting with a digit)"
                )
            return cls("env", location)
        raise ValueError("pin-source kind is unknown: use file:PATH or env:NAME")

    def describe(self) -> str:
        """The source as text for messages and logs (the place, never the value)."""
        return f"{self.kind}:{self.location}"

    def read(self) -> str:
        """Read the secret now; ``PermanentBackendError`` if it is missing or unsafe."""
        if self.kind == "env":
            value = os.environ.get(self.location, "")
            if not value:
                raise PermanentBackendError(f"environment variable {self.location} is not set")
            # Bytes that are not UTF-8 arrive as lone surrogates, which every later
            # encode() rejects with a UnicodeEncodeError whose args hold the whole secret:
            # looked for without encoding, so no such error exists even as a context.
            if has_surrogates(value):
                raise PermanentBackendError(
                    f"environment variable {self.location} is not UTF-8 text"
                )
            return value
        return _read_secret_file(self.location)


def has_surrogates(text: str) -> bool:
    """True if ``text`` holds a lone surrogate (undecodable bytes): it has no UTF-8 form."""
    return any("\ud800" <= char <= "\udfff" for char in text)


def _read_secret_file(path: str) -> str:
    """Read a secret file that only its owner may read; one trailing newline is dropped.

    Only a regular file is read. Opened without waiting (O_NONBLOCK): a FIFO with no
    writer, or a device, would otherwise hold the login for ever, and with it the token's
    login lock file and the module lock, stalling every process on that token.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
        try:
            mode = os.fstat(fd).st_mode
            if not stat.S_ISREG(mode):
                raise PermanentBackendError(
                    f"secret file {path} is not a regular file ({_file_kind(mode)})"
                )
            # Not closefd: open() refusing the descriptor would not close it.
            with open(fd, "rb", closefd=False) as handle:
                data = handle.read(MAX_SECRET_FILE_BYTES + 1)
        finally:
            os.close(fd)
    except OSError as exc:
        raise PermanentBackendError(
            f"cannot read secret file {path}: {exc.strerror or type(exc).__name__}"
        ) from exc
    # Like ssh with private keys: a secret others can read is already leaked, so refuse
    # it rather than use it and pretend it is safe.
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise PermanentBackendError(
            f"secret file {path} is accessible to group or others "
            f"(mode {stat.S_IMODE(mode):04o}): chmod 600 it"
        )
    if len(data) > MAX_SECRET_FILE_BYTES:
        raise PermanentBackendError(
            f"secret file {path} is larger than {MAX_SECRET_FILE_BYTES} bytes"
        )
    if data.endswith(b"\r\n"):
        data = data[:-2]
    elif data.endswith(b"\n"):
        data = data[:-1]
    if not data:
        raise PermanentBackendError(f"secret file {path} is empty")
    # Not decode() with its strict default: the UnicodeDecodeError it raises holds the
    # whole secret (its repr shows it) and names a byte of it in its message, and it
    # would stay attached to ours as a context. Undecodable bytes become lone surrogates.
    text = data.decode("utf-8", "surrogateescape")
    if has_surrogates(text):
        raise PermanentBackendError(f"secret file {path} is not UTF-8 text")
    return text


def _file_kind(mode: int) -> str:
    """What a file that is not a regular one is, for a message (never its content)."""
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a plain file"
