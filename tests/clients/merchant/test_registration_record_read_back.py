"""A request recorded by a write that failed after its rename keeps its two keys.

``registration.json`` is written to a temporary file, renamed into place, then the
directory is fsynced (``clients.identity.write_atomically``). ``register`` and ``renew``
destroyed the new keys on any failure of that write: one in the directory's fsync
(EIO), or a Ctrl-C there, left the request recorded, naming versions that were gone, and
every later run failed the same way ("cannot be resumed: no key ..."), until the file was
removed by hand. The record is now read back, and the versions it names are kept; a
write that failed before its rename still takes them back. A record whose keys are gone
all the same is dropped (with its other key), the command saying what to run next.

Real bank, real CA over gRPC and TLS on an OS-chosen port, real soft keys.
"""

from __future__ import annotations

import errno
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from clients.errors import RegistrationError, TransportError
from clients.merchant import registration_pending
from clients.merchant.config import load as load_merchant_config
from clients.merchant.registration import KEY_EXCHANGE_LABEL, PENDING_FILE, SIGNATURE_LABEL
from hsm.base import KeyUsage
from hsm.uri import open_backend
from setcore.profiles import EC
from tests.clients.bank_support import (
    RunningBank,
    configure_merchant,
    merchant_registrar,
    register_merchant,
)
from tests.clients.merchant.test_registration_lost_answer import _left_unfinished, _stored
from tests.clients.merchant.test_registration_resume import _register, _sent, _unreachable
from tests.clients.wallet.test_registration_sealed_after_rename import (
    _fsync_fails_once_replaced,
    _rename_fails,
)

FORM = {"contact-email": "shop@example.org"}
FAILURES: list[Callable[[], BaseException]] = [
    lambda: OSError(errno.EIO, "directory fsync failed"),
    KeyboardInterrupt,
]
BOTH_UNCERTIFIED = {(KEY_EXCHANGE_LABEL, 1): None, (SIGNATURE_LABEL, 1): None}


def _delete(directory: Path, label: str, version: int) -> None:
    """Destroy one key version, as an earlier release's failed write (or a hand) did."""
    backend = open_backend(load_merchant_config(directory).keys_uri())
    try:
        backend.delete(label, version)
    finally:
        backend.close()


def _certified(directory: Path) -> list[tuple[str, int]]:
    return sorted(key for key, der in _stored(directory).items() if der is not None)


# -- the first line: the versions the record names are kept -----------------------------------


@pytest.mark.parametrize("failure", FAILURES, ids=["eio", "ctrl-c"])
def test_a_request_recorded_before_its_fsync_failed_keeps_its_keys_and_resumes(
    bank: RunningBank,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    failure: Callable[[], BaseException],
) -> None:
    directory = tmp_path / "m"
    raised = failure()
    configure_merchant(bank, directory, f"m-fsync-{type(raised).__name__}")
    with monkeypatch.context() as patch:
        _fsync_fails_once_replaced(patch, directory / PENDING_FILE, raised)
        sent = _sent(patch)
        with pytest.raises(type(raised)):
            register_merchant(directory)
    assert not sent  # the failure came before the CertReq could leave
    assert _stored(directory) == BOTH_UNCERTIFIED
    record = json.loads((directory / PENDING_FILE).read_text())
    assert (record["signature_version"], record["key_exchange_version"]) == (1, 1)
    register_merchant(directory)
    assert _certified(directory) == sorted(BOTH_UNCERTIFIED)  # no second pair made
    assert not (directory / PENDING_FILE).exists()


