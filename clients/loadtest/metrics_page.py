"""A Prometheus text page, fetched and summed: how the bench reads a bank it did not start.

The bank's own metrics are the honest source for what happens inside it (its CPU, its
ledger's commits). A page is read whole and summed per metric name over every label set
and every worker (the bank's supervisor already merges its workers' samples).
"""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator

# A metrics page is small; a scrape that takes longer than this is not worth waiting for.
SCRAPE_SECONDS = 5.0
# Largest metrics page read (bytes): a multi-worker page is a few hundred kilobytes.
MAX_SCRAPE_BYTES = 8 << 20


def check_url(url: str) -> None:
    """Refuse a URL that is not http(s), before any run starts."""
    if not url.startswith(("http://", "https://")):
        raise ValueError("a metrics URL must be http:// or https://")


def fetch(url: str) -> str | None:
    """The page's text, or None when it cannot be read."""
    try:
        with urllib.request.urlopen(url, timeout=SCRAPE_SECONDS) as page:  # noqa: S310
            return str(page.read(MAX_SCRAPE_BYTES).decode("utf-8", "replace"))
    except OSError:
        return None


def sums(text: str, names: frozenset[str]) -> dict[str, float]:
    """Each of ``names`` found on the page, summed over its samples (absent names left out)."""
    found: dict[str, float] = {}
    for name, _, value in _samples(text):
        if name in names:
            found[name] = found.get(name, 0.0) + float(value)
    return found


def sums_by_label(text: str, name: str, label: str) -> dict[str, float]:
    """``name``'s samples summed per value of ``label`` (samples without it left out)."""
    marker = f'{label}="'
    found: dict[str, float] = {}
    for sample, labels, value in _samples(text):
        start = labels.find(marker)
        if sample != name or start < 0:
            continue
        start += len(marker)
        key = labels[start : labels.index('"', start)]
        found[key] = found.get(key, 0.0) + float(value)
    return found


def _samples(text: str) -> Iterator[tuple[str, str, str]]:
    """Each sample line's name, label text (``{...}`` or empty) and value text, read as a
    number only by the caller that wants it."""
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        series, _, value = line.rpartition(" ")
        name, _, labels = series.partition("{")
        yield name.strip(), labels, value
