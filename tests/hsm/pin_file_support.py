"""What the tests of a refused PIN file share: writing the file as an operator does, and
opening the token from another process, as a worker or a restarted gateway would."""

from __future__ import annotations

import multiprocessing
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from hsm.pkcs11 import Pkcs11Backend, Pkcs11Config

from .testbed import CountingPinSource, SoftToken

# A child process imports nothing new and opens one token: ample on a loaded machine.
CHILD_SECONDS = 60


def write_pin(path: Path, pin: str, mode: int = 0o600) -> None:
    """``pin`` as the content of the PIN file ``path`` (one line): owner-only, or ``mode``
    exactly (whatever the umask, and a file written again too) for a test of a PIN file
    others may read. Created owner-only, so that it is never readable by others before."""
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as handle:
        os.fchmod(handle.fileno(), mode)
        handle.write(pin + "\n")


def open_in_child(config: Pkcs11Config, results: Any) -> None:
    """Another process (a worker, a restarted gateway): open the token with ``config``;
    put its PIN reads and the outcome on ``results``."""
    assert isinstance(config.pin_source, CountingPinSource)
    try:
        Pkcs11Backend(config).close()
        outcome = "opened"
    except BaseException as exc:
        outcome = f"{type(exc).__name__}: {exc}"
    results.put((len(config.pin_source.reads), outcome))


def open_elsewhere(config: Pkcs11Config) -> tuple[int, str]:
    """A fresh process (a restarted worker) opens the token with ``config``, its PIN read
    from the same file: the child's PIN reads and the outcome (``open_in_child``)."""
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    fresh = replace(config, pin_source=CountingPinSource("file", config.pin_source.location))
    child = context.Process(target=open_in_child, args=(fresh, results))
    child.start()
    try:
        answer: tuple[int, str] = results.get(timeout=CHILD_SECONDS)
    finally:
        child.join(timeout=CHILD_SECONDS)
    return answer


def refusal_records_naming(token: SoftToken, pin_file: Path) -> list[str]:
    """The token's recorded PIN refusals that name ``pin_file``."""
    records = [p.read_text() for p in token.lock_dir.iterdir() if p.name.endswith(".refused")]
    return [record for record in records if str(pin_file) in record]
