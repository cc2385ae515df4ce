"""Fixtures for the merchant's tests: its store on a file of the test's own, its metrics page."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from clients.merchant import metrics, metrics_http
from clients.merchant.store import MerchantStore


@pytest.fixture
def store(tmp_path: Path) -> Iterator[MerchantStore]:
    """A merchant store on ``merchant.db`` in the test's directory."""
    made = MerchantStore(tmp_path / "merchant.db")
    yield made
    made.close()


# How often a test's page looks for a shutdown: closing it waited up to the module's
# half second, which each test using the page paid at its teardown.
PAGE_POLL_SECONDS = 0.02


@pytest.fixture
def page(store: MerchantStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """Metrics on for a merchant whose store is ``store``; the page's port."""
    monkeypatch.setattr(metrics_http, "_POLL_SECONDS", PAGE_POLL_SECONDS)
    endpoint = metrics.start(tmp_path / "merchant.db", "127.0.0.1", 0)
    try:
        yield endpoint.port
    finally:
        endpoint.close()
