"""What the first pin of a brand root advises when the CA's revocation data names that
root as its signer and still fails: the clock only for data outside its validity
window. A forged signature, or the BCI of another brand, used to be told to check the
machine's clock, which sent the user to look where nothing was wrong.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

import cli.party_options as po
from clients.errors import ClientError
from clients.peers import PeerConfig
from hsm.software import SoftwareBackend
from setcore.profiles import EC
from tests.setcore.pki.conftest import World, later, make_world
from tests.setcore.pki.test_bci import _pairs, _sign, _tbs

CA_TARGET = "ca.example:7444"
ORIGIN = "ca.target in merchant.toml"
CLOCK = "check this machine's clock"


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    """A brand (root, CAs, BCI and CRLs) in EC keys: the advice does not depend on them."""
    yield make_world(SoftwareBackend.ephemeral(), EC)


def _pin(tmp_path: Path, world: World, bci: bytes, monkeypatch: pytest.MonkeyPatch) -> str:
    """Pin the brand root against a CA that answers ``bci``; the refusal's message."""
    root = tmp_path / "root.der"
    root.write_bytes(world.root.der)
    monkeypatch.setattr(po, "open_channel", lambda *a: contextlib.nullcontext(None))
    monkeypatch.setattr(po, "Caller", lambda *a: None)

    class Authority:
        def __init__(self, _: object) -> None:
            pass

        def revocation(self, brand: str) -> tuple[bytes, tuple[bytes, ...]]:
            return bci, world.crls

    monkeypatch.setattr(po, "AuthorityClient", Authority)
    ca = PeerConfig(CA_TARGET, insecure=True, origin=ORIGIN)
    with pytest.raises(ClientError) as refused:
        po.pin_root(tmp_path / "pin.pem", root, "merchant", ca, world.root.brand_id)
    assert not (tmp_path / "pin.pem").exists()
    return str(refused.value)


def test_a_forged_signature_sends_the_user_to_the_cas_address(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Signed by the Merchant CA's key, naming the root as its signer: a forgery.
    forged = _sign(world, _tbs(world, 2, _pairs(world)), key=world.brand.merchant_ca.ca.key)
    said = _pin(tmp_path, world, forged, monkeypatch)
    assert CLOCK not in said, said
    assert said.startswith(f"the revocation data of the CA at {CA_TARGET} does not verify: ")
    assert "SIGNATURE_FAILURE" in said
    assert said.endswith(f"nothing pinned: check the CA's address ({ORIGIN}): what answers"
                         " there does not hold that root's key")  # fmt: skip


def test_the_bci_of_another_brand_names_the_brand_setting(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = _sign(world, _tbs(world, 2, _pairs(world), brand_id="another-brand"))
    said = _pin(tmp_path, world, other, monkeypatch)
    assert CLOCK not in said, said
    assert said.startswith(
        f"the revocation data of the CA at {CA_TARGET} is of brand 'another-brand',"
        f" not {world.root.brand_id!r}: "
    )
    assert said.endswith(
        f"nothing pinned: check merchant.brand in the configuration, or the CA's address ({ORIGIN})"
    )


def test_data_outside_its_validity_window_still_sends_the_user_to_the_clock(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stale = _tbs(world, 2, _pairs(world))
    stale.not_before_unix_ms = int((later(-3)).timestamp() * 1000)
    stale.not_after_unix_ms = int((later(-3) + timedelta(days=1)).timestamp() * 1000)
    said = _pin(tmp_path, world, _sign(world, stale), monkeypatch)
    assert "EXPIRED_CERTIFICATE" in said
    assert said.endswith(f"{CLOCK} and the CA; nothing pinned"), said
