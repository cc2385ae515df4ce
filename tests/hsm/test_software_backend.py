"""Software backend specifics: the keystore's files, permissions, passphrase and sharing."""

from __future__ import annotations

import base64
import json
import multiprocessing
import os
import stat
import threading
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from hsm import keystore as keystore_module
from hsm import keystore_header
from hsm.base import KeyAlgorithm, KeyHandle, KeyUsage, PrivateKey
from hsm.errors import KeyNotFound, PermanentBackendError
from hsm.keystore import Keystore
from hsm.pinsource import PinSource
from hsm.policy import public_key_der
from hsm.software import SoftwareBackend

from .keycheck import certificate_for, verify
from .legacy_keystore import make_legacy

PASSPHRASE = "keystore passphrase for tests"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_keystore_files_are_private_and_hold_no_plain_key(tmp_path: Path) -> None:
    directory = tmp_path / "ks"
    backend = SoftwareBackend.open(directory, PASSPHRASE)
    key = backend.generate("gateway-sig", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    backend.store_certificate(key, certificate_for(key.public_key))
    label_dir = directory / "keys" / "gateway-sig"
    assert sorted(os.listdir(label_dir)) == ["1.cert.der", "1.json", "1.key.pem", "1.pub.pem"]
    for path in (directory, directory / "keys", label_dir):
        assert _mode(path) == 0o700, path
    for path in [directory / "keystore.json", *label_dir.iterdir()]:
        assert _mode(path) == 0o600, path
    meta = json.loads((label_dir / "1.json").read_text())
    # What the key may do, and a MAC of it (tests/hsm/test_keystore_metadata.py).
    assert len(base64.b64decode(meta.pop("mac"), validate=True)) == 32
    assert meta == {
        "format": 2,
        "label": "gateway-sig",
        "version": 1,
        "usage": "signature",
        "algorithm": "ec-p256",
        "kem": None,
    }
    pem = (label_dir / "1.key.pem").read_bytes()
    assert pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    # Neither the passphrase itself nor no password opens the PKCS#8 file: it is
    # encrypted under the scrypt-stretched passphrase.
    for password in (PASSPHRASE.encode(), None):
        with pytest.raises((ValueError, TypeError)):
            serialization.load_pem_private_key(pem, password)
    assert not [name for name in os.listdir(directory) if name.endswith(".tmp")]


def test_wrong_passphrase_is_permanent_and_not_echoed(tmp_path: Path) -> None:
    SoftwareBackend.open(tmp_path / "ks", PASSPHRASE).generate(
        "k", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256
    )
    with pytest.raises(PermanentBackendError, match="wrong passphrase for keystore") as caught:
        SoftwareBackend.open(tmp_path / "ks", "not the passphrase")
    assert "not the passphrase" not in str(caught.value)


def test_wrong_passphrase_detected_even_when_empty(tmp_path: Path) -> None:
    SoftwareBackend.open(tmp_path / "ks", PASSPHRASE)
    with pytest.raises(PermanentBackendError, match="wrong passphrase"):
        SoftwareBackend.open(tmp_path / "ks", "another")


def test_key_file_under_another_passphrase_fails_at_open(tmp_path: Path) -> None:
    # Two keystores, one key file moved across: the newest key is decrypted at open.
    SoftwareBackend.open(tmp_path / "a", PASSPHRASE).generate(
        "k", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256
    )
    other = SoftwareBackend.open(tmp_path / "b", "other passphrase")
    other.generate("k", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    other.close()
    source = tmp_path / "a" / "keys" / "k"
    target = tmp_path / "b" / "keys" / "k"
    (target / "1.key.pem").write_bytes((source / "1.key.pem").read_bytes())
    with pytest.raises(PermanentBackendError, match=r"cannot decrypt .*1\.key\.pem"):
        SoftwareBackend.open(tmp_path / "b", "other passphrase")
    # The whole entry moved across: its metadata's MAC is under the other passphrase.
    for name in ("1.pub.pem", "1.json"):
        (target / name).write_bytes((source / name).read_bytes())
    with pytest.raises(PermanentBackendError, match=r"1\.json: key 'k' v1 is damaged or altered"):
        SoftwareBackend.open(tmp_path / "b", "other passphrase")


def test_passphrase_from_file_source(tmp_path: Path) -> None:
    secret_file = tmp_path / "passphrase"
    secret_file.write_text(PASSPHRASE + "\n")
    secret_file.chmod(0o600)
    first = SoftwareBackend.open(tmp_path / "ks", PinSource("file", str(secret_file)))
    key = first.generate("k", KeyUsage.SIGNATURE, KeyAlgorithm.ED25519)
    # The trailing newline is not part of the passphrase.
    second = SoftwareBackend.open(tmp_path / "ks", PASSPHRASE)
    verify(key.public_key, second.sign(second.get("k"), b"m"), b"m")


def test_passphrase_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    secret_file = tmp_path / "passphrase"
    secret_file.write_text(PASSPHRASE)
    secret_file.chmod(0o644)
    with pytest.raises(PermanentBackendError, match="accessible to group or others"):
        SoftwareBackend.open(tmp_path / "ks", PinSource("file", str(secret_file)))


def test_missing_passphrase_env_is_permanent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SETPAY_TEST_NO_SUCH_VAR", raising=False)
    with pytest.raises(PermanentBackendError, match="SETPAY_TEST_NO_SUCH_VAR is not set"):
        SoftwareBackend.open(tmp_path / "ks", PinSource("env", "SETPAY_TEST_NO_SUCH_VAR"))


def test_keystore_directory_open_to_others_is_refused(tmp_path: Path) -> None:
    directory = tmp_path / "ks"
    directory.mkdir(mode=0o755)
    directory.chmod(0o755)
    with pytest.raises(PermanentBackendError, match="chmod 700"):
        SoftwareBackend.open(directory, PASSPHRASE)


def test_foreign_directory_is_not_taken_over(tmp_path: Path) -> None:
    directory = tmp_path / "ks"
    directory.mkdir(mode=0o700)
    (directory / "somebody-elses-file").write_text("x")
    with pytest.raises(PermanentBackendError, match="not a setpay keystore"):
        SoftwareBackend.open(directory, PASSPHRASE)


def test_corrupt_metadata_is_reported_with_its_file(tmp_path: Path) -> None:
    backend = SoftwareBackend.open(tmp_path / "ks", PASSPHRASE)
    backend.generate("k", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    (tmp_path / "ks" / "keys" / "k" / "1.json").write_text('{"format": 2, "label": "k"}')
    with pytest.raises(PermanentBackendError, match=r"corrupt keystore entry .*1\.json"):
        backend.list_keys()


def test_swapped_key_file_is_named_not_taken_for_a_key_made_again(tmp_path: Path) -> None:
    # A restore gone wrong: another key's file copied over sig's. Its entry was not
    # deleted and made again (its JSON file is untouched), so "get the key again" would
    # be said for ever; the entry is damaged, and named.
    directory = tmp_path / "ks"
    backend = SoftwareBackend.open(directory, PASSPHRASE)
    sig = backend.generate("sig", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    backend.generate("kex", KeyUsage.KEY_EXCHANGE, KeyAlgorithm.EC_P256)
    backend.generate("zzz", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    backend.close()
    damaged = directory / "keys" / "sig" / "1.key.pem"
    damaged.write_bytes((directory / "keys" / "kex" / "1.key.pem").read_bytes())
    refusal = rf"keystore entry {damaged}: key file does not hold the key of 1\.pub\.pem"
    reopened = SoftwareBackend.open(directory, PASSPHRASE)  # decrypts the newest: zzz v1
    for _ in range(2):
        with pytest.raises(PermanentBackendError, match=refusal + r" \(damaged or swapped\)"):
            reopened.sign(reopened.get("sig"), b"data")
    reopened.delete("zzz")
    with pytest.raises(PermanentBackendError, match=refusal):
        SoftwareBackend.open(directory, PASSPHRASE)  # now the newest: sig v1, by label
    # A version really made again elsewhere is still told apart: its stamp changed.
    reopened.generate("zzz", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    elsewhere = SoftwareBackend.open(directory, PASSPHRASE)
    elsewhere.delete("sig")
    elsewhere.generate("sig", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    with pytest.raises(KeyNotFound):
        reopened.sign(sig, b"data")
    verify(reopened.get("sig").public_key, reopened.sign(reopened.get("sig"), b"data"), b"data")


def test_half_written_version_is_invisible(tmp_path: Path) -> None:
    backend = SoftwareBackend.open(tmp_path / "ks", PASSPHRASE)
    backend.generate("k", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    label_dir = tmp_path / "ks" / "keys" / "k"
    # A crash after the key file but before the metadata (the commit point).
    (label_dir / "2.key.pem").write_bytes((label_dir / "1.key.pem").read_bytes())
    assert [(k.label, k.version) for k in backend.list_keys()] == [("k", 1)]
    assert backend.generate("k", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256).version == 2


def test_stray_entries_under_keys_are_not_keys(tmp_path: Path) -> None:
    backend = SoftwareBackend.open(tmp_path / "ks", PASSPHRASE)
    backend.generate("k", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    keys_dir = tmp_path / "ks" / "keys"
    # An editor's backup, a note, a link: label-shaped names that are not directories.
    (keys_dir / "notes").write_text("rotate k in March\n")
    (keys_dir / "k2").symlink_to(keys_dir / "k" / "1.json")
    (keys_dir / "elsewhere").symlink_to(tmp_path, target_is_directory=True)
    reopened = SoftwareBackend.open(tmp_path / "ks", PASSPHRASE)
    assert [(k.label, k.version) for k in reopened.list_keys()] == [("k", 1)]
    assert reopened.generate("k", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256).version == 2


def test_concurrent_writers_claim_distinct_versions(tmp_path: Path) -> None:
    directory = tmp_path / "ks"
    backends = [SoftwareBackend.open(directory, PASSPHRASE) for _ in range(4)]
    versions: list[int] = []
    lock = threading.Lock()

    def writer(backend: SoftwareBackend) -> None:
        for _ in range(5):
            made = backend.generate("contended", KeyUsage.SIGNATURE, KeyAlgorithm.ED25519)
            with lock:
                versions.append(made.version)

    threads = [threading.Thread(target=writer, args=(b,)) for b in backends]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(versions) == list(range(1, 21))
    reader = SoftwareBackend.open(directory, PASSPHRASE)
    assert [k.version for k in reader.list_keys()] == list(range(1, 21))


def test_deleted_elsewhere_disappears_on_list(tmp_path: Path) -> None:
    first = SoftwareBackend.open(tmp_path / "ks", PASSPHRASE)
    second = SoftwareBackend.open(tmp_path / "ks", PASSPHRASE)
    first.generate("k", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    assert [k.label for k in second.list_keys()] == ["k"]
    first.delete("k")
    assert second.list_keys() == []
    assert not (tmp_path / "ks" / "keys" / "k").exists()


def _make_again_in_child(directory: Path, results: Any) -> None:
    """Another process: delete every version of 'k' and generate it again."""
    try:
        other = SoftwareBackend.open(directory, PASSPHRASE)
        other.delete("k")
        made = other.generate("k", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
        results.put(public_key_der(made.public_key))
    except BaseException as exc:
        results.put(f"{type(exc).__name__}: {exc}")


def test_key_made_again_by_another_process_is_not_signed_with_from_the_cache(
    tmp_path: Path,
) -> None:
    backend = SoftwareBackend.open(tmp_path / "ks", PASSPHRASE)
    old = backend.generate("k", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    backend.sign(old, b"cached")  # the decrypted key is in this process's memory
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    child = context.Process(target=_make_again_in_child, args=(tmp_path / "ks", results))
    child.start()
    made = results.get(timeout=60)
    child.join(timeout=60)
    assert isinstance(made, bytes), made
    # The old key's files are gone: signing with it from memory would use a key its
    # owner deleted, under a label and version that now name another key.
    with pytest.raises(KeyNotFound, match="'k' v1 was deleted and made again"):
        backend.sign(old, b"after")
    new = backend.get("k")
    assert public_key_der(new.public_key) == made
    verify(new.public_key, backend.sign(new, b"after"), b"after")


def test_a_key_made_again_while_it_is_first_loaded_is_not_used_for_the_old_handle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reader = SoftwareBackend.open(tmp_path / "ks", PASSPHRASE)
    writer = SoftwareBackend.open(tmp_path / "ks", PASSPHRASE)
    writer.generate("k", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    old = reader.get("k")  # read, never used: the private key is not loaded yet
    load = Keystore.load_private

    def raced(keystore: Keystore, key: KeyHandle) -> PrivateKey:
        # Another process deletes the label and makes it again after the reader checked
        # the version's file and before it reads the key file.
        monkeypatch.undo()
        writer.delete("k")
        writer.generate("k", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
        return load(keystore, key)

    monkeypatch.setattr(Keystore, "load_private", raced)
    with pytest.raises(KeyNotFound, match="'k' v1 was deleted and made again"):
        reader.sign(old, b"data")


def test_a_version_deleted_while_the_keystore_is_read_is_left_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = SoftwareBackend.open(tmp_path / "ks", PASSPHRASE)
    other = SoftwareBackend.open(tmp_path / "ks", PASSPHRASE)
    backend.generate("a", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    backend.generate("b", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    read = keystore_module._read_small

    def deleted_meanwhile(path: Path) -> bytes:
        if path.parent.name == "a":
            # Another process deletes 'a' after it was listed, before it is read.
            monkeypatch.setattr(keystore_module, "_read_small", read)
            other.delete("a")
        return read(path)

    monkeypatch.setattr(keystore_module, "_read_small", deleted_meanwhile)
    # Not "cannot read keystore file": a deleted version is no damage.
    assert [k.label for k in backend.list_keys()] == ["b"]


def test_keystore_scrypt_parameters_are_bounded(tmp_path: Path) -> None:
    SoftwareBackend.open(tmp_path / "ks", PASSPHRASE)
    header_path = tmp_path / "ks" / "keystore.json"
    header = json.loads(header_path.read_text())
    header["kdf"]["n"] = 2**30  # a tampered header asking for 128 GiB per open
    header_path.write_text(json.dumps(header))
    with pytest.raises(PermanentBackendError, match="scrypt parameters out of range"):
        Keystore.open(tmp_path / "ks", PASSPHRASE)


class _ScryptRan(Exception):
    """Raised by the stand-in scrypt: the header's settings got past the bounds."""


@pytest.mark.parametrize(
    ("n", "r", "allowed"),
    [
        (2**20, 8, True),  # 128 x 8 x 2^20 = 1 GiB, the bound itself
        (2**17, 64, False),  # r above 16
        (2**20, 16, False),  # 2 GiB: n and r each in range, their product is not
        (2**19, 32, False),
        (2**20, 9, False),
    ],
)
def test_keystore_scrypt_memory_is_bounded_at_one_gib(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, n: int, r: int, allowed: bool
) -> None:
    SoftwareBackend.open(tmp_path / "ks", PASSPHRASE)
    header_path, header = _header(tmp_path)
    header["kdf"]["n"], header["kdf"]["r"] = n, r
    header_path.write_text(json.dumps(header))
    ran: list[tuple[int, int]] = []

    def scrypt(**kwargs: Any) -> None:
        # Stands in for the real KDF: a header past the bound must never get this far.
        ran.append((kwargs["n"], kwargs["r"]))
        raise _ScryptRan

    monkeypatch.setattr(keystore_header, "Scrypt", scrypt)
    if allowed:
        with pytest.raises(_ScryptRan):
            Keystore.open(tmp_path / "ks", PASSPHRASE)
        assert ran == [(n, r)]
    else:
        with pytest.raises(PermanentBackendError, match="scrypt parameters out of range"):
            Keystore.open(tmp_path / "ks", PASSPHRASE)
        assert ran == []


def _header(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    path = tmp_path / "ks" / "keystore.json"
    return path, json.loads(path.read_text())


def test_a_new_header_is_base64_so_it_never_looks_like_a_card_number(tmp_path: Path) -> None:
    # In hex, about one header in 160 held a Luhn-valid 13-19 digit run, which PAN
    # scanners (the demo's) reported as a card number in keystore.json.
    SoftwareBackend.open(tmp_path / "ks", PASSPHRASE)
    _, header = _header(tmp_path)
    assert header["format"] == 3
    assert len(base64.b64decode(header["kdf"]["salt"], validate=True)) == 16
    assert len(base64.b64decode(header["check"], validate=True)) == 32


def test_a_format_1_header_in_hex_is_still_read_by_the_upgrade(tmp_path: Path) -> None:
    backend = SoftwareBackend.open(tmp_path / "ks", PASSPHRASE)
    backend.generate("k", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    # The keystore exactly as the format-1 code wrote it (header in hex).
    make_legacy(tmp_path / "ks", PASSPHRASE, header_format=1)
    with pytest.raises(PermanentBackendError, match="written by an earlier setpay"):
        SoftwareBackend.open(tmp_path / "ks", PASSPHRASE)
    with pytest.raises(PermanentBackendError, match="wrong passphrase"):
        Keystore.upgrade(tmp_path / "ks", "not the passphrase", lambda plan: None)
    Keystore.upgrade(tmp_path / "ks", PASSPHRASE, lambda plan: None)
    reopened = SoftwareBackend.open(tmp_path / "ks", PASSPHRASE)
    assert [k.label for k in reopened.list_keys()] == ["k"]
    with pytest.raises(PermanentBackendError, match="wrong passphrase"):
        Keystore.open(tmp_path / "ks", "not the passphrase")


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("check", "not base64!", "corrupt keystore header"),
        ("format", 4, "unknown format"),
        # Not a number at all: refused, not a TypeError from hashing it.
        ("format", [3], "corrupt keystore header|unknown format"),
        ("format", {"v": 3}, "corrupt keystore header|unknown format"),
    ],
)
def test_a_damaged_header_is_refused(tmp_path: Path, field: str, value: object, error: str) -> None:
    SoftwareBackend.open(tmp_path / "ks", PASSPHRASE)
    path, header = _header(tmp_path)
    header[field] = value
    path.write_text(json.dumps(header))
    with pytest.raises(PermanentBackendError, match=error):
        Keystore.open(tmp_path / "ks", PASSPHRASE)


def test_ephemeral_keys_are_not_shared(tmp_path: Path) -> None:
    first = SoftwareBackend.ephemeral()
    first.generate("k", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    assert SoftwareBackend.ephemeral().list_keys() == []
