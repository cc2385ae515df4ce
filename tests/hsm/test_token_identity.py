"""One token, however a key URI names it: one set of locks, one key per version.

Processes naming a token by label, by serial, or by both used to take different key
locks, so each claimed "the next version" of a label at once and two keys ended up
claiming one (label, version); the one the token listed last took the version's place,
a handle of the other was told its key "was deleted and made again", and deleting the
version destroyed both. The locks now follow the token's serial (``hsm.token_login``'s
"Lock names"), and a version two keys claim (left by processes given different lock
directories, or by older setpay) is refused by name, used and destroyed by nobody.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import shutil
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from pkcs11 import ObjectClass

from hsm import token_claims
from hsm.base import KeyAlgorithm, KeyUsage
from hsm.errors import KeyNotFound, PermanentBackendError, TransientBackendError
from hsm.filelock import exclusive_lock
from hsm.pkcs11 import Pkcs11Backend, Pkcs11Config
from hsm.token_catalog import KEY_CLASSES, objects
from hsm.token_session import TokenSession

from .claims_support import claim_again
from .keycheck import verify
from .pin_file_support import CHILD_SECONDS, open_in_child, write_pin
from .testbed import DATA, SO_PIN, CountingPinSource, SoftHsm, SoftToken, run_tool

# Versions each racing process makes: enough that processes holding different locks
# claimed one version together in every run seen (first within two or three).
VERSIONS_EACH = 4

# Long enough for a key creation that does not wait for the lock to have ended.
HELD_SECONDS = 0.5


def _by_serial(token: SoftToken) -> Pkcs11Config:
    return replace(token.config(), token_label=None, token_serial=token.serial)


def _by_both(token: SoftToken) -> Pkcs11Config:
    return replace(token.config(), token_serial=token.serial)


def _make_versions(
    config: Pkcs11Config, label: str, start: Any, results: Any
) -> None:  # pragma: no cover - runs in a child process
    """A worker: open the token, wait for the others, make key versions of ``label``; put
    the versions made and the error that stopped it (or None) on ``results``."""
    versions: list[int] = []
    try:
        backend = Pkcs11Backend(config)
        try:
            start.wait(CHILD_SECONDS)
            for _ in range(VERSIONS_EACH):
                versions.append(
                    backend.generate(label, KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256).version
                )
        finally:
            backend.close()
    except BaseException as exc:
        results.put((versions, f"{type(exc).__name__}: {exc}"))
        return
    results.put((versions, None))


@pytest.mark.integration
def test_processes_naming_one_token_differently_make_distinct_versions(
    token: SoftToken, pkcs11_backend: Pkcs11Backend
) -> None:
    configs = [token.config(), _by_serial(token), _by_both(token)]
    context = multiprocessing.get_context("fork")
    start, results = context.Barrier(len(configs)), context.Queue()
    children = [
        context.Process(target=_make_versions, args=(config, "race", start, results))
        for config in configs
    ]
    for child in children:
        child.start()
    try:
        answers = [results.get(timeout=CHILD_SECONDS) for _ in children]
    finally:
        for child in children:
            child.join(timeout=CHILD_SECONDS)
    made = sorted(version for versions, _ in answers for version in versions)
    # Every version claimed by one key: none claimed twice (the race's first sign), and
    # no creation tripped over another's half-made objects (its second).
    assert len(set(made)) == len(made), f"versions claimed twice: {made}"
    assert [error for _, error in answers] == [None] * len(configs)
    assert made == list(range(1, 1 + VERSIONS_EACH * len(configs)))
    listed = [key for key in pkcs11_backend.list_keys() if key.label == "race"]
    assert sorted(key.version for key in listed) == made
    assert len({pkcs11_backend.object_id(key) for key in listed}) == len(made)


@pytest.mark.integration
def test_a_key_lock_taken_by_label_holds_back_a_creation_by_serial(
    token: SoftToken, pkcs11_backend: Pkcs11Backend
) -> None:
    by_serial = Pkcs11Backend(_by_serial(token))
    made: list[int] = []
    creation = threading.Thread(
        target=lambda: made.append(
            by_serial.generate("k", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256).version
        )
    )
    try:
        with pkcs11_backend._link.admin_lock():  # a creation by label claiming a version
            creation.start()
            creation.join(timeout=HELD_SECONDS)
            assert creation.is_alive() and made == []  # waits for the same lock
        creation.join(timeout=CHILD_SECONDS)
        assert made == [1]
    finally:
        creation.join(timeout=CHILD_SECONDS)
        by_serial.close()


@pytest.mark.integration
def test_a_key_lock_of_one_token_holds_back_nothing_on_another(
    softhsm: SoftHsm, pkcs11_backend: Pkcs11Backend
) -> None:
    other = softhsm.init_token()
    try:
        elsewhere = Pkcs11Backend(_by_serial(other))
        try:
            with pkcs11_backend._link.admin_lock():
                # Made while the first token's lock is held (were it this token's too,
                # the creation would wait for it, then fail as it timed out).
                key = elsewhere.generate("k", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
                assert key.version == 1
        finally:
            elsewhere.close()
    finally:
        shutil.rmtree(other.directory, ignore_errors=True)


@pytest.mark.integration
@pytest.mark.parametrize("first, then", [("label", "serial"), ("serial", "label")])
def test_a_pin_file_refused_under_one_name_is_not_offered_under_another(
    token: SoftToken, tmp_path: Path, first: str, then: str
) -> None:
    pin_file = tmp_path / "token.pin"
    write_pin(pin_file, "wrong-pin-000")
    named = {"label": token.config(), "serial": _by_serial(token)}
    refused = replace(named[first], pin_source=CountingPinSource("file", str(pin_file)))
    with pytest.raises(PermanentBackendError, match=r"login refused \(PinIncorrect\)"):
        Pkcs11Backend(refused)
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    fresh = replace(named[then], pin_source=CountingPinSource("file", str(pin_file)))
    child = context.Process(target=open_in_child, args=(fresh, results))
    child.start()
    reads, outcome = results.get(timeout=CHILD_SECONDS)
    child.join(timeout=CHILD_SECONDS)
    assert "login refused (PinIncorrect)" in outcome
    assert reads == 0  # the record the first login left: no C_Login with that PIN


def _private_keys(backend: Pkcs11Backend, *ck_ids: bytes) -> int:
    def count(session: TokenSession) -> int:
        return len(objects(session, (ObjectClass.PRIVATE_KEY,), set(ck_ids)))

    return backend._link.run(count, "count keys")


@pytest.mark.integration
def test_a_version_two_keys_claim_is_refused_by_name(pkcs11_backend: Pkcs11Backend) -> None:
    backend = pkcs11_backend
    first = backend.generate("dup", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    first_id, second_id = backend.object_id(first), bytes.fromhex("5ec0dd" * 5 + "00")
    claim_again(backend, "dup", 1, second_id)
    expected = (
        r"key 'dup' v1 on token '[^']+' is claimed by 2 keys \(CKA_IDs starting "
        rf"({first_id.hex()[:8]} and {second_id.hex()[:8]}|"
        rf"{second_id.hex()[:8]} and {first_id.hex()[:8]})\)"
    )
    # Seen when the catalog reads the token again (made by another process, the claim
    # would be seen on its next listing, change or miss, as any change is).
    assert [key.label for key in backend.list_keys()] == []
    for refused in (
        lambda: backend.get("dup", 1),
        lambda: backend.get("dup"),  # the newest is that version
        lambda: backend.sign(first, DATA),  # not "deleted and made again"
        lambda: backend.delete("dup", 1),
        lambda: backend.delete("dup"),
        lambda: Pkcs11Backend(backend._link.config).get("dup", 1),  # the token still opens
    ):
        with pytest.raises(PermanentBackendError, match=expected):
            refused()
    assert _private_keys(backend, first_id, second_id) == 2  # neither destroyed
    # New versions go above it and are used; only the claimed version is refused.
    newer = backend.generate("dup", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    assert newer.version == 2
    assert backend.get("dup") == newer
    verify(newer.public_key, backend.sign(newer, DATA), DATA)
    assert [(key.label, key.version) for key in backend.list_keys()] == [("dup", 2)]


@pytest.mark.integration
def test_other_versions_of_the_label_are_still_deleted_one_by_one(
    pkcs11_backend: Pkcs11Backend,
) -> None:
    backend = pkcs11_backend
    first = backend.generate("dup", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    newer = backend.generate("dup", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    first_id, newer_id, second_id = backend.object_id(first), backend.object_id(newer), bytes(16)
    claim_again(backend, "dup", 1, second_id)
    backend.delete("dup", 2)  # not the version two keys claim: destroyed as asked
    with pytest.raises(KeyNotFound):
        backend.get("dup", 2)
    assert _private_keys(backend, newer_id) == 0
    assert _private_keys(backend, first_id, second_id) == 2
    with pytest.raises(PermanentBackendError, match="claimed by 2 keys"):
        backend.get("dup", 1)


@pytest.mark.integration
def test_removing_one_of_the_two_keys_by_its_id_gives_the_version_to_the_other(
    pkcs11_backend: Pkcs11Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(token_claims, "REREAD_SECONDS", 0.2)
    backend = pkcs11_backend
    first = backend.generate("dup", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    first_id, second_id = backend.object_id(first), bytes(range(16))
    kept = claim_again(backend, "dup", 1, second_id)
    assert backend.list_keys() == []
    with pytest.raises(PermanentBackendError):
        backend.get("dup", 1)

    def remove(session: TokenSession) -> None:  # as the operator does with pkcs11-tool
        for obj in objects(session, KEY_CLASSES, {first_id}):
            obj.destroy()

    backend._link.run(remove, "remove a key", retry=False)
    with pytest.raises(PermanentBackendError):
        backend.get("dup", 1)  # answered from memory, without reading the token again
    time.sleep(0.3)
    found = backend.get("dup", 1)  # then read again: no listing needed
    assert backend.object_id(found) == second_id != first_id
    verify(kept.public_key(), backend.sign(found, DATA), DATA)


def _made_again(softhsm: SoftHsm, token: SoftToken) -> str:
    """Re-initialize ``token`` under its label, as an operator would (its objects go, and
    SoftHSM gives it a new serial); the new token's directory name."""
    shutil.rmtree(token.directory)
    before = set(os.listdir(softhsm.tokens))
    run_tool(
        "softhsm2-util", "--init-token", "--free", "--label", token.label,
        "--so-pin", SO_PIN, "--pin", token.pin,
    )  # fmt: skip
    (created,) = set(os.listdir(softhsm.tokens)) - before
    return created


