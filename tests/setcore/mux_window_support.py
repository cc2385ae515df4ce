"""A raw HTTP/2 client that multiplexes grpc.health.v1 Watch streams on one connection, as
a load balancer or a proxy would, each stream with a flow-control window of its own: the
connection's initial stream window is 0 (SETTINGS_INITIAL_WINDOW_SIZE), a stream that
reads is given 1 MiB at its open (and the connection a large window), so its statuses
flow, and one that reads nothing is given none, so the server's send of its first status
never completes. It keeps each stream's statuses, its reset (RST_STREAM: the call
cancelled) and whether it ended with trailers (END_STREAM on HEADERS: the call over, its
status sent); acknowledges SETTINGS and PINGs on a thread of its own, and gives the
connection back every byte of DATA it reads."""

from __future__ import annotations

import socket
import struct
import threading

from tests.setcore.zero_window_support import (
    PREFACE,
    frame,
    frames_read,
    service_request,
    watch_headers,
)

# HTTP/2 frame types and flags used here.
_DATA, _HEADERS, _RST_STREAM, _SETTINGS, _PING, _WINDOW_UPDATE = 0, 1, 3, 4, 6, 8
_ACK = _END_STREAM = 1
_INITIAL_WINDOW_SIZE = 4
_READER_WINDOW = 1 << 20
_CONNECTION_WINDOW = 1 << 30


class MuxClient:
    """One HTTP/2 connection to ``port``, Watch streams opened on it by ``watch``."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.sendall(
            PREFACE
            + frame(_SETTINGS, 0, 0, struct.pack(">HI", _INITIAL_WINDOW_SIZE, 0))
            + frame(_WINDOW_UPDATE, 0, 0, struct.pack(">I", _CONNECTION_WINDOW))
        )
        self.next_stream = 1
        self.lock = threading.Lock()
        self.statuses: dict[int, list[int]] = {}  # by stream, as told
        self.reset: dict[int, int] = {}  # by stream, the RST_STREAM error code
        self.ended: set[int] = set()  # streams ended with trailers
        threading.Thread(target=self._read, daemon=True).start()

    def watch(self, service: str = "", reader: bool = True) -> int:
        """Open a Watch for ``service``: one that reads (a window of 1 MiB) or one that
        reads nothing (a window of 0); its stream id."""
        with self.lock:
            sid = self.next_stream
            self.next_stream += 2
            self.statuses[sid] = []
            out = frame(_HEADERS, 4, sid, watch_headers(self.port)) + frame(
                _DATA, _END_STREAM, sid, service_request(service)
            )
            if reader:
                out += frame(_WINDOW_UPDATE, 0, sid, struct.pack(">I", _READER_WINDOW))
            self.sock.sendall(out)
        return sid

    def told(self, sid: int) -> list[int]:
        """The statuses stream ``sid`` has been told so far (a copy)."""
        with self.lock:
            return list(self.statuses[sid])

    def _read(self) -> None:
        try:
            for kind, flags, sid, payload in frames_read(self.sock):
                with self.lock:
                    self._frame(kind, flags, sid, payload)
        except OSError:
            return

    def _frame(self, kind: int, flags: int, sid: int, payload: bytes) -> None:
        # Under the lock: one frame from the server.
        if kind == _SETTINGS and not flags & _ACK:
            self.sock.sendall(frame(_SETTINGS, _ACK, 0, b""))
        elif kind == _PING and not flags & _ACK:
            self.sock.sendall(frame(_PING, _ACK, 0, payload))
        elif kind == _DATA and payload:
            # gRPC messages: a 5-byte prefix, then field 1 (08 <status>), or nothing (0).
            rest = payload
            while len(rest) >= 5:
                size = int.from_bytes(rest[1:5], "big")
                message, rest = rest[5 : 5 + size], rest[5 + size :]
                self.statuses[sid].append(message[1] if len(message) >= 2 else 0)
            self.sock.sendall(frame(_WINDOW_UPDATE, 0, 0, struct.pack(">I", len(payload))))
        elif kind == _HEADERS and flags & _END_STREAM:
            self.ended.add(sid)
        elif kind == _RST_STREAM:
            self.reset[sid] = int.from_bytes(payload, "big")

    def close(self) -> None:
        self.sock.close()
