"""The bench's reference services (``gateway.ceiling``): the ceiling does the
authorization's key work and nothing else, refuses what it cannot open, and shares a
port with nobody but its own workers."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import grpc
import pytest

from gateway import authorize as gateway_authorize
from gateway import ceiling
from gateway.bank_pki import BankPki, load_bank_pki
from gateway.ceiling import ReferenceOptions
from gateway.provisioning import init_bank
from setcore.authorization import open_auth_response
from setpay.v1 import authorization_pb2 as a
from setpay.v1 import services_pb2_grpc

from .actors import Merchant, World, auth_request, channels_for, purchase, register_cardholder

KeyOp = tuple[str, str]


class _KeyOps:
    """A key-backend observer that keeps the operations it sees."""

    def __init__(self) -> None:
        self.seen: list[KeyOp] = []

    def __call__(self, op: str, algorithm: str, seconds: float, error: str | None) -> None:
        self.seen.append((op, algorithm))


@pytest.fixture
def ceiling_served(
    ec_world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[services_pb2_grpc.PaymentGatewayServiceStub, _KeyOps]]:
    """The ceiling, one worker in this process, on the bank's keys watched by an observer."""
    ops = _KeyOps()
    monkeypatch.setattr(ceiling, "load_bank_pki", lambda config: load_bank_pki(config, ops))
    ports = tmp_path / "ports"
    options = ReferenceOptions(mode="ceiling", listen="127.0.0.1:0", port_file=ports)
    stop = threading.Event()
    server = threading.Thread(target=ceiling.serve, args=(ec_world.config, options, stop))
    server.start()
    try:
        give_up = time.monotonic() + 30
        while not ports.exists() and server.is_alive() and time.monotonic() < give_up:
            time.sleep(0.02)
        (port,) = (int(p) for p in ports.read_text().split())
        channel, ca = channels_for(ec_world.directory, port, ec_world.running.ca_port)
        ca.close()
        with channel:
            yield services_pb2_grpc.PaymentGatewayServiceStub(channel), ops  # type: ignore[no-untyped-call]
    finally:
        stop.set()
        server.join(30)


def _observed_bank_ops(world: World, merchant: Merchant, amount: int) -> list[KeyOp]:
    """The key operations of the bank's own Authorize for one approved purchase."""
    ops = _KeyOps()
    pki: BankPki = load_bank_pki(world.config, ops)
    try:
        bank = replace(
            world.running.bank, credentials=pki.gateway, trust=pki.trust,
            token_key=pki.token_sealer(),
        )  # fmt: skip
        ops.seen.clear()  # opening the keys is not the authorization's work
        cardholder = register_cardholder(world)
        request, state = auth_request(merchant, purchase(merchant, cardholder, amount))
        answer = gateway_authorize.authorize(bank, request)
        response = a.AuthorizeResponse(header=request.header, auth_res=answer)
        result = open_auth_response(
            response, merchant.credentials, state, merchant.trust,
            gateway_identity=merchant.gateway_identity,
        )  # fmt: skip
        assert result.data.auth_res_payload.auth_header.auth_code == a.AUTH_CODE_APPROVED
        return ops.seen
    finally:
        pki.close()


def test_the_ceiling_does_the_authorizations_key_operations_and_no_others(
    ec_world: World,
    ec_merchant: Merchant,
    ceiling_served: tuple[services_pb2_grpc.PaymentGatewayServiceStub, _KeyOps],
) -> None:
    stub, ceiling_ops = ceiling_served
    bank_ops = _observed_bank_ops(ec_world, ec_merchant, 300)
    ceiling_ops.seen.clear()
    cardholder = register_cardholder(ec_world)
    request, state = auth_request(ec_merchant, purchase(ec_merchant, cardholder, 300))
    result = open_auth_response(
        stub.Authorize(request, timeout=30), ec_merchant.credentials, state, ec_merchant.trust,
        gateway_identity=ec_merchant.gateway_identity,
    )  # fmt: skip
    assert result.data.auth_res_payload.auth_header.auth_code == a.AUTH_CODE_APPROVED
    # Open the AuthReq, open the PI (key exchange each), sign the AuthRes: as the bank does.
    assert sorted(ceiling_ops.seen) == sorted(bank_ops)
    assert sorted(op for op, _ in bank_ops) == ["decapsulate", "decapsulate", "sign"]


