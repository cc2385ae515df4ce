"""What the bench's tests share: running ``setpay bench`` in this process, the real echo
service with a request it answers without opening, and a bank of the test's own answering
Authorize on a real gRPC server."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc

from cli import bench
from clients.loadtest import spawn
from clients.loadtest.channels import AUTHORIZE_METHOD
from gateway.provisioning import init_bank
from setpay.v1 import authorization_pb2, common_pb2

# Threads answering a test bank's calls: more than the calls its tests keep in flight at
# once (three, a closed loop's), so that a slowed call never keeps another one waiting.
BANK_THREADS = 4


def run_bench(argv: list[str]) -> int:
    """``setpay bench ARGV...`` through the real argument parser; its exit status."""
    parser = argparse.ArgumentParser(prog="setpay")
    bench.add_parser(parser.add_subparsers(dest="command", required=True))
    return bench.run(parser.parse_args(["bench", *argv]))


def serve_authorize(handle: Callable[[bytes, Any], bytes]) -> tuple[grpc.Server, int]:
    """A real gRPC server on 127.0.0.1 port 0 answering the bench's Authorize method with
    ``handle`` (the request's bytes and the call's context in, the answer's bytes out),
    started; with the port it listens on. The caller stops it."""
    service, method = AUTHORIZE_METHOD.lstrip("/").split("/")
    handler = grpc.method_handlers_generic_handler(
        service, {method: grpc.unary_unary_rpc_method_handler(handle)}
    )
    server = grpc.server(futures.ThreadPoolExecutor(BANK_THREADS), handlers=[handler])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port


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
    init_bank(work / "bank", profile="ec", merchant_tls=True, env={})
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
