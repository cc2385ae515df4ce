"""The bench's registrations send the very bytes their first requests were hashed over.

CardCInitReq and Me-AqCInitReq are their calls' frames: the digest a CA's Error names is
of those bytes, so the bench sends what the builder serialized (``state.sent``), as
``setpay merchant`` and ``setpay wallet`` do, never a serialization of its own. A real
gRPC server on port 0 stands in for the CA and records what arrives; its empty answers
end each registration there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from clients.loadtest import prepare
from clients.loadtest.prepare import Parties, Population
from hsm.base import KeyAlgorithm, KeyUsage
from hsm.software import SoftwareBackend
from setcore.errors import ProtocolError
from setcore.pki.issuance import create_brand_root
from setcore.profiles import EC
from tests.clients.transport_support import recording_ca


@pytest.fixture
def parties() -> Iterator[tuple[dict[str, bytes], Parties]]:
    """The bench's parties with a CA stand-in that records each request's bytes and answers
    with an empty message."""
    with recording_ca() as (seen, channel):
        keys = SoftwareBackend.ephemeral()
        root = create_brand_root(
            keys, keys.generate("root", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256), "testbrand"
        )
        population = Population(EC, "testbrand", "400000", 1, "203012", 100_000, 978, 1000)
        found = Parties(population, root.der, channel, channel, lambda *_: None)
        yield seen, found
        found.close()
        keys.close()


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
