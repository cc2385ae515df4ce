"""A software keystore's listing keeps the handles it gave out, and every check still runs.

``list_keys`` (and ``get`` of a version not held) reread the keystore. They used to put
a new ``KeyHandle`` in place of each one held; the bank lists its keys after taking its
own, so each of its signatures and decapsulations then compared two public keys in
``check_same_key`` instead of finding the caller's handle by identity. A version whose
files are unchanged keeps the object given out; one deleted, or deleted and made again,
by another process is still dropped and refused at its next use.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from hsm.base import KeyAlgorithm, KeyUsage
from hsm.errors import KeyNotFound
from hsm.software import SoftwareBackend

PASSPHRASE = "keystore passphrase for tests"
DATA = b"an authorization's response"


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    return tmp_path / "ks"


@pytest.fixture
def backend(directory: Path) -> Iterator[SoftwareBackend]:
    opened = SoftwareBackend.open(directory, PASSPHRASE)
    yield opened
    opened.close()


def _elsewhere(directory: Path) -> SoftwareBackend:
    """The same keystore opened as another process would."""
    return SoftwareBackend.open(directory, PASSPHRASE, create=False)


def test_a_listing_keeps_the_handles_given_out(backend: SoftwareBackend) -> None:
    signing = backend.generate("sig", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    exchange = backend.generate("kex", KeyUsage.KEY_EXCHANGE, KeyAlgorithm.EC_P256)
    taken = backend.get("sig")
    listed = {key.label: key for key in backend.list_keys()}
    assert listed["sig"] is signing and listed["kex"] is exchange
    assert backend.get("sig") is taken is signing
    assert backend._record(taken) is taken  # check_same_key's identity path
    backend.sign(taken, DATA)


def test_after_a_listing_a_deletion_elsewhere_is_refused(
    backend: SoftwareBackend, directory: Path
) -> None:
    key = backend.generate("sig", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    backend.sign(key, DATA)  # the private key is cached
    backend.list_keys()
    other = _elsewhere(directory)
    other.delete("sig")
    other.close()
    with pytest.raises(KeyNotFound):
        backend.sign(key, DATA)


def test_a_version_made_again_elsewhere_is_not_kept(
    backend: SoftwareBackend, directory: Path
) -> None:
    key = backend.generate("sig", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    backend.sign(key, DATA)
    other = _elsewhere(directory)
    other.delete("sig")
    again = other.generate("sig", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    other.close()
    assert again.version == key.version
    (listed,) = backend.list_keys()
    assert listed is not key and listed.public_key != key.public_key
    with pytest.raises(KeyNotFound, match="deleted and made again"):
        backend.sign(key, DATA)
    backend.sign(listed, DATA)


def test_a_version_whose_file_changed_elsewhere_is_not_kept(
    backend: SoftwareBackend, directory: Path
) -> None:
    # The same metadata with another stamp (the handle equal): not the file read.
    key = backend.generate("sig", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    meta = directory / "keys" / "sig" / "1.json"
    written = meta.stat().st_mtime_ns
    os.utime(meta, ns=(written, written - 1_000_000_000))  # a set time, never the same
    (listed,) = backend.list_keys()
    assert listed is not key and listed == key