def _hold_key_lock(
    config: Pkcs11Config, held: Any, release: Any
) -> None:  # pragma: no cover - runs in a child process
    """A worker: hold the key lock of the token ``config`` names until ``release``."""
    backend = Pkcs11Backend(config)
    try:
        with backend._link.admin_lock():
            held.set()
            release.wait(CHILD_SECONDS)
    finally:
        backend.close()


@pytest.mark.integration
@pytest.mark.parametrize("holder", ["this process", "another process"])
def test_a_label_made_again_under_a_running_process_is_claimed_under_the_new_key_lock(
    softhsm: SoftHsm, token: SoftToken, holder: str
) -> None:
    by_label = Pkcs11Backend(token.config())
    created = _made_again(softhsm, token)
    serial = created.replace("-", "")[-16:]  # SoftHSM's: see testbed
    new_token = replace(token.config(), token_label=None, token_serial=serial)
    # Opened in this process, the module restarts (by_label's sessions end with it);
    # in another, by_label's sessions last, and only the token's absence tells.
    context = multiprocessing.get_context("fork")
    held, release = context.Event(), context.Event()
    child = context.Process(target=_hold_key_lock, args=(new_token, held, release))
    by_serial = Pkcs11Backend(new_token) if holder == "this process" else None
    made: list[int] = []
    creation = threading.Thread(
        target=lambda: made.append(
            by_label.generate("k", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256).version
        )
    )
    try:
        with by_serial._link.admin_lock() if by_serial else contextlib.nullcontext():
            if by_serial is None:
                child.start()
                assert held.wait(CHILD_SECONDS)
            creation.start()  # claiming a version while the new token's key lock is held
            creation.join(timeout=HELD_SECONDS)
            # Not under the lock its label named before the token was made again.
            assert creation.is_alive() and made == []
            release.set()
        creation.join(timeout=CHILD_SECONDS)
        assert made == [1]
        check = by_serial or Pkcs11Backend(new_token)
        try:
            assert check.get("k").version == 1  # on the new token
        finally:
            check.close()
    finally:
        release.set()
        creation.join(timeout=CHILD_SECONDS)
        if child.pid is not None:
            child.join(timeout=CHILD_SECONDS)
        by_label.close()
        if by_serial is not None:
            by_serial.close()
        shutil.rmtree(softhsm.tokens / created, ignore_errors=True)


