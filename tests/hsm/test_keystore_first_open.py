"""Opening a keystore that does not exist yet: two openers at once, a killed one, a foreign one."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from hsm import keystore as keystore_module
from hsm.base import KeyAlgorithm, KeyUsage
from hsm.errors import PermanentBackendError
from hsm.filelock import exclusive_lock
from hsm.keystore import Keystore
from hsm.software import SoftwareBackend

from .keycheck import verify

PASSPHRASE = "keystore passphrase for tests"
#: As ``hsm.keystore`` names the header's temp file: ``.keystore.json.PID.HEX.tmp``.
HEADER_TEMP = ".keystore.json.4242.0a1b2c3d.tmp"


def test_a_second_opener_waits_for_the_header_the_first_is_writing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "ks"
    second: list[Keystore | BaseException] = []
    second_came = threading.Event()
    replace = os.replace

    def open_second() -> None:
        try:
            second.append(Keystore.open(directory, PASSPHRASE))
        except BaseException as exc:
            second.append(exc)
        finally:
            second_came.set()  # refused, or through: either way, done

    @contextmanager
    def noted_lock(path: str, timeout: float) -> Iterator[None]:
        if threading.current_thread() is second_opener:
            second_came.set()  # at the lock, which the first opener holds
        with exclusive_lock(path, timeout):
            yield

    def header_written_then_second_comes(source: str, target: str) -> None:
        # The first opener has its header in its temp file, not yet renamed into place:
        # a busy disk's fsync makes this last a while, and the second opener comes now.
        if Path(target).name == "keystore.json" and second_opener.ident is None:
            assert [n for n in os.listdir(directory) if n.endswith(".tmp")]
            second_opener.start()
            assert second_came.wait(timeout=10)
        replace(source, target)

    second_opener = threading.Thread(target=open_second)
    monkeypatch.setattr(keystore_module, "exclusive_lock", noted_lock)
    monkeypatch.setattr(os, "replace", header_written_then_second_comes)
    first = Keystore.open(directory, PASSPHRASE)
    second_opener.join(timeout=30)
    assert len(second) == 1
    assert isinstance(second[0], Keystore), second[0]
    # Both opened the one keystore: a key one adds, the other finds.
    handle, _ = first.add("k", KeyUsage.SIGNATURE, None, ec.generate_private_key(ec.SECP256R1()))
    assert [found.public_key for found, _ in second[0].scan()] == [handle.public_key]
    assert sorted(os.listdir(directory)) == [".lock", "keys", "keystore.json"]


def test_the_header_temp_file_of_a_killed_opener_is_cleared(tmp_path: Path) -> None:
    directory = tmp_path / "ks"
    directory.mkdir(mode=0o700)
    (directory / ".lock").write_bytes(b"")
    (directory / HEADER_TEMP).write_bytes(b'{"format": 3, "kdf": {')  # cut short
    backend = SoftwareBackend.open(directory, PASSPHRASE)
    key = backend.generate("k", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    assert sorted(os.listdir(directory)) == [".lock", "keys", "keystore.json"]
    reopened = SoftwareBackend.open(directory, PASSPHRASE)
    verify(key.public_key, reopened.sign(reopened.get("k"), b"data"), b"data")


@pytest.mark.parametrize(
    "names",
    [
        ["somebody-elses-file"],
        [HEADER_TEMP, "somebody-elses-file"],
        # Temp files of what only a keystore with a header has, or not setpay's at all.
        [".1.json.4242.0a1b2c3d.tmp"],
        [".keystore.json.tmp"],
        [".keystore.json.4242.0A1B2C3D.tmp"],
        ["keys"],
    ],
)
def test_a_directory_holding_more_than_a_keystore_being_made_is_not_taken_over(
    tmp_path: Path, names: list[str]
) -> None:
    directory = tmp_path / "ks"
    directory.mkdir(mode=0o700)
    for name in names:
        (directory / name).write_text("not ours")
    with pytest.raises(PermanentBackendError, match=rf"{directory} is not a setpay keystore"):
        SoftwareBackend.open(directory, PASSPHRASE)
    # Refused before the lock: nothing is added, nothing removed.
    assert sorted(os.listdir(directory)) == sorted(names)


def test_a_directory_that_cannot_be_listed_is_a_backend_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "ks"
    listdir = os.listdir

    def refused(path: str | os.PathLike[str]) -> list[str]:
        # What a directory without read permission answers (chmod would not do as root).
        if Path(path) == directory:
            raise PermissionError(13, "Permission denied")
        return listdir(path)

    monkeypatch.setattr(os, "listdir", refused)
    with pytest.raises(PermanentBackendError, match="cannot read keystore directory"):
        Keystore.open(directory, PASSPHRASE)
    assert not (directory / "keystore.json").exists()


def test_a_second_opener_that_lists_after_the_first_made_a_key_opens_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second opener finds no header, then lists the directory only after the first
    has written its header and made its first key (``keys/``): the header there makes the
    directory a keystore, whatever else it holds by then."""
    directory = tmp_path / "ks"
    listdir = os.listdir
    first_done = False

    def first_opener_finishes_then_list(path: str) -> list[str]:
        nonlocal first_done
        if Path(path) == directory and not first_done:
            first_done = True
            first = SoftwareBackend.open(directory, PASSPHRASE)
            first.generate("k", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
            first.close()
        return listdir(path)

    monkeypatch.setattr(os, "listdir", first_opener_finishes_then_list)
    second = Keystore.open(directory, PASSPHRASE)
    assert first_done
    assert [handle.label for handle, _ in second.scan()] == ["k"]