def test_the_ceiling_refuses_a_request_it_cannot_open_naming_only_the_code(
    ec_world: World,
    ec_merchant: Merchant,
    ceiling_served: tuple[services_pb2_grpc.PaymentGatewayServiceStub, _KeyOps],
) -> None:
    stub, _ = ceiling_served
    cardholder = register_cardholder(ec_world)
    request, _ = auth_request(ec_merchant, purchase(ec_merchant, cardholder, 300))
    tampered = bytearray(request.auth_req)
    tampered[len(tampered) // 2] ^= 0x01
    request.auth_req = bytes(tampered)
    with pytest.raises(grpc.RpcError) as refused:
        stub.Authorize(request, timeout=30)
    assert refused.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    details = str(refused.value.details())
    assert details.startswith("ceiling: ERROR_CODE_"), details
    assert cardholder.card.pan.reveal() not in details


@pytest.mark.parametrize(
    ("settings", "why"),
    [
        ({"mode": "ledger"}, "mode must be one of ceiling, echo"),
        ({"workers": 0}, "workers must be between 1 and 64"),
        ({"workers": 65}, "workers must be between 1 and 64"),
        ({"mode": "echo", "delay_ms": -1.0}, "delay must be between 0 and 60000 ms"),
        ({"mode": "echo", "delay_ms": 60_001.0}, "delay must be between 0 and 60000 ms"),
        ({"delay_ms": 5.0}, "only the echo service takes a delay"),
    ],
)
def test_reference_options_out_of_bounds_are_refused(settings: dict[str, object], why: str) -> None:
    with pytest.raises(ValueError, match=why):
        ReferenceOptions(**{"mode": "ceiling", "listen": "127.0.0.1:0", **settings})  # type: ignore[arg-type]


def test_several_workers_never_join_a_port_another_server_shares(tmp_path: Path) -> None:
    # A bank's workers listen with SO_REUSEPORT. Workers of a ceiling started on the same
    # port would quietly join them, and the kernel would hand the bench's connections to
    # both: the ceiling's figures would be part bank. It must refuse the port instead.
    init_bank(tmp_path / "bank", profile="ec", env={})
    ports = tmp_path / "ports"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SETPAY_")}
    with socket.socket() as bank_worker:
        bank_worker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        bank_worker.bind(("127.0.0.1", 0))
        bank_worker.listen()
        port = bank_worker.getsockname()[1]
        process = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "bench", "serve", "--mode", "echo",
             "--config", str(tmp_path / "bank" / "setpay.toml"),
             "--listen", f"127.0.0.1:{port}", "--workers", "2", "--port-file", str(ports)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            give_up = time.monotonic() + 60
            while not ports.exists() and process.poll() is None and time.monotonic() < give_up:
                time.sleep(0.05)
            served = ports.exists()
        finally:
            if process.poll() is None:
                process.terminate()
            _, err = process.communicate(timeout=60)
    assert not served, "the echo service shared a port a server was listening on"
    assert process.returncode == 1
    assert f"cannot reserve 127.0.0.1:{port}" in err
    assert "Traceback" not in err


def test_a_worker_that_cannot_open_the_keys_fails_the_service_in_one_line(tmp_path: Path) -> None:
    # Several workers open the bank's keys after the fork, the parent does not: a worker
    # that cannot is a failed start the command reports (exit 1), not a traceback.
    init_bank(tmp_path / "bank", profile="ec", env={})
    (tmp_path / "bank" / "keys.pass").write_text("not the passphrase\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SETPAY_")}
    finished = subprocess.run(
        [sys.executable, "-m", "cli.main", "bench", "serve", "--mode", "ceiling",
         "--config", str(tmp_path / "bank" / "setpay.toml"), "--workers", "2"],
        check=False, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert finished.returncode == 1, finished.stderr
    assert "setpay bench: a ceiling worker did not start (exit 1)" in finished.stderr
    assert "not the passphrase" not in finished.stderr
    last = finished.stderr.strip().splitlines()[-1]
    assert last.startswith("setpay bench: "), finished.stderr
