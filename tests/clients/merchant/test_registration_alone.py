"""One ``register`` or ``renew`` at a time in a merchant directory (``clients.registration_lock``).

Real bank, real CA over gRPC and TLS, real soft keys. Two registrations run at once, as
two terminals or a cron job beside an operator would: each used to find no
``registration.json``, make keys and write its own record over the other's. The CA
certified the first request to reach it and refused the other (REJECTED_BY_AGENT: the
ID held live certificates), whose refusal removed the record, whoever had written it;
the certified one's answer lost then left certificates no run could collect, and every
later ``register`` refused.
"""

from __future__ import annotations

import base64
import contextlib
import json
import threading
from pathlib import Path

import pytest

from clients.authority import AuthorityClient
from clients.errors import RegistrationError, TransportError
from clients.merchant.config import load as load_merchant_config
from clients.merchant.registration import PENDING_FILE, MerchantRegistrar
from clients.merchant.runtime import Merchant
from clients.registration_lock import LOCK_FILE
from hsm.uri import open_backend
from setcore.profiles import EC
from setpay.v1 import registration_pb2
from tests.clients.bank_support import (
    RunningBank,
    configure_merchant,
    merchant_registrar,
    register_merchant,
)
from tests.clients.thread_support import in_thread

# How long a test's thread waits for the other one to reach the same point: the lock
# refuses the second at once, so under it the first waits this out alone.
MEET_SECONDS = 3.0


def _key_versions(directory: Path) -> set[tuple[str, int]]:
    backend = open_backend(load_merchant_config(directory).keys_uri())
    try:
        return {(key.label, key.version) for key in backend.list_keys()}
    finally:
        backend.close()


def _recorded_request(directory: Path) -> bytes | None:
    """The CertReq bytes ``registration.json`` holds now, if any."""
    try:
        record = json.loads((directory / PENDING_FILE).read_text())
    except FileNotFoundError:
        return None
    return base64.b64decode(record.get("cert_request", ""))


def test_a_second_register_while_one_runs_is_refused_and_changes_nothing(
    bank: RunningBank, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "m-alone"
    configure_merchant(bank, directory, "m-alone")
    inside, release = threading.Event(), threading.Event()
    real = MerchantRegistrar._me_aq_c_init
    calls: list[int] = []

    def held(self: MerchantRegistrar, request_type: int) -> object:
        calls.append(request_type)
        if len(calls) == 1:  # the first register waits here, its lock held
            inside.set()
            assert release.wait(30)
        return real(self, request_type)

    monkeypatch.setattr(MerchantRegistrar, "_me_aq_c_init", held)
    first, raised = in_thread(lambda: register_merchant(directory))
    try:
        assert inside.wait(30)
        with pytest.raises(RegistrationError, match="register` or `renew` is running") as refused:
            register_merchant(directory)
        assert LOCK_FILE in str(refused.value)
        # The second made no key, wrote no record, sent nothing.
        assert _key_versions(directory) == set()
        assert not (directory / PENDING_FILE).exists()
        assert len(calls) == 1
    finally:
        release.set()
        first.join(60)
    assert not raised, raised
    merchant = Merchant.open(load_merchant_config(directory))
    merchant.close()


def test_a_renew_while_a_renew_runs_is_refused(
    bank: RunningBank, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "m-alone-renew"
    configure_merchant(bank, directory, "m-alone-renew")
    register_merchant(directory)
    before = _key_versions(directory)
    inside, release = threading.Event(), threading.Event()
    real = AuthorityClient.revocation

    def held(self: AuthorityClient, brand: str) -> object:
        if not inside.is_set():  # the first renewal's first call to the CA waits here
            inside.set()
            assert release.wait(30)
        return real(self, brand)

    monkeypatch.setattr(AuthorityClient, "revocation", held)

    def renew() -> None:
        with merchant_registrar(directory) as registrar:
            registrar.renew(EC)

    first, raised = in_thread(renew)
    try:
        assert inside.wait(30)
        with pytest.raises(RegistrationError, match="this renew made, recorded and sent nothing"):
            renew()
        assert _key_versions(directory) == before
        assert not (directory / PENDING_FILE).exists()
    finally:
        release.set()
        first.join(60)
    assert not raised, raised
    assert len(_key_versions(directory)) == len(before) + 2  # the first one's new keys


def test_two_registers_at_once_never_strand_a_certified_request(
    bank: RunningBank, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both registers started together (each past its look for a record before either
    wrote one, where they could meet); the first CertReq to reach the CA is the one whose
    record is not on disk, if there is one, and its answer is lost. The next ``register``
    then collects what the CA certified, and the merchant opens."""
    directory = tmp_path / "m-alone-race"
    configure_merchant(bank, directory, "m-alone-race")
    meet = threading.Barrier(2, timeout=MEET_SECONDS)
    real_init = MerchantRegistrar._me_aq_c_init

    def together(self: MerchantRegistrar, request_type: int) -> object:
        # Alone when the barrier breaks: the other was refused, or never came.
        with contextlib.suppress(threading.BrokenBarrierError):
            meet.wait()
        return real_init(self, request_type)

    monkeypatch.setattr(MerchantRegistrar, "_me_aq_c_init", together)
    real_cert = AuthorityClient.cert
    turn = threading.Condition()
    arrived: list[bytes] = []
    order: list[bytes] = []
    done: list[bytes] = []

    def cert(self: AuthorityClient, request: registration_pb2.CertRequest) -> object:
        wire = request.SerializeToString()
        with turn:
            arrived.append(wire)
            turn.notify_all()
            turn.wait_for(lambda: len(arrived) == 2, timeout=MEET_SECONDS)
            if not order:
                recorded = _recorded_request(directory)
                first = next((w for w in arrived if w != recorded), arrived[0])
                order.extend([first, *(w for w in arrived if w != first)])
            turn.wait_for(lambda: order[len(done)] == wire)
        try:
            response = real_cert(self, request)  # the CA decides ...
            if wire == order[0]:
                raise TransportError("CA Cert", "DEADLINE_EXCEEDED")  # ... the answer is lost
            return response
        finally:
            with turn:
                done.append(wire)
                turn.notify_all()

    monkeypatch.setattr(AuthorityClient, "cert", cert)
    runs = [in_thread(lambda: register_merchant(directory)) for _ in range(2)]
    for thread, _ in runs:
        thread.join(60)
    monkeypatch.undo()
    for _, raised in runs:
        assert all(isinstance(exc, TransportError | RegistrationError) for exc in raised)
    assert done, "no CertReq reached the CA"

    register_merchant(directory)  # collects the certified request's answer
    assert not (directory / PENDING_FILE).exists()
    merchant = Merchant.open(load_merchant_config(directory))
    merchant.close()
