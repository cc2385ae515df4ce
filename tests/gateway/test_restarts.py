"""When the supervisor starts a dead child again, and when it gives up
(``gateway.restarts``), on a clock the test moves."""

from __future__ import annotations

import pytest

from gateway.child import LEDGER_INDEX
from gateway.restarts import (
    FIRST_BACKOFF_SECONDS,
    MAX_BACKOFF_SECONDS,
    MAX_RESTARTS,
    STEADY_SECONDS,
    Backoff,
    Restarts,
)

QUICK = 1.0  # seconds a worker served before a quick death


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_first_death_is_restarted_at_once_then_each_quick_one_waits_twice_as_long() -> None:
    clock = _Clock()
    backoff = Backoff(clock)
    waits = [backoff.died(0, QUICK) for _ in range(10)]
    assert waits[:4] == [
        0.0,
        FIRST_BACKOFF_SECONDS,
        2 * FIRST_BACKOFF_SECONDS,
        4 * FIRST_BACKOFF_SECONDS,
    ]
    assert max(waits) == MAX_BACKOFF_SECONDS == waits[-1]


def test_a_worker_that_served_steadily_ends_its_index_s_back_off() -> None:
    backoff = Backoff(_Clock())
    for _ in range(4):
        backoff.died(0, QUICK)
    assert backoff.died(0, STEADY_SECONDS) == 0.0
    assert backoff.died(0, QUICK) == FIRST_BACKOFF_SECONDS


def test_each_index_has_its_own_back_off() -> None:
    backoff = Backoff(_Clock())
    backoff.died(0, QUICK)
    assert backoff.died(0, QUICK) == FIRST_BACKOFF_SECONDS
    assert backoff.died(1, QUICK) == 0.0


def test_an_index_is_due_once_its_wait_is_over_and_the_loop_wakes_for_it() -> None:
    clock = _Clock()
    backoff = Backoff(clock)
    backoff.died(0, QUICK)
    assert backoff.due() == [0]  # at once
    backoff.died(0, QUICK)
    assert backoff.due() == [] and backoff.waiting()
    assert backoff.next_in(10.0) == FIRST_BACKOFF_SECONDS
    assert backoff.next_in(0.1) == 0.1
    clock.now += FIRST_BACKOFF_SECONDS
    assert backoff.due() == [0] and not backoff.waiting()
    assert backoff.next_in(10.0) == 10.0


def test_a_stop_cancels_the_restarts_still_waiting() -> None:
    backoff = Backoff(_Clock())
    backoff.died(0, QUICK)
    backoff.died(0, QUICK)
    backoff.cancel()
    assert not backoff.waiting()


def test_deaths_while_another_worker_serves_never_stop_the_bank() -> None:
    """Before, every restart spent the bank's budget: the sixth death of one worker within
    a minute stopped the whole bank, healthy workers and their connections with it."""
    restarts = Restarts(_Clock())
    for _ in range(5 * MAX_RESTARTS):
        assert restarts.refusal("worker 0", 0, ready_at=0.0, serving=True) is None


def test_deaths_with_no_worker_serving_spend_the_budget_and_say_so() -> None:
    restarts = Restarts(_Clock())
    for _ in range(MAX_RESTARTS):
        assert restarts.refusal("worker 0", 0, ready_at=0.0, serving=False) is None
    # Said as it happened: MAX_RESTARTS restarts were made, not "more than" that.
    assert restarts.refusal("worker 0", 0, ready_at=0.0, serving=False) == (
        f"worker 0 died with no other worker serving, after {MAX_RESTARTS} restarts within"
        " 60 s: a crash loop"
    )


def test_the_ledger_process_always_spends_the_budget_and_waits_for_nothing() -> None:
    restarts = Restarts(_Clock())
    for _ in range(MAX_RESTARTS):
        assert restarts.refusal("ledger process", LEDGER_INDEX, 0.0, serving=True) is None
    assert not restarts.backoff.waiting()  # restarted at once, by the supervisor itself
    refused = restarts.refusal("ledger process", LEDGER_INDEX, 0.0, serving=True)
    assert (
        refused == f"ledger process died, after {MAX_RESTARTS} restarts within 60 s: a crash loop"
    )


@pytest.mark.parametrize(("index", "who"), [(0, "a worker"), (LEDGER_INDEX, "the ledger process")])
def test_a_child_that_never_served_stops_the_bank(index: int, who: str) -> None:
    restarts = Restarts(_Clock())
    assert restarts.refusal("x", index, ready_at=None, serving=True) == f"{who} failed to start"


def test_a_due_index_waits_while_a_restarted_ledger_process_does_not_serve_yet() -> None:
    restarts = Restarts(_Clock())
    restarts.ledger_serves = False  # the supervisor forked a ledger process: not ready yet
    restarts.refusal("worker 0", 0, 0.0, serving=True)  # a first death: due at once
    assert restarts.due() == []
    # Its ready line wakes the supervisor: a due index must not make the loop spin.
    assert restarts.next_in(1.0) == 1.0
    restarts.ledger_serves = True
    assert restarts.next_in(1.0) == 0.0
    assert restarts.due() == [0]
