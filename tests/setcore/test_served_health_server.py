"""``ServedHealth`` on a real gRPC server (port 0): Watch streams that end while statuses
are being sent on others leave the server answering.

grpcio runs a stream's close callback in its one poll thread, and a send waits for that
thread to complete its write. grpc_health's servicer (and ``ServedHealth`` on it) held one
lock both around its sends and in its close callback: a Watch that ended while a ``set``
was sending on another stream left the poll thread waiting for the lock and the send
waiting for the poll thread, and the server answered no call again. A bank worker sets
each name every second, and anyone may open and cancel Watch streams (no client
certificate on the CA's port)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent import futures

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from setcore.served_health import ServedHealth

SERVING = health_pb2.HealthCheckResponse.SERVING
# Streams kept open and read, each sent every status set; and streams opened and
# cancelled meanwhile. With one lock, the server stopped answering within the first few.
WATCHERS = 20
CHURNED = 300
# Between one set and the next: a setter that spun took the interpreter from the senders
# and the calls alike (a million sets that offered nothing new, 2,600 streams' sends, 6-15
# s); pausing this little, the streams are sent on as often as the senders can (7,400
# times) while the calls end, and the test takes about a second.
SET_PAUSE_SECONDS = 0.001
# Every call is bounded; a prompt answer takes milliseconds, a loaded CI machine far more.
WAIT_SECONDS = 10.0


def _read(stream: Iterator[object]) -> None:
    try:
        for _ in stream:
            pass
    except grpc.RpcError:
        pass  # cancelled at the test's end


def test_watches_ending_while_statuses_are_sent_leave_the_server_answering() -> None:
    servicer = ServedHealth()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=WATCHERS + 4))
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    stub = health_pb2_grpc.HealthStub(channel)
    overall = health_pb2.HealthCheckRequest(service="")
    setting = threading.Event()

    def set_again_and_again() -> None:
        while setting.is_set():
            servicer.set("", SERVING)
            time.sleep(SET_PAUSE_SECONDS)

    kept = [stub.Watch(overall, timeout=4 * WAIT_SECONDS) for _ in range(WATCHERS)]
    readers = [threading.Thread(target=_read, args=(s,), daemon=True) for s in kept]
    setter = threading.Thread(target=set_again_and_again, daemon=True)
    setting.set()
    for thread in (*readers, setter):
        thread.start()
    answered = 0
    try:
        for _ in range(CHURNED):
            stream = stub.Watch(overall, timeout=WAIT_SECONDS)
            assert next(stream).status == SERVING
            stream.cancel()
            assert stub.Check(overall, timeout=WAIT_SECONDS).status == SERVING
            answered += 1
    finally:
        setting.clear()
        for stream in kept:
            stream.cancel()
        setter.join(WAIT_SECONDS)
        channel.close()
        # Stopped on a thread of its own: a wedged server's stop never returns either.
        stopping = threading.Thread(target=lambda: server.stop(None).wait(), daemon=True)
        stopping.start()
        stopping.join(WAIT_SECONDS)
    assert answered == CHURNED
    assert not setter.is_alive(), "a set still waits for a send"
