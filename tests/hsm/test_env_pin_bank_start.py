"""A wrong ``env:`` PIN at a bank start: offered to the token once, whatever the number of
workers and replacements; offered again (once) at the next start; nothing of it written.

Each "worker" is a process forked from the test, as the supervisor forks them, joined to
a bank start as ``gateway.workers`` joins its children (``hsm.pinsource.join_bank_start``)
and opening the token with a PIN source that counts its reads: a PIN read is a PIN
offered (none of these has the shape ``pin_problem`` refuses). The test process is the
starts' supervisor, so a start lasts as long as the test, unless it is given one that
has ended (``ended_supervisor``).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import secrets
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from hsm import pinsource
from hsm.token_config import Pkcs11Config

from .pin_file_support import CHILD_SECONDS, open_in_child
from .testbed import CountingPinSource, SoftToken

VARIABLE = "SETPAY_TEST_START_PIN"
WRONG_PIN = "wrong-start-pin-7261"


def _worker(start: str | None, supervisor: int | None, config: Pkcs11Config, results: Any) -> None:
    """A worker of the bank start ``start`` (None: a process of none) opening the token;
    its start's supervisor is ``supervisor`` (None: its parent, the test)."""
    if start is not None:
        pinsource.join_bank_start(start)
        if supervisor is not None:  # a start whose supervisor has ended
            pinsource._bank_supervisor = supervisor
    open_in_child(config, results)


def ended_supervisor() -> int:
    """The pid of a process that has ended (reaped): the supervisor of a start gone."""
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return pid


def _start_workers(
    token: SoftToken,
    start: str | None,
    count: int,
    *,
    together: bool = True,
    supervisor: int | None = None,
) -> list[tuple[int, str]]:
    """``count`` workers of ``start`` open the token, all at once (``together``) or one
    after the other (a crash loop of replacements); each one's PIN reads and outcome.
    ``supervisor``: the start's supervisor's pid (None: the test process)."""
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    answers: list[tuple[int, str]] = []
    children = []
    for _ in range(count):
        config = replace(token.config(), pin_source=CountingPinSource("env", VARIABLE))
        child = context.Process(target=_worker, args=(start, supervisor, config, results))
        child.start()
        children.append(child)
        if not together:
            answers.append(results.get(timeout=CHILD_SECONDS))
    if together:
        answers = [results.get(timeout=CHILD_SECONDS) for _ in children]
    for child in children:
        child.join(timeout=CHILD_SECONDS)
    return answers


def _records(token: SoftToken) -> list[str]:
    """The PIN refusals recorded for this token (the lock directory is the session's)."""
    records = [p.read_text() for p in token.lock_dir.iterdir() if p.name.endswith(".refused")]
    return [record for record in records if token.label in record]


@pytest.fixture(autouse=True)
def _no_start_here(token: SoftToken, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The test process itself belongs to no bank start, whatever ran before; the
    token's refusals are removed after the test (the lock directory is the session's)."""
    monkeypatch.setattr(pinsource, "_bank_start", None)
    monkeypatch.setattr(pinsource, "_bank_supervisor", None, raising=False)
    yield
    for path in token.lock_dir.glob("*.refused"):
        if token.label in path.read_text():
            path.unlink()


@pytest.mark.parametrize("workers", [3, 4])
def test_workers_starting_together_offer_a_wrong_env_pin_once(
    token: SoftToken, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    monkeypatch.setenv(VARIABLE, WRONG_PIN)
    answers = _start_workers(token, secrets.token_hex(16), workers)
    assert sum(reads for reads, _ in answers) == 1, answers  # was one per worker
    assert all("login refused (PinIncorrect)" in outcome for _, outcome in answers), answers
    assert all("until the bank is started again" in outcome for _, outcome in answers)
    # The record names the variable and the start, nothing of the PIN, not even a hash.
    [record] = _records(token)
    assert set(json.loads(record)) == {"source", "starts"}
    [(_, entry)] = json.loads(record)["starts"].items()
    assert set(entry) == {"supervisor", "message"} and entry["supervisor"] == os.getpid()
    assert WRONG_PIN not in record and f"env:{VARIABLE}" in record


def test_replacements_of_one_start_offer_it_no_more(
    token: SoftToken, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(VARIABLE, WRONG_PIN)
    start = secrets.token_hex(16)
    answers = _start_workers(token, start, 3, together=False)  # each replaces the last
    assert [reads for reads, _ in answers] == [1, 0, 0], answers
    assert all("PinIncorrect" in outcome for _, outcome in answers), answers


def test_the_next_start_offers_the_pin_again_and_a_corrected_one_logs_in(
    token: SoftToken, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(VARIABLE, WRONG_PIN)
    first = _start_workers(token, secrets.token_hex(16), 3, supervisor=ended_supervisor())
    assert sum(reads for reads, _ in first) == 1, first
    # Started again, still wrong: the last start's refusal binds it not; tried once more.
    again = _start_workers(token, secrets.token_hex(16), 3, supervisor=ended_supervisor())
    assert sum(reads for reads, _ in again) == 1, again
    assert all("PinIncorrect" in outcome for _, outcome in again), again
    # Started again with the PIN corrected: every worker logs in.
    monkeypatch.setenv(VARIABLE, token.pin)
    corrected = _start_workers(token, secrets.token_hex(16), 3)
    assert corrected == [(1, "opened")] * 3, corrected
    assert _records(token) == []  # the starts before are gone: nothing left recorded


def test_a_process_of_no_bank_start_records_nothing_and_heeds_no_start(
    token: SoftToken, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(VARIABLE, WRONG_PIN)
    assert sum(reads for reads, _ in _start_workers(token, secrets.token_hex(16), 2)) == 1
    # A process of no start (an operator's command, say): the start's record binds it
    # not (its value may differ), and it writes none of its own.
    before = _records(token)
    monkeypatch.setenv(VARIABLE, token.pin)
    assert _start_workers(token, None, 1) == [(1, "opened")]
    assert _records(token) == before  # nor removes the start's
    # Processes of no start, wrong PIN: each offers it (nothing shared), none records it.
    monkeypatch.setenv(VARIABLE, WRONG_PIN)
    alone = _start_workers(token, None, 2)
    assert [reads for reads, _ in alone] == [1, 1], alone
    assert all(f"until env:{VARIABLE} changes" in outcome for _, outcome in alone), alone
    assert _records(token) == before
