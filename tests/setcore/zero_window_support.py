"""A raw HTTP/2 client that opens grpc.health.v1 Watch streams with a flow-control window
of 0 (SETTINGS_INITIAL_WINDOW_SIZE = 0), as a peer that takes nothing would: the server
may send headers but no DATA, so a send of a status never completes. It acknowledges the
server's SETTINGS and answers its PINGs on a thread of its own, so the connection stays
up; and counts the streams the server resets (RST_STREAM: a call cancelled). Given a
``window`` of 7 it is a peer that takes a stream's first status (a 5-byte prefix and 2
bytes) and nothing after."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures

import grpc
from grpc_health.v1 import health_pb2_grpc

from setcore.served_health import ServedHealth

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))[1:]
        + bytes([kind, flags])
        + struct.pack(">I", stream)
        + payload
    )


def literal(name: str, value: str) -> bytes:
    n, v = name.encode(), value.encode()
    assert len(n) < 127 and len(v) < 127
    return b"\x00" + bytes([len(n)]) + n + bytes([len(v)]) + v


def frames_read(sock: socket.socket) -> Iterator[tuple[int, int, int, bytes]]:
    """Each frame the server sends on ``sock``, as it comes (its type, flags, stream and
    payload), until the server closes the connection."""
    buf = b""
    while True:
        data = sock.recv(65536)
        if not data:
            return
        buf += data
        while len(buf) >= 9:
            length = int.from_bytes(buf[:3], "big")
            if len(buf) < 9 + length:
                break
            kind, flags = buf[3], buf[4]
            stream = int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF
            payload = buf[9 : 9 + length]
            buf = buf[9 + length :]
            yield kind, flags, stream, payload


def watch_headers(port: int) -> bytes:
    """The header block of a Watch call to the server on ``port``, every field literal."""
    return b"".join(
        [
            literal(":method", "POST"),
            literal(":scheme", "http"),
            literal(":path", "/grpc.health.v1.Health/Watch"),
            literal(":authority", f"127.0.0.1:{port}"),
            literal("content-type", "application/grpc"),
            literal("te", "trailers"),
        ]
    )


def service_request(service: str) -> bytes:
    b = service.encode()
    msg = (b"\x0a" + bytes([len(b)]) + b) if b else b""
    return b"\x00" + struct.pack(">I", len(msg)) + msg


class ZeroWindowClient:
    def __init__(self, port: int, window: int = 0) -> None:
        self.port = port
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.sendall(PREFACE + frame(4, 0, 0, struct.pack(">HI", 4, window)))
        self.next_stream = 1
        self.headers_seen = 0
        self.data_seen = 0
        self.resets = 0
        self.lock = threading.Lock()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def watch(self, service: str = "") -> int:
        with self.lock:
            sid = self.next_stream
            self.next_stream += 2
            self.sock.sendall(
                frame(1, 4, sid, watch_headers(self.port))
                + frame(0, 1, sid, service_request(service))
            )
        return sid

    def _read(self) -> None:
        try:
            for kind, flags, _, payload in frames_read(self.sock):
                with self.lock:
                    if kind == 4 and not flags & 1:
                        self.sock.sendall(frame(4, 1, 0, b""))
                    elif kind == 6 and not flags & 1:
                        self.sock.sendall(frame(6, 1, 0, payload))
                    elif kind == 1:
                        self.headers_seen += 1
                    elif kind == 0 and payload:
                        self.data_seen += 1
                    elif kind == 3:
                        self.resets += 1
        except OSError:
            return

    def close(self) -> None:
        self.sock.close()


# Every wait is bounded; a prompt answer takes milliseconds, a loaded CI machine far more.
WAIT_SECONDS = 10.0


@contextlib.contextmanager
def health_server(threads: int) -> Iterator[tuple[ServedHealth, int]]:
    """A real gRPC server on port 0 serving a ``ServedHealth`` with ``threads`` threads:
    the servicer and the port, stopped at the end."""
    with health_grpc_server(threads=threads) as (servicer, _, port):
        yield servicer, port


@contextlib.contextmanager
def health_grpc_server(
    services: tuple[str, ...] = (), threads: int = 4
) -> Iterator[tuple[ServedHealth, grpc.Server, int]]:
    """As ``health_server``, serving ``services`` besides the overall health, and the
    server too, for a test that stops it as the bank does; stopped at the end again."""
    servicer = ServedHealth(services)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=threads))
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield servicer, server, port
    finally:
        server.stop(None).wait()


def until(condition: Callable[[], bool], what: str) -> None:
    """Wait for ``condition``, at most ``WAIT_SECONDS``; ``what`` it is, if it never comes."""
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)
