"""Key versions two keys claim: never made so by setpay's own numbering, refused by
``get`` of the newest as by their number, cheap to refuse, said once, and named as such
when just made.

A key the catalog refuses for now (its public key object removed, which anyone reaching
the token without its PIN can do) used to be left out of the numbering, so the next
rotation took its version; once the object was back, the version was claimed twice and
the newest key was refused everywhere. Every call on such a version read the whole
token again and logged a WARNING. For a while ``get`` of the label's newest then gave
the version below without a word to its caller, which could not tell it was not the
key it meant (the bank's token-sealing key: cap tokens sealed under the newest were
then refused as sealed to another key, where the start used to be refused).
"""

from __future__ import annotations

import logging
import time

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from hsm import token_claims
from hsm.base import KeyAlgorithm, KeyUsage
from hsm.errors import PermanentBackendError
from hsm.pkcs11 import Pkcs11Backend
from hsm.token_catalog import KEY_CLASSES, objects
from hsm.token_creation import create_key
from hsm.token_objects import import_attributes, metadata_attributes, new_key_id
from hsm.token_session import TokenSession

from .claims_support import claim_again, claim_on, put_public_object_back, remove_public_object
from .keycheck import verify
from .testbed import DATA

# Refused calls made in a row: far more than re-readings a few seconds allow (none).
REFUSED_CALLS = 50


