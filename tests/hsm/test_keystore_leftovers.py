"""The software keystore after a removal cut short, a race, or a file it cannot touch."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hsm.base import KeyAlgorithm, KeyUsage
from hsm.errors import KeyNotFound, PermanentBackendError
from hsm.keystore import Keystore
from hsm.software import SoftwareBackend

from .keycheck import certificate_for

PASSPHRASE = "keystore passphrase for tests"


def test_a_certificate_left_by_a_removal_cut_short_is_not_the_next_keys(tmp_path: Path) -> None:
    directory = tmp_path / "ks"
    backend = SoftwareBackend.open(directory, PASSPHRASE)
    old = backend.generate("merchant-sig", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    backend.store_certificate(old, certificate_for(old.public_key))
    backend.close()
    # Removal unlinks the JSON file first; a kill right after leaves the rest behind.
    (directory / "keys" / "merchant-sig" / "1.json").unlink()
    backend = SoftwareBackend.open(directory, PASSPHRASE)
    new = backend.generate("merchant-sig", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    assert new.version == 1
    # The leftover certifies the old key: it must not be served as the new one's.
    assert backend.certificate(new) is None
    assert not (directory / "keys" / "merchant-sig" / "1.cert.der").exists()
    backend.close()


def test_a_certificate_is_not_written_beside_a_version_made_again(tmp_path: Path) -> None:
    keystore = Keystore.open(tmp_path / "ks", PASSPHRASE)
    other = SoftwareBackend.open(tmp_path / "ks", PASSPHRASE)
    old = other.generate("merchant-sig", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    # Between the caller's check of ``old`` and its write, another process deletes the
    # version and makes it again: the same label and number, another key.
    other.delete("merchant-sig")
    new = other.generate("merchant-sig", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    assert (new.label, new.version) == (old.label, old.version)
    with pytest.raises(KeyNotFound, match="gone from the keystore"):
        keystore.write_certificate(old, certificate_for(old.public_key))
    assert other.certificate(new) is None
    other.close()


def test_a_certificate_that_cannot_be_read_is_a_backend_error(tmp_path: Path) -> None:
    backend = SoftwareBackend.open(tmp_path / "ks", PASSPHRASE)
    key = backend.generate("merchant-sig", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    # Anything but "no such file" (here: a directory where the file belongs).
    (tmp_path / "ks" / "keys" / "merchant-sig" / "1.cert.der").mkdir()
    with pytest.raises(PermanentBackendError, match=r"1\.cert\.der"):
        backend.certificate(key)
    backend.close()


def test_a_version_that_cannot_be_removed_is_a_backend_error(tmp_path: Path) -> None:
    backend = SoftwareBackend.open(tmp_path / "ks", PASSPHRASE)
    backend.generate("merchant-sig", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    blocker = tmp_path / "ks" / "keys" / "merchant-sig" / "1.cert.der"
    blocker.mkdir()
    (blocker / "in-the-way").write_bytes(b"")
    with pytest.raises(PermanentBackendError, match="cannot remove key 'merchant-sig'"):
        backend.delete("merchant-sig")
    backend.close()


def test_a_keystore_directory_that_cannot_be_listed_is_a_backend_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = SoftwareBackend.open(tmp_path / "ks", PASSPHRASE)
    backend.generate("merchant-sig", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    listdir = os.listdir

    def refused(path: str | os.PathLike[str]) -> list[str]:
        # What a directory without read permission answers (chmod would not do: as
        # root the listing still works).
        if Path(path).name == "merchant-sig":
            raise PermissionError(13, "Permission denied")
        return listdir(path)

    monkeypatch.setattr(os, "listdir", refused)
    with pytest.raises(PermanentBackendError, match="cannot read keystore directory"):
        backend.list_keys()
    backend.close()
