"""A software backend's handle whose label another thread deletes and makes again mid-call.

``SoftwareBackend`` checks a handle (``_record``), lets its lock go, then reads the key
or certificate held under the handle's label and version. A thread that deletes the
label and generates it again in that gap puts another key under the same label and
version 1: the old handle must then get ``KeyNotFound`` (``hsm.base``), never the new
key's signature, shared secret or certificate. The gap is made to happen here, not hoped
for: a stand-in ``_record`` does the other thread's work right after the real one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hsm.base import KeyAlgorithm, KeyHandle, KeyUsage
from hsm.errors import KeyNotFound
from hsm.software import SoftwareBackend

from .keycheck import certificate_for, encapsulate, verify

PASSPHRASE = "keystore passphrase for tests"
MADE_AGAIN = r"'k' v1 was deleted and made again"


@pytest.fixture(params=["ephemeral", "keystore"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SoftwareBackend]:
    """A software backend of each mode."""
    if request.param == "ephemeral":
        opened = SoftwareBackend.ephemeral()
    else:
        opened = SoftwareBackend.open(tmp_path / "ks", PASSPHRASE)
    yield opened
    opened.close()


def _made_again_after_the_check(
    monkeypatch: pytest.MonkeyPatch,
    usage: KeyUsage,
    then: Callable[[SoftwareBackend, KeyHandle], None] = lambda backend, key: None,
) -> list[KeyHandle]:
    """Make the next call's handle check be followed, before the key is read, by another
    thread's delete of the label and generate of it again (then ``then`` of the new key)."""
    record = SoftwareBackend._record
    made: list[KeyHandle] = []

    def checked_then_made_again(backend: SoftwareBackend, key: KeyHandle) -> KeyHandle:
        found = record(backend, key)
        monkeypatch.setattr(SoftwareBackend, "_record", record)  # once only
        backend.delete(key.label)
        made.append(backend.generate(key.label, usage, KeyAlgorithm.EC_P256))
        then(backend, made[-1])
        return found

    monkeypatch.setattr(SoftwareBackend, "_record", checked_then_made_again)
    return made


def _is_another_key_under_the_same_name(made: list[KeyHandle], old: KeyHandle) -> None:
    # The race did happen: version 1 again, another key.
    assert len(made) == 1
    assert (made[0].label, made[0].version) == (old.label, old.version)
    assert made[0].public_key != old.public_key


