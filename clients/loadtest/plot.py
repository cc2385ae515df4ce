"""A plot of latency percentiles against offered rate (``--plot FILE.png``).

matplotlib is an optional extra (``pip install 'setpay[plot]'``), imported only here and
only when a plot is asked for; without it the bench says how to get it before it runs
(``require``), not after.

Two kinds of point are drawn hollow, and the legend says which: a p99.9 over fewer than
``tally.P999_SAMPLES`` requests (it is their maximum, not a percentile), and every point
of a rate the service shed (errors or timeouts: its latencies are over calls that were
refused or given up on, beside the answered ones, and do not read like the others').
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from clients.loadtest.bench import BenchResult
from clients.loadtest.errors import PlotError
from clients.loadtest.load import OpenLoop
from clients.loadtest.plan import Service
from clients.loadtest.tally import P999_SAMPLES, Latency, Tally

_STYLES = {Service.GATEWAY: "-", Service.CEILING: "--", Service.ECHO: ":"}
# One colour per percentile, one line style per service: a percentile reads across services.
_PERCENTILES = (("p50", "p50", "C0"), ("p90", "p90", "C1"), ("p99", "p99", "C2"),
                ("p999", "p99.9", "C3"))  # fmt: skip
# Figure size in inches and resolution: readable in a README at 100 % zoom.
FIGURE_INCHES = (8.0, 5.0)
DPI = 110


def _pyplot() -> Any:
    try:
        matplotlib = importlib.import_module("matplotlib")
    except ImportError:
        raise PlotError(
            "--plot needs matplotlib: pip install 'setpay[plot]' (or pip install matplotlib)"
        ) from None
    matplotlib.use("Agg")  # files only, no display
    return importlib.import_module("matplotlib.pyplot")


def require() -> None:
    """Refuse a plot that could not be drawn (matplotlib missing), before a run is spent."""
    _pyplot()


def _hollow(counted: Tally, attribute: str) -> bool:
    """Whether a point stands for less than its name says (module docstring)."""
    shed = counted.errors + counted.timeouts > 0
    latency = counted.latency
    return shed or (attribute == "p999" and latency is not None and latency.p999_is_max)


def _draw(
    axes: Any, style: str, colour: str, label: str, points: list[tuple[float, float, bool]]
) -> None:
    """One line through ``points`` (rate, value, hollow), filled or hollow markers."""
    axes.plot([p[0] for p in points], [p[1] for p in points], style, color=colour, label=label)
    for hollow in (False, True):
        chosen = [p for p in points if p[2] == hollow]
        if chosen:
            axes.plot([p[0] for p in chosen], [p[1] for p in chosen], "o", color=colour,
                      markerfacecolor="none" if hollow else colour)  # fmt: skip


def _explain_hollow(axes: Any, drawn: bool) -> None:
    if drawn:
        axes.plot([], [], "o", color="grey", markerfacecolor="none",
                  label=f"hollow: shed calls (errors or timeouts), or p99.9 of fewer than "
                  f"{P999_SAMPLES:,} requests (their max)")  # fmt: skip


def plot(result: BenchResult, path: Path) -> None:
    """Latency percentiles (log scale) against offered rate, one line style per service."""
    steps = [s for s in result.steps if isinstance(s.shape, OpenLoop)]
    if not steps:
        raise PlotError("--plot needs open-loop steps (--rate, --rates or --load-fraction)")
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=FIGURE_INCHES)
    hollow_drawn = False
    try:
        for service, style in _STYLES.items():
            points = sorted(
                (
                    (s.shape.rate, s.tallies[service])
                    for s in steps
                    if isinstance(s.shape, OpenLoop)
                    and service in s.tallies
                    and s.tallies[service].latency is not None
                ),
                key=lambda point: point[0],  # by rate only: a sweep may repeat one
            )
            if not points:
                continue
            for attribute, name, colour in _PERCENTILES:
                drawn = [(rate, _value(t.latency, attribute), _hollow(t, attribute))
                         for rate, t in points]  # fmt: skip
                hollow_drawn = hollow_drawn or any(hollow for _, _, hollow in drawn)
                _draw(axes, style, colour, f"{service} {name}", drawn)
        axes.axhline(
            result.plan.p99_max_ms, color="grey", linewidth=0.8,
            label=f"p99 bound {result.plan.p99_max_ms:g} ms",
        )  # fmt: skip
        _explain_hollow(axes, hollow_drawn)
        axes.set_yscale("log")
        axes.set_xlabel("offered rate (AuthReq/s)")
        axes.set_ylabel("latency from scheduled send (ms)")
        axes.set_title("setpay authorization latency")
        axes.legend(fontsize="small", ncol=2)
        axes.grid(True, which="both", alpha=0.3)
        figure.tight_layout()
        figure.savefig(path, dpi=DPI)
    finally:
        plt.close(figure)


def _value(latency: Latency | None, attribute: str) -> float:
    return float(getattr(latency, attribute))
