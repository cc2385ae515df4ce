"""A replacement worker that cannot start while another serves: backed off, not fatal
(``gateway.restarts``), and its cause logged once; the first start still stops the bank.
With no worker serving, a cause that passes is retried until nothing has served for
RESTART_WINDOW_SECONDS, spending nothing of the restart budget: a lone worker's
replacement meeting the ledger process's death stopped the bank, though the ledger
process served again a moment later; charged a restart each, four workers failing so
together stopped it too. A cause that lasts, the ledger's among them (a damaged file, a
refused password), still stops the bank at once: taken for passing, it was retried for
ever."""

from __future__ import annotations

import logging

import pytest

from gateway.child import FAULT_LINE_BYTES, LEDGER_INDEX, fault_line, passes
from gateway.ledger import StoreAway, StoreBusy, StoreUnavailable
from gateway.ledger.wire import ConnectionEnded, WireError
from gateway.restarts import (
    FIRST_BACKOFF_SECONDS,
    MAX_BACKOFF_SECONDS,
    MAX_RESTARTS,
    RESTART_WINDOW_SECONDS,
    Restarts,
)
from hsm.errors import PermanentBackendError, TokenAbsent, TransientBackendError

AWAY = "?TokenAbsent: no token 't2-bank' in PKCS#11 module"
GONE = "?TransientBackendError: token 't2-bank' is not present"
REFUSED = "!PermanentBackendError: token 't2-bank': login refused (PinIncorrect)"
LEDGER_AWAY = "?StoreAway: the ledger service connection failed: [Errno 104] Connection reset"
DAMAGED = "!StoreUnavailable: SQLite is unavailable (SQLITE_NOTADB)"
LEDGER_BUSY = "?StoreBusy: SQLite is unavailable (SQLITE_BUSY)"


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
        (0, False, True, REFUSED),
        (LEDGER_INDEX, True, True, DAMAGED),  # the ledger busy: test_restarts_ledger_process_busy
        (LEDGER_INDEX, True, True, LEDGER_AWAY),  # passing, but only the ledger busy is retried
        (0, True, True, REFUSED),
        (0, True, True, DAMAGED),
        (0, True, True, None),
    ],
    ids=[
        "first-start",
        "no-other-worker-serves",
        "ledger-process",
        "ledger-process-away",
        "a-refused-pin",
        "a-damaged-ledger",
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


@pytest.mark.parametrize("fault", [AWAY, LEDGER_AWAY], ids=["token-away", "ledger-away"])
def test_a_passing_fault_with_nothing_serving_is_retried_until_nothing_served_a_minute(
    fault: str, caplog: pytest.LogCaptureFixture
) -> None:
    """One worker, or all of them dying with the ledger process: started again after
    its back-off until nothing has served for RESTART_WINDOW_SECONDS; then the bank
    stops, saying how long and why. Charged a restart each, a lone worker was given
    some 12 s (its waits 0.5, 1, 2, 4 s) of a minute."""
    clock = _Clock()
    restarts = _opened(clock)  # its worker died at 0: nothing serves since
    caplog.set_level(logging.INFO, "setpay.workers")
    tries = 0
    while clock.now < RESTART_WINDOW_SECONDS:
        assert restarts.refusal("worker 0", 0, None, serving=False, fault=fault) is None
        tries += 1
        assert restarts.due() == []  # backed off, as when another worker serves
        clock.now += restarts.backoff.next_in(1000.0)
        assert restarts.due() == [0]
    assert tries > MAX_RESTARTS
    assert caplog.text.count("cannot start and no other worker serves") == tries
    assert "nothing has served for 16 s" in caplog.text
    assert restarts.repeated(0, None, fault)  # its cause logged once, by the child
    refused = restarts.refusal("worker 0", 0, None, serving=False, fault=fault)
    assert refused == (
        f"worker 0 failed to start with no worker serving for {clock.now:.0f} s (at most"
        f" {RESTART_WINDOW_SECONDS:.0f} s); the last cause: {fault[1:]}"
    )
    assert not restarts.backoff.waiting()


def test_every_worker_failing_with_nothing_serving_spends_no_restart() -> None:
    """Four workers killed as the ledger process died: one death with nothing serving,
    one of the ledger process, then each replacement failing as it came back. Charged a
    restart each, 1 + 1 + 4 was beyond the budget: the bank stopped, the ledger process
    serving again a millisecond later, "after 5 restarts" said of a worker that failed
    once."""
    clock = _Clock()
    restarts = Restarts(clock)
    restarts.opened = True
    for index in range(3):  # reaped first: the others still count as serving
        assert restarts.refusal(f"worker {index}", index, 0.0, serving=True) is None
    assert restarts.refusal("worker 3", 3, 0.0, serving=False) is None
    assert restarts.refusal("the ledger process", LEDGER_INDEX, 0.0, serving=False) is None
    for _ in range(3):  # three rounds of four failing together
        for index in range(4):
            said = restarts.refusal(f"worker {index}", index, None, False, LEDGER_AWAY)
            assert said is None, said
        clock.now += 1.0
    restarts.backoff.cancel()
    for index in range(4):  # the ledger process back: all serve
        restarts.served(index)
    # Deaths with nothing serving keep the budget: 2 spent above, 3 left.
    for _ in range(MAX_RESTARTS - 2):
        assert restarts.refusal("worker 0", 0, ready_at=0.0, serving=False) is None
    assert restarts.refusal("worker 0", 0, ready_at=0.0, serving=False) is not None


def test_nothing_served_is_counted_from_the_last_worker_that_served() -> None:
    """A minute without serving from the last worker's death, not from the bank's
    start nor from the first failure; a worker serving again starts it afresh."""
    clock = _Clock()
    restarts = _opened(clock)
    restarts.served(0)
    clock.now = 100.0
    assert restarts.refusal("worker 0", 0, ready_at=1.0, serving=False) is None  # died
    clock.now = 100.0 + RESTART_WINDOW_SECONDS - 1
    assert restarts.refusal("worker 0", 0, None, serving=False, fault=LEDGER_AWAY) is None
    clock.now = 100.0 + RESTART_WINDOW_SECONDS
    refused = restarts.refusal("worker 0", 0, None, serving=False, fault=LEDGER_AWAY)
    assert refused is not None and "no worker serving for 60 s" in refused
    assert refused.endswith(LEDGER_AWAY[1:])


@pytest.mark.parametrize("start", [0.0, 2.0, 4.0, 5.3, 10.0, 29.0])
def test_with_nothing_serving_the_bank_stops_within_the_window_and_one_start(
    start: float,
) -> None:
    """A lone worker whose every try fails after ``start`` seconds (its start: the token,
    the ledger's busy timeout, a PostgreSQL connect timeout). The window was judged only
    as a try failed, its back-off uncut: a try failing at 59 s waited up to 30 s more, and
    nothing had served for 61.5 s at the stop with tries failing at once, 93.5 s with
    tries failing after 4 s. Now the last try starts as the window ends (at least
    FIRST_BACKOFF_SECONDS after the failure before it), and the stop comes one start
    later."""
    clock = _Clock()
    restarts = _opened(clock)  # its worker served, and died at 0: nothing serves since
    tries, why = 0, None
    while why is None:
        clock.now += start  # the try's start, failing
        tries += 1
        why = restarts.refusal("worker 0", 0, None, serving=False, fault=LEDGER_BUSY)
        if why is None:
            clock.now += restarts.backoff.next_in(1e9)  # its back-off
            assert restarts.due() == [0]
    assert why.startswith("worker 0 failed to start with no worker serving for"), why
    assert clock.now >= RESTART_WINDOW_SECONDS  # the whole window given
    assert clock.now <= RESTART_WINDOW_SECONDS + FIRST_BACKOFF_SECONDS + start, (tries, why)


def test_the_wait_before_the_last_try_is_cut_to_the_window_but_not_below_a_floor() -> None:
    clock = _Clock()
    restarts = _opened(clock)
    for _ in range(7):  # quick failures: its back-off grows to MAX_BACKOFF_SECONDS
        clock.now += 1.0
        assert restarts.refusal("worker 0", 0, None, serving=False, fault=LEDGER_BUSY) is None
    assert restarts.backoff.next_in(1e9) == MAX_BACKOFF_SECONDS
    clock.now = RESTART_WINDOW_SECONDS - 10.0
    assert restarts.refusal("worker 0", 0, None, serving=False, fault=LEDGER_BUSY) is None
    assert restarts.backoff.next_in(1e9) == 10.0  # what is left of the window
    clock.now = RESTART_WINDOW_SECONDS - 0.1
    assert restarts.refusal("worker 0", 0, None, serving=False, fault=LEDGER_BUSY) is None
    assert restarts.backoff.next_in(1e9) == FIRST_BACKOFF_SECONDS  # not at once
    clock.now = RESTART_WINDOW_SECONDS - 10.0  # another worker serving: not cut
    assert restarts.refusal("worker 0", 0, None, serving=True, fault=LEDGER_BUSY) is None
    assert restarts.backoff.next_in(1e9) == MAX_BACKOFF_SECONDS


def test_while_another_worker_serves_a_passing_fault_never_stops_the_bank() -> None:
    clock = _Clock()
    restarts = _opened(clock)
    for _ in range(100):
        assert restarts.refusal("worker 0", 0, None, serving=True, fault=LEDGER_AWAY) is None
        clock.now += MAX_BACKOFF_SECONDS


def test_of_the_ledgers_faults_only_the_ledger_away_or_busy_passes() -> None:
    """StoreAway (the ledger process's connection failed, the database server away) and
    StoreBusy (its write lock or connection slots held by others), not their base: a
    damaged ledger, a refused password are StoreUnavailable too."""
    assert fault_line(StoreAway("the ledger service does not answer")).startswith("?StoreAway")
    assert fault_line(StoreBusy("SQLite is unavailable (SQLITE_BUSY)")).startswith("?StoreBusy")
    assert passes(fault_line(ConnectionEnded("the ledger connection closed")))
    lasting = [
        StoreUnavailable("SQLite is unavailable (SQLITE_NOTADB)"),
        StoreUnavailable("SQLite is unavailable (SQLITE_CORRUPT)"),
        StoreUnavailable("cannot create or narrow ledger.db: No such file or directory"),
        StoreUnavailable("PostgreSQL is unavailable (cannot connect: ... password ...)"),
        WireError("a frame of operation 3 where operation 2 is under way"),
    ]
    for fault in lasting:
        assert not passes(fault_line(fault)), fault


def test_a_fault_line_is_one_bounded_line() -> None:
    line = fault_line(PermanentBackendError("no token\nin module " + "x" * 5000))
    assert "\n" not in line and line.startswith("!PermanentBackendError: no token in module")
    assert len(line.encode()) + 1 <= FAULT_LINE_BYTES  # with its newline


def test_the_token_away_or_gone_passes_a_refused_pin_or_a_file_fault_does_not() -> None:
    """What a child's fault line marks: the token absent or not present passes by itself;
    a PIN refused, a file that cannot be read, wait for the operator."""
    assert fault_line(TokenAbsent("no token 't2-bank'")).startswith("?TokenAbsent: ")
    assert fault_line(TransientBackendError("not present")).startswith("?")
    assert fault_line(PermanentBackendError("login refused (PinIncorrect)")).startswith("!")
    assert fault_line(OSError("secret file unreadable")).startswith("!")


def test_a_fault_naming_a_file_not_in_utf8_is_still_reported() -> None:
    line = fault_line(PermanentBackendError("secret file \udce9.pin cannot be read"))
    assert line == "!PermanentBackendError: secret file \\udce9.pin cannot be read"