def test_a_request_whose_record_failed_before_its_rename_takes_its_keys_back(
    bank: RunningBank, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "m"
    configure_merchant(bank, directory, "m-rename-fails")
    with monkeypatch.context() as patch:
        _rename_fails(patch, directory / PENDING_FILE)
        with pytest.raises(OSError, match="no space"):
            register_merchant(directory)
    assert _stored(directory) == {}
    assert not (directory / PENDING_FILE).exists()
    assert not list(directory.glob(f".{PENDING_FILE}.*"))
    register_merchant(directory)
    assert _certified(directory) == sorted(BOTH_UNCERTIFIED)


def test_a_record_that_cannot_be_read_back_keeps_the_keys_in_doubt(
    bank: RunningBank, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "m"
    configure_merchant(bank, directory, "m-unreadable-record")

    def unreadable(path: Path) -> dict[str, object]:
        raise RegistrationError(f"{path.name} cannot be resumed: input/output error")

    with monkeypatch.context() as patch:
        failure = OSError(errno.EIO, "directory fsync failed")
        _fsync_fails_once_replaced(patch, directory / PENDING_FILE, failure)
        patch.setattr(registration_pending, "read_pending", unreadable)
        with pytest.raises(OSError, match="fsync"):
            register_merchant(directory)
    assert _stored(directory) == BOTH_UNCERTIFIED


def test_unrecorded_names_the_keys_a_record_does_not(tmp_path: Path) -> None:
    """No record: every key goes; a record: only the versions it does not name; an
    unreadable one: none."""
    backend = open_backend("soft:ephemeral")
    try:
        sig = backend.generate(SIGNATURE_LABEL, KeyUsage.SIGNATURE, EC.signature_key)
        kex = backend.generate(KEY_EXCHANGE_LABEL, KeyUsage.KEY_EXCHANGE, EC.key_exchange_key)
        newer = backend.generate(SIGNATURE_LABEL, KeyUsage.SIGNATURE, EC.signature_key)
        path = tmp_path / PENDING_FILE
        assert registration_pending.unrecorded(path, (sig, kex)) == [sig, kex]
        record = {"request_type": 1, "signature_version": 1, "key_exchange_version": 1}
        path.write_text(json.dumps(record))
        assert registration_pending.unrecorded(path, (sig, kex)) == []
        assert registration_pending.unrecorded(path, (newer, kex)) == [newer]
        path.write_text("{not json")
        assert registration_pending.unrecorded(path, (newer, kex)) == []
    finally:
        backend.close()


# -- the second line: a record whose keys are gone is dropped ---------------------------------


@pytest.mark.parametrize(
    ("label", "kept_label"),
    [(SIGNATURE_LABEL, KEY_EXCHANGE_LABEL), (KEY_EXCHANGE_LABEL, SIGNATURE_LABEL)],
)
def test_a_record_whose_key_is_gone_is_dropped_with_its_other_key(
    bank: RunningBank, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, label: str, kept_label: str
) -> None:
    directory = tmp_path / "m"
    _left_unfinished(bank, directory, f"m-keyless-{label}", monkeypatch, _unreachable)
    _delete(directory, label, 1)
    assert _stored(directory) == {(kept_label, 1): None}
    with pytest.raises(RegistrationError) as dropped:
        register_merchant(directory)
    message = str(dropped.value)
    assert f"{PENDING_FILE} is dropped" in message and f"{label} v1" in message, message
    assert message.endswith("run `setpay merchant register` again"), message
    assert _stored(directory) == {}
    assert not (directory / PENDING_FILE).exists()
    register_merchant(directory)  # not refused the same way again
    assert _certified(directory) == sorted(BOTH_UNCERTIFIED)


def test_a_record_made_with_a_form_says_to_give_it_again(
    bank: RunningBank, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "m"
    configure_merchant(bank, directory, "m-keyless-form")
    with monkeypatch.context() as patch:
        _unreachable(patch)
        with pytest.raises(TransportError):
            _register(directory, form=FORM)
    _delete(directory, SIGNATURE_LABEL, 1)
    with pytest.raises(RegistrationError, match="again, with the form it was made with"):
        _register(directory)
    assert _stored(directory) == {}
    assert _register(directory, form=FORM).complete


def test_a_renewal_whose_key_is_gone_is_dropped_and_the_merchant_stays_certified(
    bank: RunningBank, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "m"
    configure_merchant(bank, directory, "m-keyless-renewal")
    register_merchant(directory)
    with monkeypatch.context() as patch:
        _unreachable(patch)
        with pytest.raises(TransportError), merchant_registrar(directory) as registrar:
            registrar.renew(EC)
    _delete(directory, SIGNATURE_LABEL, 2)
    with (
        pytest.raises(RegistrationError, match=r"run `setpay merchant renew` again$"),
        merchant_registrar(directory) as registrar,
    ):
        registrar.renew(EC)
    assert _stored(directory).keys() == set(BOTH_UNCERTIFIED)
    assert _certified(directory) == sorted(BOTH_UNCERTIFIED)
    with merchant_registrar(directory) as registrar:
        assert registrar.renew(EC).complete
    assert len(_certified(directory)) == 4