@pytest.mark.integration
def test_no_token_call_is_made_under_a_key_lock_another_token_took_the_place_of(
    softhsm: SoftHsm, token: SoftToken
) -> None:
    backend = Pkcs11Backend(token.config())
    created = ""
    ran: list[str] = []
    try:
        with backend._link.admin_lock():
            created = _made_again(softhsm, token)
            # Reconnecting finds the new token under the label: its locks are not held.
            with pytest.raises(TransientBackendError, match="another token than when its key"):
                backend.list_keys()
            with pytest.raises(TransientBackendError, match="another token than when its key"):
                backend._link.run(lambda session: ran.append("ran"), "claim a version")
            assert ran == []
        # Taken again, the key lock is the new token's, and calls under it run.
        with backend._link.admin_lock():
            backend._link.run(lambda session: ran.append("ran"), "claim a version")
        assert ran == ["ran"]
    finally:
        backend.close()
        if created:
            shutil.rmtree(softhsm.tokens / created, ignore_errors=True)


@pytest.mark.integration
def test_a_key_lock_renamed_while_waited_for_is_taken_under_its_new_name(
    softhsm: SoftHsm, token: SoftToken
) -> None:
    by_label = Pkcs11Backend(token.config())
    made: list[int] = []
    creation = threading.Thread(
        target=lambda: made.append(
            by_label.generate("k", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256).version
        )
    )
    created, by_serial = "", None
    try:
        with contextlib.ExitStack() as new_token_claim:
            # Another process claiming a version of the token as it was: the creation
            # waits for that lock, named after the token's old serial.
            with exclusive_lock(f"{by_label._link._locks.stem}.keys.lock", CHILD_SECONDS):
                creation.start()
                creation.join(timeout=HELD_SECONDS)
                assert creation.is_alive()
                created = _made_again(softhsm, token)
                assert by_label.list_keys() == []  # reconnected: the new token's locks now
                serial = created.replace("-", "")[-16:]  # SoftHSM's: see testbed
                new_token = replace(token.config(), token_label=None, token_serial=serial)
                by_serial = Pkcs11Backend(new_token)
                new_token_claim.enter_context(by_serial._link.admin_lock())
            # The old lock is free, but the token is another: its key lock is waited for.
            creation.join(timeout=HELD_SECONDS)
            assert creation.is_alive() and made == []
        creation.join(timeout=CHILD_SECONDS)
        assert made == [1]
        assert by_serial.get("k").version == 1
    finally:
        creation.join(timeout=CHILD_SECONDS)
        by_label.close()
        if by_serial is not None:
            by_serial.close()
        if created:
            shutil.rmtree(softhsm.tokens / created, ignore_errors=True)
