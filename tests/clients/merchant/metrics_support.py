"""Reading a merchant's metrics page over HTTP, as Prometheus does."""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from clients.merchant.metrics_labels import LABEL_VALUES
from tests.metrics_page import assert_labels_from, check_with_promtool

# A scrape of a page of a few hundred lines answers in milliseconds; this bounds a hang.
SCRAPE_SECONDS = 10

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape_text(port: int) -> str:
    """The page the merchant serves on loopback ``port``."""
    url = f"http://127.0.0.1:{port}/metrics"
    with urllib.request.urlopen(url, timeout=SCRAPE_SECONDS) as answer:
        text: str = answer.read().decode()
    return text


def samples_of(text: str) -> Samples:
    """Every sample of a page, by name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value; 0 for a series not (yet) on the page."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def check_page(text: str) -> None:
    """promtool passes the page; its labels come from the merchant's fixed sets; nothing
    of a PAN's shape anywhere but in sample values."""
    check_with_promtool(text)
    assert_labels_from(text, LABEL_VALUES, "setpay_merchant_")
