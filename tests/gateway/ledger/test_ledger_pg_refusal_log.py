"""How often the PostgreSQL store logs a refused connection (``postgres_refusals``).

Each reason at once, then once a minute while it lasts: a serving bank whose password
was changed under it says so without a line per request, says so again while it lasts,
and says at once what changed (another reason, or a refusal after it was served again).
The minute is passed on a clock of the test's own.
"""

from __future__ import annotations

import logging

import psycopg
import pytest

from gateway.ledger.postgres_refusals import (
    CONNECT_FAILURE_LOG_SECONDS,
    RefusalLog,
    connect_refused,
)

PASSWORD_REFUSED = 'connection failed: FATAL: password authentication failed for user "teller"'
NO_LOGIN = 'connection failed: FATAL: role "teller" is not permitted to log in'


class Clock:
    """Seconds that pass only when the test says so."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def _refused(log: RefusalLog, reason: str) -> None:
    exc = psycopg.OperationalError(reason)
    log.refused(connect_refused(exc, []), exc)


def _said(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "setpay.ledger"]


@pytest.fixture(autouse=True)
def _warnings(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="setpay.ledger")


def test_the_same_reason_is_said_again_once_the_minute_has_passed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    log = RefusalLog(clock)
    _refused(log, PASSWORD_REFUSED)
    clock.now += CONNECT_FAILURE_LOG_SECONDS - 0.1
    _refused(log, PASSWORD_REFUSED)  # within the minute: not again
    assert len(_said(caplog)) == 1
    clock.now += 0.1
    _refused(log, PASSWORD_REFUSED)
    _refused(log, PASSWORD_REFUSED)
    said = _said(caplog)
    assert len(said) == 2
    assert all("password authentication failed" in line for line in said)


def test_another_reason_is_said_at_once(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    log = RefusalLog(clock)
    _refused(log, PASSWORD_REFUSED)
    _refused(log, NO_LOGIN)
    _refused(log, NO_LOGIN)
    _refused(log, PASSWORD_REFUSED)  # back to the first: news again
    said = _said(caplog)
    assert len(said) == 3
    assert "not permitted to log in" in said[1]
    assert "password authentication failed" in said[2]


def test_a_refusal_after_a_connection_opened_is_said_at_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = RefusalLog(Clock())
    _refused(log, PASSWORD_REFUSED)
    log.connected()
    _refused(log, PASSWORD_REFUSED)
    _refused(log, PASSWORD_REFUSED)
    assert len(_said(caplog)) == 2


def test_hosts_failing_in_another_order_are_the_same_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # psycopg's words for a multi-host string, as ``load_balance_hosts=random`` shuffles it.
    def several(first: str, second: str) -> str:
        return (
            f"{second}: down\nMultiple connection attempts failed. All failures were:\n"
            f"- host: '{first}': {first}: down\n- host: '{second}': {second}: down"
        )

    log = RefusalLog(Clock())
    _refused(log, several("a", "b"))
    _refused(log, several("b", "a"))
    assert len(_said(caplog)) == 1
    _refused(log, several("a", "c"))  # another host among them: another reason
    assert len(_said(caplog)) == 2
