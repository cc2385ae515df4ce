"""A replacement worker that cannot start while another serves: backed off, not fatal
(``gateway.restarts``), and its cause logged once; the first start still stops the bank."""

from __future__ import annotations

import logging

import pytest

from gateway.child import FAULT_LINE_BYTES, LEDGER_INDEX, fault_line
from gateway.restarts import FIRST_BACKOFF_SECONDS, MAX_BACKOFF_SECONDS, Restarts
from hsm.errors import PermanentBackendError, TokenAbsent, TransientBackendError

AWAY = "?TokenAbsent: no token 't2-bank' in PKCS#11 module"
GONE = "?TransientBackendError: token 't2-bank' is not present"
REFUSED = "!PermanentBackendError: token 't2-bank': login refused (PinIncorrect)"


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _opened(clock: _Clock) -> Restarts:
    restarts = Restarts(clock)
    restarts.opened = True  # every worker served once
    assert restarts.refusal("worker 0", 0, ready_at=0.0, serving=True) is None  # it died
    assert restarts.due() == [0]  # a first death: started again at once
    return restarts


def test_a_replacement_that_cannot_start_while_another_serves_is_backed_off() -> None:
    clock = _Clock()
    restarts = _opened(clock)
    waits = []
    for _ in range(10):
        assert restarts.refusal("worker 0", 0, None, serving=True, fault=AWAY) is None
        waits.append(restarts.backoff.next_in(1000.0))
        assert restarts.due() == []  # not at once: it would fail at once again
        clock.now += waits[-1]
        assert restarts.due() == [0]
    assert waits[0] == FIRST_BACKOFF_SECONDS
    assert waits == sorted(waits) and max(waits) == MAX_BACKOFF_SECONDS  # bounded


def test_its_cause_is_logged_once_until_it_serves(caplog: pytest.LogCaptureFixture) -> None:
    restarts = _opened(_Clock())
    caplog.set_level(logging.INFO, "setpay.workers")
    assert not restarts.repeated(0, None, GONE)
    for _ in range(3):
        assert restarts.refusal("worker 0", 0, None, serving=True, fault=GONE) is None
        restarts.backoff.cancel()
    assert restarts.known_fault(0) == GONE
    assert restarts.repeated(0, None, GONE)
    assert caplog.text.count("cannot start while another worker serves") == 1
    restarts.refusal("worker 0", 0, None, serving=True, fault=AWAY)  # a new cause: news
    assert caplog.text.count("cannot start while another worker serves") == 2
    restarts.served(0)
    assert restarts.known_fault(0) is None and not restarts.repeated(0, None, AWAY)
    assert not restarts.repeated(0, 5.0, AWAY)  # one that served died of something else


@pytest.mark.parametrize(
    ("index", "serving", "opened", "fault"),
    [
        (0, True, False, AWAY),
        (0, False, True, AWAY),
        (LEDGER_INDEX, True, True, AWAY),
        (0, True, True, REFUSED),
        (0, True, True, None),
    ],
    ids=[
        "first-start",
        "no-other-worker-serves",
        "ledger-process",
        "a-refused-pin",
        "no-cause-reported",
    ],
)
def test_other_start_failures_still_stop_the_bank(
    index: int, serving: bool, opened: bool, fault: str | None
) -> None:
    """A refused PIN above all: wherever its refusal could not be recorded (a PIN from the
    environment, a record that could not be written), each start would offer it again."""
    restarts = Restarts(_Clock())
    restarts.opened = opened
    refused = restarts.refusal("x", index, None, serving=serving, fault=fault)
    assert refused is not None and refused.endswith("failed to start")
    assert not restarts.backoff.waiting()


def test_a_fault_line_is_one_bounded_line() -> None:
    line = fault_line(PermanentBackendError("no token\nin module " + "x" * 5000))
    assert "\n" not in line and line.startswith("!PermanentBackendError: no token in module")
    assert len(line.encode()) + 1 <= FAULT_LINE_BYTES  # with its newline


def test_only_the_token_away_is_a_fault_that_passes() -> None:
    assert fault_line(TokenAbsent("no token 't2-bank'")).startswith("?TokenAbsent: ")
    assert fault_line(TransientBackendError("not present")).startswith("?")
    assert fault_line(PermanentBackendError("login refused (PinIncorrect)")).startswith("!")
    assert fault_line(OSError("secret file unreadable")).startswith("!")


def test_a_fault_naming_a_file_not_in_utf8_is_still_reported() -> None:
    line = fault_line(PermanentBackendError("secret file \udce9.pin cannot be read"))
    assert line == "!PermanentBackendError: secret file \\udce9.pin cannot be read"
