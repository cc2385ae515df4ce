"""The Merchant service's limits follow its threads: merchant.toml raising ``threads`` but
leaving ``max_concurrent_rpcs`` out admits the threads and the backlog, not the default
threads' 16 (an upgrade from when the default was 64 would otherwise shed a busy shop);
and the Purchases waiting on the gateway never hold every thread."""

from __future__ import annotations

from pathlib import Path

import pytest

from clients.merchant.checkout import gateway_waits
from clients.merchant.config import (
    DEFAULT_MAX_CONCURRENT_RPCS,
    DEFAULT_THREADS,
    MAX_THREADS,
    load,
)

# The calls admitted beyond the threads, as at the default threads.
BACKLOG = DEFAULT_MAX_CONCURRENT_RPCS - DEFAULT_THREADS


def _toml(directory: Path, server: str) -> None:
    (directory / "merchant.toml").write_text(
        '[merchant]\nid = "m-1"\nbrand = "setpay"\nkeys = "soft:keys"\n'
        f'[server]\nlisten = "127.0.0.1:1"\ninsecure = true\n{server}'
        '[gateway]\ntarget = "gw:1"\ninsecure = true\n[ca]\ntarget = "ca:2"\ninsecure = true\n'
    )


@pytest.mark.parametrize("threads", [1, 8, 32, MAX_THREADS])
def test_the_default_limit_is_the_configured_threads_and_the_backlog(
    tmp_path: Path, threads: int
) -> None:
    _toml(tmp_path, f"threads = {threads}\n")
    server = load(tmp_path, env={}).server
    assert server.threads == threads
    assert server.max_concurrent_rpcs == threads + BACKLOG


def test_a_limit_given_is_kept(tmp_path: Path) -> None:
    _toml(tmp_path, "threads = 32\nmax_concurrent_rpcs = 20\n")
    assert load(tmp_path, env={}).server.max_concurrent_rpcs == 20


@pytest.mark.parametrize(("threads", "waits"), [(1, 1), (2, 1), (3, 1), (8, 6), (32, 30)])
def test_purchases_waiting_on_the_gateway_leave_threads_free(threads: int, waits: int) -> None:
    assert gateway_waits(threads) == waits
