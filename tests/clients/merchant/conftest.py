"""Fixtures for the merchant's tests: its store on a file of the test's own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from clients.merchant.store import MerchantStore


@pytest.fixture
def store(tmp_path: Path) -> Iterator[MerchantStore]:
    """A merchant store on ``merchant.db`` in the test's directory."""
    made = MerchantStore(tmp_path / "merchant.db")
    yield made
    made.close()
