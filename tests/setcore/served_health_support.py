"""Health Watch streams for service names a server does not serve, each opened and
cancelled at once, as a peer that wanted the server to keep every name would send them;
and the memory this process holds, to see that the server kept none of them."""

from __future__ import annotations

import gc
import os
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

# Streams each test opens and cancels: enough that names kept one each (about a MiB each)
# stand far above anything else the process allocates meanwhile.
STREAMS = 100
# Streams opened first, unmeasured: the first calls of a process grow its allocator's
# arenas (a thread's each) by some MiB that later calls reuse; kept names grow it by each.
WARM_UP = 20
# A name's size: the server's message limit (1 MiB) less room for the rest of the request.
NAME_BYTES = (1 << 20) - 64
# Every wait is bounded; a prompt answer takes milliseconds, a loaded CI machine far more.
WAIT_SECONDS = 10.0
UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN


def rss_bytes() -> int:
    """This process's resident memory (Linux ``/proc``), after a collection."""
    gc.collect()
    with open(f"/proc/{os.getpid()}/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) * 1024


def long_name(index: int) -> str:
    """A distinct service name of ``NAME_BYTES``, served nowhere."""
    return f"not.served.{index:08d}".ljust(NAME_BYTES, "x")


def watch_and_cancel(channel: grpc.Channel, count: int = STREAMS, first: int = 0) -> list[int]:
    """Open ``count`` Watch streams for distinct long names (``long_name`` from ``first``),
    take each one's first answer and cancel it; the answers, once every cancelled call has
    ended at the server too."""
    watch = health_pb2_grpc.HealthStub(channel).Watch
    answers: list[int] = []
    for index in range(first, first + count):
        stream = watch(
            health_pb2.HealthCheckRequest(service=long_name(index)), timeout=WAIT_SECONDS
        )
        answers.append(next(stream).status)
        stream.cancel()
    # A cancelled call ends at the server when its poll thread sees the cancellation: a
    # Check on the same connection, answered after, comes after those (it waits for a
    # thread behind nothing), and a moment more lets the last close callbacks run.
    health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=WAIT_SECONDS)
    time.sleep(0.5)
    return answers


def grown_by_watches(channel: grpc.Channel) -> tuple[list[int], int]:
    """``STREAMS`` streams of ``watch_and_cancel`` after ``WARM_UP`` others: their first
    answers, and how much this process's memory grew for them (bytes)."""
    watch_and_cancel(channel, WARM_UP, first=STREAMS)
    before = rss_bytes()
    answers = watch_and_cancel(channel)
    return answers, rss_bytes() - before


def client_channel(port: int) -> grpc.Channel:
    """A plaintext channel that may send a request as large as the server takes."""
    return grpc.insecure_channel(
        f"127.0.0.1:{port}", options=[("grpc.max_send_message_length", -1)]
    )
