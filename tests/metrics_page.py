"""Checks of a Prometheus page that the bank's and the merchant's metric tests share:
``promtool check metrics`` (Debian ``prometheus``; missing, the test fails, it is not
skipped), every label value from its fixed set, and nothing of a PAN's shape."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Mapping

import pytest
from prometheus_client.parser import text_string_to_metric_families

# A run of 13 to 19 digits: the shape of a PAN.
PAN_SHAPE = re.compile(r"(?<!\d)\d{13,19}(?!\d)")
# promtool reads a page of a few hundred lines in milliseconds; this only bounds a hang.
PROMTOOL_SECONDS = 60


def promtool() -> str:
    """Where promtool is; fails the test if it is not installed."""
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is not installed (Debian package prometheus)")
    return path


def check_with_promtool(text: str) -> None:
    """``promtool check metrics`` passes ``text`` (a scrape)."""
    checked = subprocess.run(
        [promtool(), "check", "metrics"], input=text, capture_output=True, text=True,
        timeout=PROMTOOL_SECONDS, check=False,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr


def assert_labels_from(text: str, label_values: Mapping[str, frozenset[str]], prefix: str) -> None:
    """Every family of ``text`` is named ``prefix``..., every label value comes from its set
    in ``label_values``, and nothing but sample values has a PAN's shape (a sample value
    may be a long float: those are not labels)."""
    for family in text_string_to_metric_families(text):
        assert family.name.startswith(prefix), family.name
        for sample in family.samples:
            for label, label_value in sample.labels.items():
                assert not PAN_SHAPE.search(label_value), (sample.name, label)
                if label == "le":
                    continue
                assert label_value in label_values[label], (sample.name, label, label_value)
    for line in text.splitlines():
        without_value = line if line.startswith("#") else line.rsplit(" ", 1)[0]
        assert not PAN_SHAPE.search(without_value), line
