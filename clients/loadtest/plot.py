"""A plot of latency percentiles against offered rate (``--plot FILE.png``).

matplotlib is an optional extra (``pip install 'setpay[plot]'``), imported only here and
only when a plot is asked for; without it the bench says how to get it before it runs
(``require``), not after.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from clients.loadtest.bench import BenchResult
from clients.loadtest.errors import PlotError
from clients.loadtest.load import OpenLoop
from clients.loadtest.plan import Service

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


def plot(result: BenchResult, path: Path) -> None:
    """Latency percentiles (log scale) against offered rate, one line style per service."""
    steps = [s for s in result.steps if isinstance(s.shape, OpenLoop)]
    if not steps:
        raise PlotError("--plot needs open-loop steps (--rate, --rates or --load-fraction)")
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=FIGURE_INCHES)
    try:
        for service, style in _STYLES.items():
            points = sorted(
                (
                    (s.shape.rate, s.tallies[service].latency)
                    for s in steps
                    if isinstance(s.shape, OpenLoop)
                    and service in s.tallies
                    and s.tallies[service].latency is not None
                ),
                key=lambda point: point[0],  # by rate only: a sweep may repeat one
            )
            if not points:
                continue
            rates = [rate for rate, _ in points]
            for attribute, name, colour in _PERCENTILES:
                values = [getattr(latency, attribute) for _, latency in points]
                axes.plot(rates, values, style, color=colour, marker="o", label=f"{service} {name}")
        axes.axhline(
            result.plan.p99_max_ms, color="grey", linewidth=0.8,
            label=f"p99 bound {result.plan.p99_max_ms:g} ms",
        )  # fmt: skip
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
