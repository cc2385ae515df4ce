"""A stop signal that comes while the bank is already stopping is answered in the log
(``gateway.stop_signals.RepeatNotice``), at most once a second, on a clock the test
moves. The real command's supervisor and worker: ``test_workers_stop_repeats``."""

from __future__ import annotations

import logging

import pytest

from gateway.stop_signals import REPEAT_NOTICE_SECONDS, RepeatNotice


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _notice(clock: _Clock) -> RepeatNotice:
    return RepeatNotice(logging.getLogger("test.repeats"), "already stopping", lambda: 130.0, clock)


def test_a_repeat_is_answered_with_the_time_left(caplog: pytest.LogCaptureFixture) -> None:
    clock = _Clock()
    notice = _notice(clock)
    clock.now += REPEAT_NOTICE_SECONDS
    with caplog.at_level(logging.INFO, "test.repeats"):
        notice.repeated()
    assert caplog.messages == ["already stopping within 29 s"]


def test_repeats_are_answered_at_most_once_a_second(caplog: pytest.LogCaptureFixture) -> None:
    """Not within a second of the stop either: a terminal's Ctrl-C reaches every process,
    and each worker gets the supervisor's SIGTERM as well."""
    clock = _Clock()
    notice = _notice(clock)
    with caplog.at_level(logging.INFO, "test.repeats"):
        notice.repeated()  # with the stop itself
        clock.now += REPEAT_NOTICE_SECONDS
        notice.repeated()
        clock.now += REPEAT_NOTICE_SECONDS / 2
        notice.repeated()
        clock.now += REPEAT_NOTICE_SECONDS / 2
        notice.repeated()
    assert len(caplog.messages) == 2
