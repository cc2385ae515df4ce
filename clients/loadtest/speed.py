"""The machine's speed during each run, sampled by a small process of the bench's own.

A shared host may change a vCPU's speed within seconds: on the development machine a
fixed loop took 21 ms one moment and 41 ms five seconds later, on an idle machine
(docs/BENCHMARKS.md, eighteenth round). A timing before and after a run
(``machine.reference_loop_ms``) is then one sample of a speed that changed during it,
and two services run one after the other may have run at different speeds. So while the
bench runs, a child process times a fixed loop of additions every ``SAMPLE_SECONDS``
and each run's report gives the readings that fell inside it.

The loop is timed by the child's own CPU time, not the wall clock: under load the child
waits for a core, and that wait says how busy the machine is, not how fast it computes.
A reading is in milliseconds per million additions, the unit of the reference loop. The
child costs about 1-2 ms of CPU per reading here: a few tenths of a per cent of a core.
It times the machine the bench runs on, which for a ``--target`` elsewhere is not the
bank's.

``python -m clients.loadtest.speed`` is the child: it prints one line per reading, its
``time.monotonic()`` (one clock for every process of the machine) and the reading.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

from clients.loadtest.machine import additions_ms

SAMPLE_SECONDS = 0.5
SAMPLE_ITERATIONS = 50_000
# How long closing waits for the child to go before it is killed.
STOP_SECONDS = 5.0


@dataclass(frozen=True)
class Speed:
    """The readings that fell inside one run, in ms per million additions."""

    readings: tuple[float, ...]

    @property
    def median(self) -> float:
        """The run's typical reading."""
        return statistics.median(self.readings)

    @property
    def slowest(self) -> float:
        """The largest reading: the machine at its slowest during the run."""
        return max(self.readings)

    @property
    def fastest(self) -> float:
        """The smallest reading."""
        return min(self.readings)

    def as_dict(self) -> dict[str, float | int]:
        """The JSON form: median, fastest and slowest reading, and how many there were."""
        return {
            "reference_loop_ms_median": self.median,
            "reference_loop_ms_fastest": self.fastest,
            "reference_loop_ms_slowest": self.slowest,
            "readings": len(self.readings),
        }


class Readings:
    """Timestamped readings, kept in arrival order; safe to add from one thread while
    another reads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[tuple[float, float]] = []

    def add(self, at: float, ms: float) -> None:
        """One reading taken at monotonic time ``at``."""
        with self._lock:
            self._items.append((at, ms))

    def between(self, start: float, end: float) -> Speed | None:
        """The readings taken from ``start`` to ``end`` (None if there were none)."""
        with self._lock:
            inside = tuple(ms for at, ms in self._items if start <= at <= end)
        return Speed(inside) if inside else None


def loop_ms(iterations: int = SAMPLE_ITERATIONS) -> float:
    """The CPU time of ``iterations`` additions in a Python loop, in ms per million."""
    return additions_ms(iterations, time.process_time)


class SpeedSampler:
    """The child process and the thread that collects its readings."""

    def __init__(self) -> None:
        """Start the child; its first reading comes at once."""
        self.readings = Readings()
        self._child = subprocess.Popen(
            [sys.executable, "-m", "clients.loadtest.speed"],
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        self._reader = threading.Thread(target=self._collect, name="speed-readings", daemon=True)
        self._reader.start()

    def _collect(self) -> None:
        # stdout=PIPE gives a pipe; no pipe (never), no readings.
        for line in self._child.stdout or ():
            at, _, ms = line.partition(" ")
            try:
                self.readings.add(float(at), float(ms))
            except ValueError:
                continue  # not a reading; the child prints nothing else

    def between(self, start: float, end: float) -> Speed | None:
        """The readings taken from ``start`` to ``end`` (monotonic times)."""
        return self.readings.between(start, end)

    def close(self) -> None:
        """Stop the child and the collecting thread."""
        self._child.terminate()
        try:
            self._child.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            self._child.kill()
            self._child.wait()
        self._reader.join(STOP_SECONDS)
        if self._child.stdout is not None:
            self._child.stdout.close()

    def __enter__(self) -> SpeedSampler:
        """Use the sampler as a context manager that stops it."""
        return self

    def __exit__(self, *_: object) -> None:
        """Stop the child."""
        self.close()


def main() -> None:
    """The child: a reading every ``SAMPLE_SECONDS`` until terminated."""
    try:
        while True:
            ms = loop_ms()
            print(f"{time.monotonic():.6f} {ms:.3f}", flush=True)
            time.sleep(SAMPLE_SECONDS)
    except (BrokenPipeError, KeyboardInterrupt):
        pass


if __name__ == "__main__":
    main()
