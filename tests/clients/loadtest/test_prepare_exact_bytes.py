"""The bench's registrations send the very bytes their first requests were hashed over.

CardCInitReq and Me-AqCInitReq are their calls' frames: the digest a CA's Error names is
of those bytes, so the bench sends what the builder serialized (``state.sent``), as
``setpay merchant`` and ``setpay wallet`` do, never a serialization of its own. A real
gRPC server on port 0 stands in for the CA and records what arrives; its empty answers
end each registration there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest

from clients.loadtest import prepare
from clients.loadtest.prepare import Parties, Population
from clients.transport import ChannelConfig, open_channel
from hsm.base import KeyAlgorithm, KeyUsage
from hsm.software import SoftwareBackend
from setcore.errors import ProtocolError
from setcore.pki.issuance import create_brand_root
from setcore.profiles import EC
from setpay.v1 import services_pb2

_SERVICE = services_pb2.DESCRIPTOR.services_by_name["CertificateAuthorityService"].full_name


@pytest.fixture
def parties() -> Iterator[tuple[dict[str, bytes], Parties]]:
    """The bench's parties with a CA stand-in that records each request's bytes and answers
    with an empty message."""
    seen: dict[str, bytes] = {}

    def recorder(name: str) -> grpc.RpcMethodHandler[bytes, bytes]:
        def handle(request: bytes, context: grpc.ServicerContext) -> bytes:
            seen[name] = request
            return b""

        return grpc.unary_unary_rpc_method_handler(handle)

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    handlers = {name: recorder(name) for name in ("CardCInit", "MeAqCInit")}
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(_SERVICE, handlers)])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = open_channel(ChannelConfig(f"127.0.0.1:{port}", insecure=True), "CA")
    keys = SoftwareBackend.ephemeral()
    root = create_brand_root(
        keys, keys.generate("root", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256), "testbrand"
    )
    population = Population(EC, "testbrand", "400000", 1, "203012", 100_000, 978, 1000)
    found = Parties(population, root.der, channel, channel, lambda *_: None)
    yield seen, found
    found.close()
    keys.close()
    channel.close()
    server.stop(grace=None)


def _changed_after_hashing(
    monkeypatch: pytest.MonkeyPatch, builder: str, states: list[Any]
) -> None:
    """The builder's request changed once it was hashed: a stand-in for bytes that a second
    serialization need not reproduce (protobuf promises no canonical form)."""
    real: Callable[..., tuple[Any, Any]] = getattr(prepare, builder)

    def build(*args: Any, **kwargs: Any) -> tuple[Any, Any]:
        request, state = real(*args, **kwargs)
        request.lid_ee = b"not what was hashed"
        states.append(state)
        return request, state

    monkeypatch.setattr(prepare, builder, build)


def test_the_merchant_registration_sends_the_bytes_it_hashed(
    parties: tuple[dict[str, bytes], Parties], monkeypatch: pytest.MonkeyPatch
) -> None:
    seen, bench = parties
    states: list[Any] = []
    _changed_after_hashing(monkeypatch, "build_me_aq_c_init_request", states)
    with pytest.raises(ProtocolError, match="MeAqCInitResTBS' was expected"):
        bench.register_merchant()
    assert seen["MeAqCInit"] == states[0].sent


def test_a_cardholder_registration_sends_the_bytes_it_hashed(
    parties: tuple[dict[str, bytes], Parties], monkeypatch: pytest.MonkeyPatch
) -> None:
    seen, bench = parties
    states: list[Any] = []
    _changed_after_hashing(monkeypatch, "build_card_c_init_request", states)
    with pytest.raises(ProtocolError, match="CardCInitResTBS' was expected"):
        bench.register_cardholder()
    assert seen["CardCInit"] == states[0].sent
