"""Reconnecting to a token without hurting it or its neighbours.

A real HSM locks its user PIN after a few wrong tries, and a module restart logs out
every backend of the process: these tests count logins, PIN reads and restarts while a
token goes away, comes back with a wrong PIN, or stays away.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from pkcs11 import exceptions as p11

from hsm.base import KeyAlgorithm, KeyUsage
from hsm.cryptoki import cryptoki
from hsm.errors import KeyBackendError, PermanentBackendError, TransientBackendError
from hsm.pinsource import PinSource
from hsm.pkcs11 import Pkcs11Backend
from hsm.token_catalog import TokenCatalog
from hsm.token_connect import TokenConnect
from hsm.token_objects import TokenKey
from hsm.token_session import ABSENT_RESCAN_SECONDS, TokenSession

from .keycheck import verify
from .pin_file_support import open_in_child, refusal_records_naming, write_pin
from .testbed import DATA, SOFTHSM_MODULE, CountingPinSource, SoftHsm, SoftToken


class _SessionInfo(ctypes.Structure):
    _fields_ = [(name, ctypes.c_ulong) for name in ("slot", "state", "flags", "error")]


def _open_sessions(label: str) -> int:
    """Sessions this process has open on the token, found by asking SoftHSM each handle.

    SoftHSM numbers sessions from 1 after each C_Initialize; a probe session opened now
    gets the highest handle so far, which bounds the search.
    """
    module = cryptoki(SOFTHSM_MODULE)
    with module.lock:
        token = module.library().get_token(token_label=label)
        probe = token.open()
        highest = probe.handle
        probe.close()
        softhsm = ctypes.CDLL(SOFTHSM_MODULE)
        count = 0
        for handle in range(1, highest):
            info = _SessionInfo()
            if softhsm.C_GetSessionInfo(ctypes.c_ulong(handle), ctypes.byref(info)) == 0:
                count += info.slot == token.slot.slot_id
        return count


@pytest.mark.integration
def test_refused_pin_is_not_tried_again_until_the_pin_source_changes(
    token: SoftToken, tmp_path: Path
) -> None:
    events: list[tuple[str, str | None]] = []
    source = CountingPinSource("file", str(token.pin_file))
    backend = Pkcs11Backend(
        replace(token.config(), pin_source=source),
        lambda op, _a, _s, error: events.append((op, error)),
    )
    try:
        key = backend.generate("k", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
        backend.sign(key, DATA)
        # The token goes away; while it is away its PIN changes (or the file is broken).
        token.directory.rename(tmp_path / "away")
        with pytest.raises(TransientBackendError):
            backend.sign(key, DATA)
        write_pin(token.pin_file, "wrong-pin-000")
        (tmp_path / "away").rename(token.directory)
        time.sleep(ABSENT_RESCAN_SECONDS)  # until the backend looks for the token again
        reads, events_before = len(source.reads), len(events)
        for _ in range(10):
            with pytest.raises(PermanentBackendError, match=r"login refused \(PinIncorrect\)"):
                backend.sign(key, DATA)
        for _ in range(3):
            with pytest.raises(PermanentBackendError, match=r"login refused \(PinIncorrect\)"):
                backend.check_health()
        assert len(source.reads) - reads == 1
        logins = [e for e in events[events_before:] if e[0] in ("login", "relogin")]
        assert logins == [("relogin", "PermanentBackendError")]
        # The operator fixes the PIN file: the next call logs in with it.
        write_pin(token.pin_file, token.pin)
        backend.sign(key, DATA)
        backend.check_health()
        assert len(source.reads) - reads == 2
    finally:
        backend.close()


@pytest.mark.integration
def test_refused_pin_from_the_environment_waits_for_a_new_value(
    token: SoftToken, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SETPAY_TEST_TOKEN_PIN", token.pin)
    source = CountingPinSource("env", "SETPAY_TEST_TOKEN_PIN")
    backend = Pkcs11Backend(replace(token.config(), pin_source=source))
    try:
        key = backend.generate("k", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
        token.directory.rename(tmp_path / "away")
        with pytest.raises(TransientBackendError):
            backend.sign(key, DATA)
        monkeypatch.setenv("SETPAY_TEST_TOKEN_PIN", "wrong-pin-000")
        (tmp_path / "away").rename(token.directory)
        time.sleep(ABSENT_RESCAN_SECONDS)  # until the backend looks for the token again
        reads = len(source.reads)
        for _ in range(5):
            with pytest.raises(PermanentBackendError, match="PinIncorrect") as caught:
                backend.sign(key, DATA)
            assert "wrong-pin-000" not in str(caught.value)
        assert len(source.reads) - reads == 1
        monkeypatch.setenv("SETPAY_TEST_TOKEN_PIN", token.pin)
        backend.sign(key, DATA)
    finally:
        backend.close()


@pytest.mark.integration
def test_pin_file_refused_in_one_process_is_not_offered_by_the_next(
    token: SoftToken, tmp_path: Path
) -> None:
    # A gateway's workers start together, and a restarted one comes later: each would
    # offer the refused PIN once more, and a real HSM locks the PIN after a few.
    pin_file = tmp_path / "token.pin"
    write_pin(pin_file, "wrong-pin-000")
    config = replace(token.config(), pin_source=CountingPinSource("file", str(pin_file)))
    with pytest.raises(PermanentBackendError, match=r"login refused \(PinIncorrect\)"):
        Pkcs11Backend(config)
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    for _ in range(2):
        child = context.Process(
            target=open_in_child,
            args=(replace(config, pin_source=CountingPinSource("file", str(pin_file))), results),
        )
        child.start()
        reads, outcome = results.get(timeout=60)
        child.join(timeout=60)
        assert outcome.startswith("PermanentBackendError: ")
        assert "login refused (PinIncorrect)" in outcome and "wrong-pin-000" not in outcome
        assert reads == 0  # refused without reading the PIN, so without a C_Login
    # The operator fixes the file: the next process logs in, and clears the record.
    write_pin(pin_file, token.pin)
    fixed = replace(config, pin_source=CountingPinSource("file", str(pin_file)))
    child = context.Process(target=open_in_child, args=(fixed, results))
    child.start()
    assert results.get(timeout=60) == (1, "opened")
    child.join(timeout=60)
    assert refusal_records_naming(token, pin_file) == []


@pytest.mark.integration
def test_refused_login_leaves_no_session_open(token: SoftToken, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.pin"
    write_pin(wrong, "wrong-pin-000")
    with pytest.raises(PermanentBackendError, match="PinIncorrect"):
        Pkcs11Backend(replace(token.config(), pin_source=PinSource("file", str(wrong))))
    assert _open_sessions(token.label) == 0


@pytest.mark.integration
def test_failing_catalogue_scan_closes_the_new_backends_sessions(
    token: SoftToken, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The constructor logs in, then reads the catalogue: a backend that never comes back
    # to its caller cannot be closed by it, so it must not leave its login behind.
    def failing_scan(self: TokenCatalog, session: TokenSession) -> list[TokenKey]:
        raise p11.DeviceMemory()

    monkeypatch.setattr(TokenCatalog, "scan", failing_scan)
    with pytest.raises(KeyBackendError, match="list keys"):
        Pkcs11Backend(token.config())
    assert _open_sessions(token.label) == 0
    monkeypatch.undo()
    backend = Pkcs11Backend(token.config())  # the token is usable after the failure
    try:
        assert backend.list_keys() == []
    finally:
        backend.close()
    assert _open_sessions(token.label) == 0


class _TokenWithoutMechanisms:
    """A real token whose mechanism list cannot be read: a fault just after login."""

    def __init__(self, token: Any) -> None:
        self._token = token
        self.slot = self

    def open(self, **kwargs: Any) -> Any:
        return self._token.open(**kwargs)

    def get_mechanisms(self) -> Any:
        raise p11.DeviceError()


@pytest.mark.integration
def test_failure_right_after_login_closes_the_login_session(
    token: SoftToken, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Rescan first: a slot whose token an earlier test removed answers the probe in
    # _open_sessions with CKR_GENERAL_ERROR (the failed login here makes no rescan).
    module = cryptoki(SOFTHSM_MODULE)
    with module.lock:
        module.reinitialize()
    found = TokenConnect._find_token
    monkeypatch.setattr(
        TokenConnect,
        "_find_token",
        lambda login, library: _TokenWithoutMechanisms(found(login, library)),
    )
    with pytest.raises(KeyBackendError):
        Pkcs11Backend(replace(token.config(), login_attempts=1))
    assert _open_sessions(token.label) == 0


def _log_process_out(label: str) -> None:
    """C_Logout from outside the backend: the whole process loses its login on the token."""
    module = cryptoki(SOFTHSM_MODULE)
    with module.lock:
        session = module.library().get_token(token_label=label).open()
        assert ctypes.CDLL(SOFTHSM_MODULE).C_Logout(ctypes.c_ulong(session.handle)) == 0
        session.close()


@pytest.mark.integration
def test_dropped_login_is_restored_on_the_next_call(token: SoftToken) -> None:
    events: list[tuple[str, str | None]] = []
    backend = Pkcs11Backend(token.config(), lambda op, _a, _s, error: events.append((op, error)))
    try:
        key = backend.generate("k", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
        backend.sign(key, DATA)  # the key's handle is cached
        _log_process_out(token.label)
        # The cached handle is dead and the key invisible: logged out, not deleted.
        backend.sign(key, DATA)
        assert ("relogin", None) in events
        assert backend.list_keys() == [key]
    finally:
        backend.close()


@pytest.mark.integration
def test_closing_one_backend_keeps_the_other_logged_in(token: SoftToken) -> None:
    events: list[tuple[str, str | None]] = []
    first = Pkcs11Backend(token.config())
    second = Pkcs11Backend(token.config(), lambda op, _a, _s, error: events.append((op, error)))
    try:
        key = first.generate("k", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
        second.sign(second.get("k"), DATA)
        first.close()  # closes its sessions only: no C_Logout for the whole process
        second.sign(second.get("k"), DATA)
        assert [op for op, _ in events] == ["login", "sign", "sign"]
        assert second.get("k").public_key == key.public_key
    finally:
        second.close()


def _wait_for(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


@pytest.mark.integration
def test_closing_while_a_call_holds_a_session_leaves_no_session_open(token: SoftToken) -> None:
    backend = Pkcs11Backend(token.config())
    key = backend.generate("k", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    backend.sign(key, DATA)  # a working session now waits idle in the pool
    module = cryptoki(SOFTHSM_MODULE)
    errors: list[BaseException] = []

    def sign() -> None:
        try:
            backend.sign(key, DATA)
        except BaseException as exc:
            errors.append(exc)

    # A call in another thread has leased that session and waits for the module (held
    # here, as by a slow token call) when the backend is closed.
    with module.lock:
        caller = threading.Thread(target=sign)
        caller.start()
        _wait_for(lambda: backend.pool_stats.in_use == 1)
        backend.close()
    caller.join(timeout=30)
    assert [type(error) for error in errors] == [PermanentBackendError]
    # No session of the closed backend is left, so the process is logged out.
    assert _open_sessions(token.label) == 0


@pytest.mark.integration
def test_a_token_call_that_does_not_return_holds_up_nobody_for_long(token: SoftToken) -> None:
    wait = 0.2
    backend = Pkcs11Backend(token.config().with_pool(wait_seconds=wait))
    key = backend.generate("k", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    module = cryptoki(SOFTHSM_MODULE)
    holding, release = threading.Event(), threading.Event()

    def stuck_call() -> None:
        with module.lock:  # a call into the module that has not come back
            holding.set()
            release.wait(30)

    holder = threading.Thread(target=stuck_call)
    holder.start()
    try:
        holding.wait(10)
        started = time.monotonic()
        with pytest.raises(
            TransientBackendError, match=r"held the PKCS#11 module for more than 200 ms"
        ):
            backend.check_health()
        with pytest.raises(TransientBackendError, match="cannot sign now"):
            backend.sign(key, DATA)
        # Each waited its bound, not for the stuck call (released only below).
        assert time.monotonic() - started < 10 * wait
    finally:
        release.set()
        holder.join(timeout=30)
    backend.check_health()
    verify(key.public_key, backend.sign(key, DATA), DATA)
    backend.close()


@pytest.mark.integration
def test_close_behind_a_token_call_that_does_not_return_is_bounded(token: SoftToken) -> None:
    wait = 0.2
    backend = Pkcs11Backend(token.config().with_pool(wait_seconds=wait))
    key = backend.generate("k", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    calling, release = threading.Event(), threading.Event()

    def stuck(session: TokenSession) -> None:
        calling.set()  # a token call that has not come back, holding the module
        release.wait(30)

    caller = threading.Thread(target=backend._link.run, args=(stuck, "sign"))
    caller.start()
    closer = threading.Thread(target=backend.close)
    try:
        calling.wait(10)
        closer.start()
        closer.join(timeout=10 * wait)
        # A shutdown waits its bound, not for the stuck call (released only below).
        assert not closer.is_alive()
        started = time.monotonic()
        with pytest.raises(PermanentBackendError, match="closed"):
            backend.sign(key, DATA)
        assert time.monotonic() - started < wait  # said at once, not after a wait
    finally:
        release.set()
        caller.join(timeout=30)
        if closer.ident is not None:
            closer.join(timeout=30)
    # The stuck call came back: its lease closed what close() had to leave open (the
    # login session among them), so the process is logged out.
    assert _open_sessions(token.label) == 0


@pytest.mark.integration
def test_absent_token_does_not_restart_the_module_on_every_call(
    token: SoftToken, softhsm: SoftHsm, tmp_path: Path
) -> None:
    bystander_events: list[tuple[str, str | None]] = []
    other_token = softhsm.init_token()
    backend = Pkcs11Backend(token.config())
    bystander = Pkcs11Backend(
        other_token.config(), lambda op, _a, _s, error: bystander_events.append((op, error))
    )
    try:
        key = backend.generate("k", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
        other_key = bystander.generate("k", KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
        generation = cryptoki(SOFTHSM_MODULE).generation
        token.directory.rename(tmp_path / "away")
        bystander_events.clear()
        # A health watcher polls the absent token while the other token has traffic.
        for _ in range(10):
            with pytest.raises(TransientBackendError, match="is not present"):
                backend.check_health()
            bystander.sign(other_key, DATA)
        # Each rescan restarts the module and logs out every backend of the process.
        assert cryptoki(SOFTHSM_MODULE).generation - generation <= 1
        assert [op for op, _ in bystander_events].count("relogin") <= 1
        (tmp_path / "away").rename(token.directory)
        time.sleep(ABSENT_RESCAN_SECONDS)
        backend.sign(key, DATA)  # noticed at the next rescan
        backend.check_health()
    finally:
        backend.close()
        bystander.close()
        shutil.rmtree(other_token.directory, ignore_errors=True)
