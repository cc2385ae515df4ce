"""The machine's speed during a run: the readings a run keeps, and the sampling child."""

from __future__ import annotations

import time

import pytest

from clients.loadtest.speed import SAMPLE_SECONDS, Readings, Speed, SpeedSampler, loop_ms


def test_a_run_keeps_the_readings_taken_inside_it() -> None:
    readings = Readings()
    for at, ms in ((9.9, 50.0), (10.0, 24.0), (10.5, 40.0), (11.0, 22.0), (11.1, 60.0)):
        readings.add(at, ms)
    speed = readings.between(10.0, 11.0)
    assert speed == Speed((24.0, 40.0, 22.0))
    assert (speed.median, speed.fastest, speed.slowest) == (24.0, 22.0, 40.0)


def test_a_run_between_readings_has_none() -> None:
    readings = Readings()
    readings.add(1.0, 24.0)
    readings.add(2.0, 24.0)
    assert readings.between(1.2, 1.8) is None


def test_a_reading_is_in_ms_per_million_additions() -> None:
    # The reference loop's unit: tens of ms on the development machine, never 0.
    assert 0 < loop_ms(20_000) < 10_000


def test_the_sampler_reads_until_closed() -> None:
    with SpeedSampler() as sampler:
        started = time.monotonic()
        deadline = started + 20 * SAMPLE_SECONDS
        while time.monotonic() < deadline:
            speed = sampler.between(started, time.monotonic())
            if speed is not None and len(speed.readings) >= 2:
                break
            time.sleep(SAMPLE_SECONDS / 5)
        else:
            pytest.fail("the sampler gave fewer than two readings in 20 sampling periods")
        assert all(ms > 0 for ms in speed.readings)
    stopped = time.monotonic()
    time.sleep(3 * SAMPLE_SECONDS)
    assert sampler.between(stopped, time.monotonic()) is None  # the child is gone