def test_an_old_handle_does_not_sign_with_the_key_made_again(
    backend: SoftwareBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = backend.generate("k", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    verify(old.public_key, backend.sign(old, b"warm"), b"warm")  # the key is cached
    made = _made_again_after_the_check(monkeypatch, KeyUsage.SIGNATURE)
    with pytest.raises(KeyNotFound, match=MADE_AGAIN):
        backend.sign(old, b"data")
    _is_another_key_under_the_same_name(made, old)
    # The new key's own handle signs with it.
    new = backend.get("k")
    assert new.public_key == made[0].public_key
    verify(new.public_key, backend.sign(new, b"data"), b"data")


def test_an_old_handle_does_not_decapsulate_with_the_key_made_again(
    backend: SoftwareBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = backend.generate("k", KeyUsage.KEY_EXCHANGE, KeyAlgorithm.EC_P256)
    assert old.kem is not None
    ciphertext, secret = encapsulate(old)
    assert backend.decapsulate(old, old.kem, ciphertext) == secret  # the key is cached
    made = _made_again_after_the_check(monkeypatch, KeyUsage.KEY_EXCHANGE)
    with pytest.raises(KeyNotFound, match=MADE_AGAIN):
        backend.decapsulate(old, old.kem, ciphertext)
    _is_another_key_under_the_same_name(made, old)
    new = backend.get("k")
    assert new.kem is not None
    ciphertext, secret = encapsulate(new)
    assert backend.decapsulate(new, new.kem, ciphertext) == secret


def test_an_old_handle_is_not_given_the_certificate_of_the_key_made_again(
    backend: SoftwareBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = backend.generate("k", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    backend.store_certificate(old, certificate_for(old.public_key))
    new_certificate: list[bytes] = []

    def certified(backend: SoftwareBackend, key: KeyHandle) -> None:
        new_certificate.append(certificate_for(key.public_key))
        backend.store_certificate(key, new_certificate[0])

    made = _made_again_after_the_check(monkeypatch, KeyUsage.SIGNATURE, certified)
    with pytest.raises(KeyNotFound, match=MADE_AGAIN):
        backend.certificate(old)
    _is_another_key_under_the_same_name(made, old)
    assert backend.certificate(backend.get("k")) == new_certificate[0]


def test_an_old_handles_certificate_is_not_stored_beside_the_key_made_again(
    backend: SoftwareBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = backend.generate("k", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    made = _made_again_after_the_check(monkeypatch, KeyUsage.SIGNATURE)
    # KeyNotFound from either check: this backend's (the handle is no longer held) or,
    # with a keystore, the keystore's own (the public key file beside is another key's).
    with pytest.raises(KeyNotFound, match=MADE_AGAIN + "|gone from the keystore"):
        backend.store_certificate(old, certificate_for(old.public_key))
    _is_another_key_under_the_same_name(made, old)
    # The old key's certificate would have been served as the new key's.
    assert backend.certificate(backend.get("k")) is None


def test_an_old_handle_whose_label_was_only_deleted_is_not_found(
    backend: SoftwareBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = backend.generate("k", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    backend.sign(old, b"warm")
    record = SoftwareBackend._record

    def checked_then_deleted(backend: SoftwareBackend, key: KeyHandle) -> KeyHandle:
        found = record(backend, key)
        monkeypatch.setattr(SoftwareBackend, "_record", record)
        backend.delete(key.label)
        return found

    monkeypatch.setattr(SoftwareBackend, "_record", checked_then_deleted)
    with pytest.raises(KeyNotFound, match=r"no key 'k' v1"):
        backend.sign(old, b"data")
    assert backend.list_keys() == []


def test_a_handle_still_held_signs_after_the_keystore_is_read_again(tmp_path: Path) -> None:
    # Reading the keystore again keeps the handle held for an unchanged version; a handle
    # that is another object for the same key (read by another backend on the keystore)
    # still signs: the check compares keys, not objects.
    backend = SoftwareBackend.open(tmp_path / "ks", PASSPHRASE)
    key = backend.generate("k", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    backend.sign(key, b"warm")
    reread = backend.list_keys()
    assert reread == [key]
    elsewhere = SoftwareBackend.open(tmp_path / "ks", PASSPHRASE)
    copy = elsewhere.get("k")
    elsewhere.close()
    assert copy == key and copy is not key and copy.public_key is not key.public_key
    verify(key.public_key, backend.sign(copy, b"data"), b"data")
    backend.close()


def test_an_old_handle_is_not_given_the_certificate_another_process_stored_for_the_new_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between the handle's check and the certificate's read, another process (a second
    backend on the keystore) deletes the label, makes it again and certifies the new key:
    this process's handle list knows nothing of it, so the version file's stamp, taken
    again after the read, is what tells."""
    here = SoftwareBackend.open(tmp_path / "ks", PASSPHRASE)
    elsewhere = SoftwareBackend.open(tmp_path / "ks", PASSPHRASE)
    old = here.generate("k", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    here.store_certificate(old, certificate_for(old.public_key))
    record = SoftwareBackend._record

    def checked_then_made_again_elsewhere(backend: SoftwareBackend, key: KeyHandle) -> KeyHandle:
        found = record(backend, key)
        monkeypatch.setattr(SoftwareBackend, "_record", record)  # once
        elsewhere.delete("k")
        new = elsewhere.generate("k", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
        assert new.version == old.version and new.public_key != old.public_key
        elsewhere.store_certificate(new, certificate_for(new.public_key))
        return found

    monkeypatch.setattr(SoftwareBackend, "_record", checked_then_made_again_elsewhere)
    with pytest.raises(KeyNotFound, match=MADE_AGAIN):
        here.certificate(old)
    here.close()
    elsewhere.close()
