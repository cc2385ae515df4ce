"""Transport certificates: real mutual TLS through a gRPC server on port 0, and openssl."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from setcore.errors import ConfigurationError
from setcore.pki import TlsCredentials, create_brand, issue_tls_client, issue_tls_server

from .conftest import World, run_openssl

# Generous: a TLS handshake on loopback takes milliseconds; this only bounds a hang.
RPC_TIMEOUT_SECONDS = 10
METHOD = "/setpay.test.Echo/Echo"


def _echo(request: bytes, context: grpc.ServicerContext) -> bytes:
    peer = context.auth_context().get("x509_common_name", [b"?"])[0]
    assert isinstance(peer, bytes)
    return request + b" from " + peer


@pytest.fixture
def server(world: World) -> Iterator[tuple[int, TlsCredentials]]:
    credentials = issue_tls_server(world.brand.gateway_ca.ca)
    server = grpc.server(ThreadPoolExecutor(max_workers=2))
    handler = grpc.method_handlers_generic_handler(
        "setpay.test.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(_echo)}
    )
    server.add_generic_rpc_handlers((handler,))
    server_credentials = grpc.ssl_server_credentials(
        [(credentials.private_key_pem, credentials.certificate_chain_pem)],
        root_certificates=credentials.root_certificate_pem,
        require_client_auth=True,
    )
    port = server.add_secure_port("127.0.0.1:0", server_credentials)
    server.start()
    yield port, credentials
    server.stop(grace=None)


def _call(target: str, root_pem: bytes, client: TlsCredentials | None) -> bytes:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=root_pem,
        private_key=client.private_key_pem if client else None,
        certificate_chain=client.certificate_chain_pem if client else None,
    )
    with grpc.secure_channel(target, credentials) as channel:
        call = channel.unary_unary(METHOD, request_serializer=None, response_deserializer=None)
        response: bytes = call(b"ping", timeout=RPC_TIMEOUT_SECONDS)
        return response


def test_mutual_tls_over_grpc(world: World, server: tuple[int, TlsCredentials]) -> None:
    port, credentials = server
    client = issue_tls_client(world.brand.merchant_ca.ca, "merchant-1")
    assert _call(f"localhost:{port}", credentials.root_certificate_pem, client) == (
        b"ping from merchant-1"
    )
    assert _call(f"127.0.0.1:{port}", credentials.root_certificate_pem, client) == (
        b"ping from merchant-1"
    )


def test_client_without_certificate_refused(
    world: World, server: tuple[int, TlsCredentials]
) -> None:
    port, credentials = server
    with pytest.raises(grpc.RpcError) as caught:
        _call(f"localhost:{port}", credentials.root_certificate_pem, None)
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE


def test_client_of_another_brand_refused(world: World, server: tuple[int, TlsCredentials]) -> None:
    port, credentials = server
    other = create_brand(
        world.backend, world.profile, "other", label_prefix=f"{world.profile.name}-tls-"
    )
    stranger = issue_tls_client(other.merchant_ca.ca, "merchant-1")
    with pytest.raises(grpc.RpcError) as caught:
        _call(f"localhost:{port}", credentials.root_certificate_pem, stranger)
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
    # ...and a client that trusts another root does not accept our server.
    with pytest.raises(grpc.RpcError) as caught:
        _call(f"localhost:{port}", stranger.root_certificate_pem, stranger)
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE


def test_tls_certificate_contents(world: World) -> None:
    server = issue_tls_server(world.brand.gateway_ca.ca, dns_names=["localhost", "gw.test"])
    cert = x509.load_der_x509_certificate(server.certificate_der)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost", "gw.test"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert b"PRIVATE KEY" not in repr(server).encode()
    client = issue_tls_client(world.brand.merchant_ca.ca, "m-1")
    eku = (
        x509.load_der_x509_certificate(client.certificate_der)
        .extensions.get_extension_for_class(x509.ExtendedKeyUsage)
        .value
    )
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]


def test_openssl_checks_tls_purposes(tmp_path: Path, world: World) -> None:
    server = issue_tls_server(world.brand.gateway_ca.ca)
    client = issue_tls_client(world.brand.merchant_ca.ca, "merchant-1")
    for name, creds, purpose in (("s", server, "sslserver"), ("c", client, "sslclient")):
        root = tmp_path / f"{name}-root.pem"
        root.write_bytes(creds.root_certificate_pem)
        chain = tmp_path / f"{name}-chain.pem"
        chain.write_bytes(creds.certificate_chain_pem)
        result = run_openssl(
            "verify",
            "-x509_strict",
            "-purpose",
            purpose,
            "-CAfile",
            str(root),
            "-untrusted",
            str(chain),
            str(chain),
        )
        assert result.stdout.strip().endswith(": OK"), result.stdout + result.stderr
    # The same server chain is not good for a client: the purpose check bites.
    server_chain = str(tmp_path / "s-chain.pem")
    result = run_openssl(
        "verify",
        "-purpose",
        "sslclient",
        "-CAfile",
        str(tmp_path / "s-root.pem"),
        "-untrusted",
        server_chain,
        server_chain,
    )
    assert "unsuitable certificate purpose" in result.stdout + result.stderr


def test_bad_names_refused(world: World) -> None:
    with pytest.raises(ConfigurationError):
        issue_tls_client(world.brand.merchant_ca.ca, "not a hostname")
    with pytest.raises(ConfigurationError):
        issue_tls_server(world.brand.gateway_ca.ca, dns_names=[], ip_addresses=[])
    with pytest.raises(ConfigurationError):
        issue_tls_server(world.brand.gateway_ca.ca, ip_addresses=["300.1.1.1"])
    for name in ("*.example.com", "../escaped", "a_b.example", "x-", "a" * 64):
        with pytest.raises(ConfigurationError, match="TLS server names are DNS names"):
            issue_tls_server(world.brand.gateway_ca.ca, dns_names=[name], ip_addresses=[])
    issue_tls_server(world.brand.gateway_ca.ca, dns_names=["gw-1.bank.example"], ip_addresses=[])
