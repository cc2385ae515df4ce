"""Two bank starts sharing a token, its lock directory and the ``env:`` PIN variable's name
(two banks on one host, each with its own value): neither removes nor replaces the other's
refusal, so each start's wrong PIN is still offered once; a start gone leaves nothing
behind once the record is written again; a record that does not read as one is ignored.

The workers are forked from the test, as in ``test_env_pin_bank_start`` (whose helpers
these are); a start lasts as long as its supervisor, the test process unless it is given
one that has ended.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

import pytest

from .test_env_pin_bank_start import (  # noqa: F401 - _no_start_here: autouse here too
    VARIABLE,
    WRONG_PIN,
    _no_start_here,
    _records,
    _start_workers,
    ended_supervisor,
)
from .testbed import SoftToken


def _offers(answers: list[tuple[int, str]]) -> list[int]:
    return [reads for reads, _ in answers]


def _record_path(token: SoftToken) -> Path:
    """The token's environment PIN record (one start must have written it)."""
    [path] = [p for p in token.lock_dir.glob("*.env-*.refused") if token.label in p.read_text()]
    return path


def _starts(token: SoftToken) -> dict[str, dict[str, object]]:
    starts: dict[str, dict[str, object]] = json.loads(_record_path(token).read_text())["starts"]
    return starts


def test_another_starts_accepted_login_keeps_this_starts_refusal(
    token: SoftToken, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before, bank B's accepted login removed the record, bank A's included: A's next
    worker (a replacement) offered A's wrong PIN again."""
    a, b = secrets.token_hex(16), secrets.token_hex(16)
    monkeypatch.setenv(VARIABLE, WRONG_PIN)
    assert _offers(_start_workers(token, a, 1)) == [1]  # A, wrong PIN: offered, recorded
    monkeypatch.setenv(VARIABLE, token.pin)
    assert _start_workers(token, b, 1) == [(1, "opened")]  # B, its own PIN: taken
    monkeypatch.setenv(VARIABLE, WRONG_PIN)
    again = _start_workers(token, a, 1)  # A's replacement
    assert _offers(again) == [0], again
    assert "login refused (PinIncorrect)" in again[0][1], again
    assert set(_starts(token)) == {a}


def test_two_live_starts_refused_keep_both_refusals(
    token: SoftToken, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before, B's refusal was written over A's: A's next worker offered its PIN again."""
    a, b = secrets.token_hex(16), secrets.token_hex(16)
    monkeypatch.setenv(VARIABLE, WRONG_PIN)
    assert _offers(_start_workers(token, a, 1)) == [1]
    assert _offers(_start_workers(token, b, 1)) == [1]  # B's own value: B's own try
    assert _offers(_start_workers(token, a, 2)) == [0, 0]
    assert _offers(_start_workers(token, b, 2)) == [0, 0]
    assert set(_starts(token)) == {a, b}
    record = _record_path(token).read_text()
    assert WRONG_PIN not in record


def test_a_gone_starts_entry_is_dropped_when_the_record_is_written(
    token: SoftToken, monkeypatch: pytest.MonkeyPatch
) -> None:
    gone, live = secrets.token_hex(16), secrets.token_hex(16)
    monkeypatch.setenv(VARIABLE, WRONG_PIN)
    first = _start_workers(token, gone, 1, supervisor=ended_supervisor())
    assert _offers(first) == [1]
    assert _offers(_start_workers(token, live, 1)) == [1]
    # Another start's PIN accepted: the live start's entry kept.
    monkeypatch.setenv(VARIABLE, token.pin)
    assert _start_workers(token, secrets.token_hex(16), 1) == [(1, "opened")]
    monkeypatch.setenv(VARIABLE, WRONG_PIN)
    assert _offers(_start_workers(token, live, 1)) == [0]
    assert set(_starts(token)) == {live}  # no file, no entry piles up per failed start


def test_entries_that_do_not_read_as_one_are_ignored_and_dropped(
    token: SoftToken, monkeypatch: pytest.MonkeyPatch
) -> None:
    ours, other = secrets.token_hex(16), secrets.token_hex(16)
    monkeypatch.setenv(VARIABLE, WRONG_PIN)
    assert _offers(_start_workers(token, other, 1)) == [1]
    path = _record_path(token)
    record = json.loads(path.read_text())
    good = record["starts"][other]
    pids: list[object] = [0, -1, True, "1", 2**40, None]
    record["starts"] = {
        ours: {"supervisor": os.getpid(), "message": 5},  # no message: no refusal
        **{f"odd-{i}": {"supervisor": pid, "message": "m"} for i, pid in enumerate(pids)},
        "not-an-entry": "x",
        other: good,
    }
    path.write_text(json.dumps(record))
    assert _offers(_start_workers(token, ours, 1)) == [1]  # not kept from its first try
    assert set(_starts(token)) == {other, ours}  # the odd ones gone, ours written anew
    assert isinstance(_starts(token)[ours]["message"], str)
    # A record whose entries are no mapping at all holds nothing against any start.
    path.write_text(json.dumps({"source": f"env:{VARIABLE}", "starts": [other]}))
    assert _offers(_start_workers(token, other, 1)) == [1]
    # Nor one for another variable.
    path.write_text(json.dumps({**record, "source": "env:SOMETHING_ELSE"}))
    assert _offers(_start_workers(token, other, 1)) == [1]


def test_the_oldest_entries_give_way_when_the_record_would_outgrow_its_bound(
    token: SoftToken, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hsm.pin_latch import MAX_REFUSAL_RECORD_BYTES

    ours = secrets.token_hex(16)
    monkeypatch.setenv(VARIABLE, WRONG_PIN)
    assert _offers(_start_workers(token, secrets.token_hex(16), 1)) == [1]
    path = _record_path(token)
    record = json.loads(path.read_text())
    # As full as it can be and still read (each entry ~130 bytes; this start's ~300 more).
    starts: dict[str, object] = {}
    while True:
        name = f"start-{len(starts):02d}"
        more = {**starts, name: {"supervisor": os.getpid(), "message": "m" * 100}}
        if len(json.dumps({**record, "starts": more})) > MAX_REFUSAL_RECORD_BYTES:
            break
        starts, newest = more, name
    path.write_text(json.dumps({**record, "starts": starts}))
    assert _offers(_start_workers(token, ours, 1)) == [1]
    assert len(path.read_bytes()) <= MAX_REFUSAL_RECORD_BYTES
    kept = list(_starts(token))
    assert kept[-1] == ours and newest in kept and "start-00" not in kept, kept
    assert _offers(_start_workers(token, ours, 1)) == [0]  # and it reads back


def test_supervisor_alive_takes_only_a_running_process() -> None:
    from hsm.pin_latch import supervisor_alive

    assert supervisor_alive(os.getpid())
    assert supervisor_alive(1)  # init: running, though not ours to signal
    for odd in (ended_supervisor(), 0, -1, -os.getpid(), True, "1", 1.0, 2**40, None):
        assert not supervisor_alive(odd), odd
