"""The health servicer reaches into nothing of grpc_health's: a worker's server and the
merchant's start, answer Check and Watch, and end their Watch streams at the stop, on a
grpc_health whose servicer keeps its state under other private names.

Before, ``ServedHealth`` subclassed grpc_health's ``HealthServicer`` and used its lock,
status dict and watchers by their private names. grpc's own master has since renamed the
lock (``_state_lock``), and the project allows any later grpcio-health-checking: on such a
release every worker failed to start (AttributeError as its health monitor named the
services served). The stand-in here is grpc_health's servicer with its lock so renamed, in
a process of its own, as the module must be patched before the server's are imported."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[2]
# A child that starts two servers and stops them takes a second or two; a loaded CI
# machine far more.
CHILD_SECONDS = 120

_CHILD = """
import json
import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc


class Renamed(health.HealthServicer):
    # grpc_health's servicer as grpc's master has it: its lock is ``_state_lock``.
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._state_lock = self.__dict__.pop("_lock")


health.HealthServicer = Renamed

from clients.merchant.servicer import SERVICE_NAME, MerchantServicer, ServerSettings, start_server
from gateway.server import ServerLimits, ServiceBinding, create_server
from setpay.v1 import services_pb2_grpc

PG = "setpay.v1.PaymentGatewayService"
seen = {}
server, port, monitor = create_server(
    [ServiceBinding("PaymentGatewayService", services_pb2_grpc.PaymentGatewayServiceServicer())],
    "127.0.0.1:0",
    ServerLimits(max_message_bytes=1 << 20, max_concurrent_rpcs=8, threads=2),
)
with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
    stub = health_pb2_grpc.HealthStub(channel)
    seen["bank_check"] = stub.Check(health_pb2.HealthCheckRequest(service=PG), timeout=10).status
    watch = stub.Watch(health_pb2.HealthCheckRequest(service=PG), timeout=30)
    seen["bank_watch"] = [next(watch).status]
    monitor.stop()
    seen["bank_watch"] += [response.status for response in watch]
    seen["bank_watch_end"] = watch.code().name
server.stop(None).wait(10)

merchant, port = start_server(
    MerchantServicer(None, None),
    ServerSettings(listen="127.0.0.1:0", threads=2, max_concurrent_rpcs=8, tls=None),
)
with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
    stub = health_pb2_grpc.HealthStub(channel)
    request = health_pb2.HealthCheckRequest(service=SERVICE_NAME)
    seen["merchant_check"] = stub.Check(request, timeout=10).status
    watch = stub.Watch(request, timeout=30)
    seen["merchant_watch"] = next(watch).status
    watch.cancel()
merchant.stop(None).wait(10)
print(json.dumps(seen))
"""


def test_servers_start_and_serve_health_on_a_grpc_health_with_other_private_names() -> None:
    child = subprocess.run(
        [sys.executable, "-c", _CHILD], cwd=REPOSITORY, capture_output=True, text=True,
        timeout=CHILD_SECONDS, check=False,
    )  # fmt: skip
    assert child.returncode == 0, child.stderr[-3000:]
    seen = json.loads(child.stdout.splitlines()[-1])
    serving, not_serving = 1, 2  # grpc.health.v1's SERVING and NOT_SERVING
    # The monitor re-sends SERVING each probe (every second) until the stop.
    watched = seen.pop("bank_watch")
    assert watched[0] == serving and watched[-1] == not_serving, watched
    assert set(watched) == {serving, not_serving}, watched
    assert seen == {
        "bank_check": serving,
        "bank_watch_end": "OK",
        "merchant_check": serving,
        "merchant_watch": serving,
    }
