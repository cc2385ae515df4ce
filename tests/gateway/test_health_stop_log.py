"""A stop asked for says NOT_SERVING as a detail (DEBUG); a probe that fails still says
it as a warning. The stop's NOT_SERVING was a warning too: a Ctrl-C on ``setpay gateway
serve`` printed four identical "health: NOT_SERVING" warnings (two servers in each of two
workers), news to no one, where a failing probe's is news to the operator."""

from __future__ import annotations

import logging

import pytest

from gateway.health_monitor import HealthMonitor, WatchEndingHealth

SERVICE = "setpay.v1.PaymentGateway"


def _said(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "setpay.server"]


def test_a_stop_says_not_serving_as_a_detail(caplog: pytest.LogCaptureFixture) -> None:
    monitor = HealthMonitor(WatchEndingHealth(), (SERVICE,), [lambda: None])
    with caplog.at_level(logging.DEBUG, logger="setpay.server"):
        assert monitor.probe()
        monitor.stop()
    assert _said(caplog) == [
        (logging.INFO, "health: SERVING"),
        (logging.DEBUG, "health: NOT_SERVING"),
    ]
    assert not monitor.serving


def test_a_failing_probe_still_warns(caplog: pytest.LogCaptureFixture) -> None:
    down = False

    def probe() -> None:
        if down:
            raise OSError("gone")

    monitor = HealthMonitor(WatchEndingHealth(), (SERVICE,), [probe])
    with caplog.at_level(logging.DEBUG, logger="setpay.server"):
        assert monitor.probe()
        down = True
        assert not monitor.probe()
        monitor.stop()  # already NOT_SERVING: nothing more to say
    assert (logging.WARNING, "health: NOT_SERVING") in _said(caplog)
    assert [m for _, m in _said(caplog)].count("health: NOT_SERVING") == 1
