"""Client calls over a real gRPC server on port 0: exact bytes, bounded retries, deadlines,
and TLS that holds to the pinned root, the server's name and the client certificate."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field

import grpc
import pytest

from clients.errors import ConfigError, TransportError
from clients.transport import Caller, ChannelConfig, RetryPolicy, open_channel
from hsm.base import KeyAlgorithm, KeyUsage
from hsm.software import SoftwareBackend
from setcore.pki.tls import (
    TlsCredentials,
    TransportCA,
    create_transport_ca,
    issue_tls_client,
    issue_tls_server,
)
from setpay.v1 import common_pb2
from tests.clients.transport_support import shed_status

METHOD = "/setpay.test.Flaky/Call"
# Tight backoff so the retry tests take milliseconds.
FAST = RetryPolicy(attempts=4, first_backoff=0.001, max_backoff=0.002)


@dataclass
class Flaky:
    """Fails the first ``failures`` calls with ``status`` (with a RetryInfo asking for
    ``retry_delay`` seconds, if set, as the bank's servers shed), then echoes a Header."""

    failures: int = 0
    status: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE
    retry_delay: float | None = None
    hang: threading.Event | None = None
    received: list[bytes] = field(default_factory=list)

    def __call__(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        self.received.append(request)
        if self.hang is not None:
            self.hang.wait(5)
        if len(self.received) <= self.failures:
            if self.retry_delay is not None:
                context.abort_with_status(shed_status(self.status, self.retry_delay))
            context.abort(self.status, "try later")
        return common_pb2.Header(sw_ident="ok", rrpid=request[:4]).SerializeToString()


@pytest.fixture
def flaky() -> Iterator[tuple[Flaky, grpc.Channel]]:
    behaviour = Flaky()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    handler = grpc.method_handlers_generic_handler(
        "setpay.test.Flaky", {"Call": grpc.unary_unary_rpc_method_handler(behaviour)}
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = open_channel(ChannelConfig(f"127.0.0.1:{port}", insecure=True), "test")
    yield behaviour, channel
    if behaviour.hang is not None:
        behaviour.hang.set()
    channel.close()
    server.stop(grace=None)


def test_retries_resend_the_same_bytes(flaky: tuple[Flaky, grpc.Channel]) -> None:
    behaviour, channel = flaky
    behaviour.failures, behaviour.status = 2, grpc.StatusCode.RESOURCE_EXHAUSTED
    behaviour.retry_delay = 0.001
    reply = Caller(channel, "test", FAST).call(
        METHOD, b"\x01\x02request", common_pb2.Header, deadline=5
    )
    assert reply.sw_ident == "ok"
    assert behaviour.received == [b"\x01\x02request"] * 3


def test_retries_are_bounded(flaky: tuple[Flaky, grpc.Channel]) -> None:
    behaviour, channel = flaky
    behaviour.failures = 100
    with pytest.raises(TransportError) as caught:
        Caller(channel, "test", FAST).call(METHOD, b"x", common_pb2.Header, deadline=5)
    assert caught.value.status == "UNAVAILABLE"
    assert len(behaviour.received) == FAST.attempts


def test_other_statuses_are_not_retried(flaky: tuple[Flaky, grpc.Channel]) -> None:
    behaviour, channel = flaky
    behaviour.failures, behaviour.status = 1, grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(TransportError) as caught:
        Caller(channel, "test", FAST).call(METHOD, b"x", common_pb2.Header, deadline=5)
    assert caught.value.status == "INVALID_ARGUMENT"
    assert len(behaviour.received) == 1


def test_deadline_bounds_the_call(flaky: tuple[Flaky, grpc.Channel]) -> None:
    behaviour, channel = flaky
    behaviour.hang = threading.Event()
    with pytest.raises(TransportError) as caught:
        Caller(channel, "test", FAST).call(METHOD, b"x", common_pb2.Header, deadline=0.2)
    assert caught.value.status == "DEADLINE_EXCEEDED"


def test_unreachable_peer() -> None:
    channel = open_channel(ChannelConfig("127.0.0.1:1", insecure=True), "test")
    with channel, pytest.raises(TransportError) as caught:
        Caller(channel, "test", FAST).call(METHOD, b"x", common_pb2.Header, deadline=2)
    assert caught.value.status == "UNAVAILABLE"


def test_channel_config_is_checked() -> None:
    with pytest.raises(ConfigError, match="CA certificate"):
        ChannelConfig("127.0.0.1:1")
    with pytest.raises(ConfigError, match="client certificate"):
        ChannelConfig("127.0.0.1:1", ca_pem=b"x", client_cert_pem=b"y")
    with pytest.raises(ConfigError, match="target"):
        ChannelConfig("", insecure=True)


def test_plaintext_is_logged_as_such(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING"):
        open_channel(ChannelConfig("127.0.0.1:1", insecure=True), "gateway").close()
    assert "PLAINTEXT" in caplog.text


# --- TLS: the pinned root, the server's name, the client certificate -----------------------


def _transport_ca(name: str) -> TransportCA:
    backend = SoftwareBackend.ephemeral()
    key = backend.generate(f"tls-{name}", KeyUsage.CA_SIGNING, KeyAlgorithm.EC_P256)
    return create_transport_ca(backend, key, name)


@pytest.fixture(scope="module")
def roots() -> dict[str, TransportCA]:
    """Two transport roots: the bank's, and one a stranger made."""
    return {"bank": _transport_ca("bank"), "stranger": _transport_ca("stranger")}


def _tls_server(
    server_tls: TlsCredentials, client_root: bytes | None
) -> tuple[grpc.Server, int, Flaky]:
    behaviour = Flaky()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    handler = grpc.method_handlers_generic_handler(
        "setpay.test.Flaky", {"Call": grpc.unary_unary_rpc_method_handler(behaviour)}
    )
    server.add_generic_rpc_handlers((handler,))
    credentials = grpc.ssl_server_credentials(
        [(server_tls.private_key_pem, server_tls.certificate_chain_pem)],
        root_certificates=client_root,
        require_client_auth=client_root is not None,
    )
    port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    return server, port, behaviour


def _call(config: ChannelConfig) -> common_pb2.Header:
    with open_channel(config, "gateway") as channel:
        return Caller(channel, "gateway", FAST).call(METHOD, b"x", common_pb2.Header, deadline=5)


def test_tls_to_a_server_of_the_pinned_root_and_name(roots: dict[str, TransportCA]) -> None:
    bank = roots["bank"]
    server, port, _ = _tls_server(issue_tls_server(bank), None)
    try:
        root = issue_tls_server(bank).root_certificate_pem
        assert _call(ChannelConfig(f"127.0.0.1:{port}", ca_pem=root)).sw_ident == "ok"
        assert _call(ChannelConfig(f"localhost:{port}", ca_pem=root)).sw_ident == "ok"
    finally:
        server.stop(None)


def test_a_server_certificate_of_another_root_is_refused(roots: dict[str, TransportCA]) -> None:
    server, port, behaviour = _tls_server(issue_tls_server(roots["stranger"]), None)
    try:
        pinned = issue_tls_server(roots["bank"]).root_certificate_pem
        with pytest.raises(TransportError) as caught:
            _call(ChannelConfig(f"127.0.0.1:{port}", ca_pem=pinned))
        assert caught.value.status == "UNAVAILABLE"
        assert behaviour.received == []  # the request never left the client
    finally:
        server.stop(None)


def test_a_server_certificate_for_another_name_is_refused(roots: dict[str, TransportCA]) -> None:
    # Valid, of the pinned root, but for gateway.example only: not the host dialled.
    tls = issue_tls_server(roots["bank"], dns_names=("gateway.example",), ip_addresses=())
    server, port, behaviour = _tls_server(tls, None)
    try:
        with pytest.raises(TransportError) as caught:
            _call(ChannelConfig(f"127.0.0.1:{port}", ca_pem=tls.root_certificate_pem))
        assert caught.value.status == "UNAVAILABLE"
        assert behaviour.received == []
    finally:
        server.stop(None)


def test_mutual_tls_needs_a_client_certificate_of_the_servers_root(
    roots: dict[str, TransportCA],
) -> None:
    bank = roots["bank"]
    server_tls = issue_tls_server(bank)
    server, port, behaviour = _tls_server(server_tls, server_tls.root_certificate_pem)
    target, root = f"127.0.0.1:{port}", server_tls.root_certificate_pem
    try:
        with pytest.raises(TransportError):
            _call(ChannelConfig(target, ca_pem=root))  # no client certificate
        stranger = issue_tls_client(roots["stranger"], "merchant-1")
        with pytest.raises(TransportError):
            _call(
                ChannelConfig(
                    target, ca_pem=root, client_cert_pem=stranger.certificate_chain_pem,
                    client_key_pem=stranger.private_key_pem,
                )
            )  # fmt: skip
        assert behaviour.received == []
        client = issue_tls_client(bank, "merchant-1")
        reply = _call(
            ChannelConfig(
                target, ca_pem=root, client_cert_pem=client.certificate_chain_pem,
                client_key_pem=client.private_key_pem,
            )
        )  # fmt: skip
        assert reply.sw_ident == "ok"
    finally:
        server.stop(None)
