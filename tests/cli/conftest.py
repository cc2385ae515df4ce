"""Fixtures the ``setpay bank`` command tests share."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gateway.config import load
from gateway.issuer import open_ledger
from gateway.ledger import Ledger
from gateway.provisioning import InitResult


@pytest.fixture
def ledger(made: InitResult) -> Iterator[Ledger]:
    """The ledger of the bank a test module made (its own ``made`` fixture), opened as a
    bank command opens it, and closed after the test."""
    opened = open_ledger(load(made.directory / "setpay.toml"))
    yield opened
    opened.close()
