"""What the bench's tests share: running ``setpay bench`` in this process, and the real
echo service with a request it answers without opening."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

from cli import bench
from clients.loadtest import spawn
from gateway.provisioning import init_bank
from setpay.v1 import authorization_pb2, common_pb2


def run_bench(argv: list[str]) -> int:
    """``setpay bench ARGV...`` through the real argument parser; its exit status."""
    parser = argparse.ArgumentParser(prog="setpay")
    bench.add_parser(parser.add_subparsers(dest="command", required=True))
    return bench.run(parser.parse_args(["bench", *argv]))


def png_size(data: bytes) -> tuple[int, int]:
    """A PNG image's width and height (its signature and IHDR checked)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert data[12:16] == b"IHDR"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def serve_echo(
    work: Path, workers: int, *, delay_ms: float = 0.0, threads: int | None = None
) -> Iterator[spawn.Server]:
    """A fixture body: a bank's files under ``work`` and its echo service with ``workers``
    workers, each call held ``delay_ms`` on ``threads`` threads; stopped afterwards."""
    init_bank(work / "bank", profile="ec", env={})
    server = spawn.serve_reference(
        "echo", work / "bank" / "setpay.toml", work, workers, delay_ms=delay_ms, threads=threads
    )
    try:
        yield server
    finally:
        server.stop()


def echo_request() -> bytes:
    """An AuthorizeRequest the echo answers without opening it."""
    return authorization_pb2.AuthorizeRequest(
        header=common_pb2.Header(version=1), auth_req=b"not opened by the echo"
    ).SerializeToString()