def _imported(backend: Pkcs11Backend, label: str) -> tuple[ec.EllipticCurvePrivateKey, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    handle = backend.import_key(label, KeyUsage.SIGNATURE, key)
    return key, backend.object_id(handle)


def _scans(backend: Pkcs11Backend, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the catalog's readings of the token from now on (one entry per reading)."""
    read, counted = backend._catalog.scan, []

    def scan(session: TokenSession) -> object:
        counted.append(1)
        return read(session)

    monkeypatch.setattr(backend._catalog, "scan", scan)
    return counted


def _claims_of(caplog: pytest.LogCaptureFixture, label: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if f"key {label!r} v" in r.getMessage()]


@pytest.mark.integration
def test_a_rotation_does_not_take_the_version_of_a_key_refused_for_now(
    pkcs11_backend: Pkcs11Backend,
) -> None:
    backend = pkcs11_backend
    key, first_id = _imported(backend, "sig")
    remove_public_object(backend, first_id)
    assert backend.list_keys() == []  # refused while its public object is gone
    rotated = backend.generate("sig", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    assert rotated.version == 2
    put_public_object_back(backend, "sig", first_id, key)
    assert [(k.label, k.version) for k in backend.list_keys()] == [("sig", 1), ("sig", 2)]
    assert backend.get("sig") == rotated
    verify(rotated.public_key, backend.sign(rotated, DATA), DATA)


@pytest.mark.integration
def test_metadata_whose_key_never_came_costs_its_version(pkcs11_backend: Pkcs11Backend) -> None:
    backend = pkcs11_backend
    backend.generate("sig", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    orphan = metadata_attributes(
        "sig", 3, KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256, new_key_id(), None
    )
    backend._link.run(lambda s: s.session.create_object(orphan), "leave metadata behind")
    other = metadata_attributes(
        "other", 7, KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256, new_key_id(), None
    )
    backend._link.run(lambda s: s.session.create_object(other), "another label's metadata")
    assert backend.generate("sig", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256).version == 4
    # Another label's versions count for nothing here.
    assert backend.generate("new", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256).version == 1


@pytest.mark.integration
def test_an_adoption_does_not_take_the_version_of_a_key_refused_for_now(
    pkcs11_backend: Pkcs11Backend,
) -> None:
    backend = pkcs11_backend
    key, first_id = _imported(backend, "sig")
    remove_public_object(backend, first_id)
    # A key another tool made (no setpay metadata), under a label of its own.
    foreign, foreign_id = ec.generate_private_key(ec.SECP256R1()), new_key_id()
    templates = import_attributes("tool-made", foreign_id, KeyUsage.SIGNATURE, foreign)
    for template in templates:
        backend._link.run(lambda s, t=template: s.session.create_object(t), "make a key")
    adopted = backend.adopt(foreign_id, "sig", KeyUsage.SIGNATURE)
    assert adopted.version == 2
    put_public_object_back(backend, "sig", first_id, key)
    assert [(k.label, k.version) for k in backend.list_keys()] == [("sig", 1), ("sig", 2)]


@pytest.mark.integration
def test_a_newest_version_two_keys_claim_is_refused_by_name_not_passed_over(
    pkcs11_backend: Pkcs11Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Long enough that the refused calls below all fall within it on a loaded machine
    # (they are checked to), short enough to wait out once at the end.
    monkeypatch.setattr(token_claims, "REREAD_SECONDS", 2.0)
    backend = pkcs11_backend
    older = backend.generate("gw", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    newer = backend.generate("gw", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    newer_id = backend.object_id(newer)
    claim_again(backend, "gw", 2, bytes(16))
    assert backend.list_keys() == [older]  # the listing leaves v2 out
    scans = _scans(backend, monkeypatch)
    started = time.monotonic()
    for _ in range(REFUSED_CALLS):
        # The caller means the newest: the token cannot say which key that is, and the
        # version below is not it. Refused naming both keys' CKA_IDs.
        with pytest.raises(PermanentBackendError) as refused:
            backend.get("gw")
    assert time.monotonic() - started < token_claims.REREAD_SECONDS  # else inconclusive
    said = str(refused.value)
    assert "'gw' v2 " in said and "claimed by 2 keys" in said
    assert newer_id.hex()[:8] in said and "00000000" in said
    assert scans == []  # answered from memory, as a refused version by number is
    assert backend.get("gw", 1) == older  # by its number, the older one is still used

    def remove(session: TokenSession) -> None:  # the operator removes the racing key
        for obj in objects(session, KEY_CLASSES, {bytes(16)}):
            obj.destroy()

    backend._link.run(remove, "remove a key", retry=False)
    backend._link.invalidate_objects()
    time.sleep(2.1)
    assert backend.get("gw") == newer  # read again: the newest is one key's again
    verify(newer.public_key, backend.sign(backend.get("gw"), DATA), DATA)


@pytest.mark.integration
def test_the_newest_of_a_label_whose_every_version_is_claimed_twice_is_refused(
    pkcs11_backend: Pkcs11Backend,
) -> None:
    backend = pkcs11_backend
    backend.generate("gw", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    claim_again(backend, "gw", 1, bytes(16))
    backend.list_keys()
    # Refused by name, not "no key": the key is there, and nothing may take its label.
    with pytest.raises(PermanentBackendError, match=r"'gw' v1 .* claimed by 2 keys"):
        backend.get("gw")


@pytest.mark.integration
def test_a_refused_version_is_not_read_again_at_every_call(
    pkcs11_backend: Pkcs11Backend,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    backend = pkcs11_backend
    duplicated = backend.generate("dup", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    claim_again(backend, "dup", 1, bytes(16))
    with caplog.at_level(logging.WARNING):
        backend.list_keys()
        assert len(_claims_of(caplog, "dup")) == 1
        scans = _scans(backend, monkeypatch)
        started = time.monotonic()
        for _ in range(REFUSED_CALLS):
            with pytest.raises(PermanentBackendError, match="claimed by 2 keys"):
                backend.sign(duplicated, DATA)
        assert time.monotonic() - started < token_claims.REREAD_SECONDS  # else inconclusive
        assert scans == []
        backend.list_keys()  # read, as every listing is: the same claim, not said again
        assert scans == [1] and len(_claims_of(caplog, "dup")) == 1
        claim_again(backend, "dup", 1, bytes(range(16)))  # a third key: another claim
        backend.list_keys()
        assert len(_claims_of(caplog, "dup")) == 2


@pytest.mark.integration
def test_a_refused_version_is_read_again_after_a_while(
    pkcs11_backend: Pkcs11Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(token_claims, "REREAD_SECONDS", 0.2)
    backend = pkcs11_backend
    duplicated = backend.generate("dup", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    claim_again(backend, "dup", 1, bytes(16))
    backend.list_keys()
    scans = _scans(backend, monkeypatch)
    time.sleep(0.3)
    for _ in range(3):
        with pytest.raises(PermanentBackendError, match="claimed by 2 keys"):
            backend.sign(duplicated, DATA)
    assert scans == [1]  # the first call read the token; the next two did not


@pytest.mark.integration
def test_a_version_just_made_and_claimed_by_another_key_too_is_named_so(
    pkcs11_backend: Pkcs11Backend,
) -> None:
    backend = pkcs11_backend
    key = ec.generate_private_key(ec.SECP256R1())
    made_ids: list[bytes] = []

    def make(session: TokenSession, version: int, ck_id: bytes) -> object:
        private, public = import_attributes("m", ck_id, KeyUsage.SIGNATURE, key)
        session.session.create_object(private)
        session.session.create_object(public)
        made_ids.append(ck_id)
        # Meanwhile, a process holding another key lock claims the same version.
        claim_on(session, "m", version, bytes(16))
        return key.public_key()

    with pytest.raises(PermanentBackendError) as raised:
        create_key(
            backend._link, backend._catalog, "m", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256, make
        )
    said = str(raised.value)
    (made_id,) = made_ids
    assert said.startswith(
        f"key 'm' v1 was made on {backend.token_name} (CKA_ID starting {made_id.hex()[:8]}),"
        " but another key claims v1 too: "
    )
    assert "00000000" in said  # the other one, by its id
    assert "delete it" not in said and "once it answers" not in said
