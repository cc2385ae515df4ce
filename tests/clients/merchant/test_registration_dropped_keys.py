"""A registration that ends without certificates takes its two new keys with it.

``register`` kept the new key versions of a request it never recorded (building the
CertReq or writing ``registration.json`` failed), of one the Merchant CA refused (its
CertRes or its Error, verified), and of one the CA said it holds nothing of (CertInq
answered UNKNOWN_LID): "superseded later", they stayed, two more uncertified versions an
attempt (on a token, two slots for good). No run sends such a request again, and a new one
is made with new keys, so no CA will certify them; ``renew`` already destroyed its own. A
request whose answer was lost keeps its keys with its record until the CA's word.

Real bank, real CA over gRPC and TLS on an OS-chosen port, real soft keys.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from clients.errors import RegistrationError, TransportError
from clients.merchant import registration as registration_module
from clients.merchant.registration import KEY_EXCHANGE_LABEL, PENDING_FILE, SIGNATURE_LABEL
from hsm.base import KeyAlgorithm, KeyHandle, KeyUsage
from hsm.software import SoftwareBackend
from setcore.errors import ErrorCode, PeerError
from setpay.v1 import registration_pb2
from tests.clients.bank_support import EUR, RunningBank, configure_merchant, register_merchant
from tests.clients.merchant.test_registration_lost_answer import (
    _answer_lost,
    _left_unfinished,
    _stored,
)
from tests.clients.merchant.test_registration_resume import (
    _dated_in_the_past,
    _register,
    _unreachable,
)

REJECTED_BY_AGENT = registration_pb2.CERT_STATUS_CODE_REJECTED_BY_AGENT
FORM = {"contact-email": "shop@example.org"}


def _certified_alone(directory: Path) -> None:
    """The merchant registers after the dropped attempts: one version of each key is
    left, certified."""
    register_merchant(directory)
    stored = _stored(directory)
    assert sorted(label for label, _ in stored) == [KEY_EXCHANGE_LABEL, SIGNATURE_LABEL]
    assert None not in stored.values(), stored


def _nothing_left(directory: Path) -> None:
    assert _stored(directory) == {}
    assert not (directory / PENDING_FILE).exists()


# -- a request never recorded --------------------------------------------------------------


class _Failed(Exception):
    """What the patched step raises."""


def _build_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    def build(*args: object, **kwargs: object) -> object:
        raise _Failed("the CertReq could not be signed")

    monkeypatch.setattr(registration_module, "build_merchant_cert_request", build)


def _record_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    def save(*args: object, **kwargs: object) -> None:
        raise _Failed("registration.json could not be written")

    monkeypatch.setattr(registration_module, "save_pending", save)


def _key_exchange_key_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    """The signature key is made, the key-exchange key is not (a full token)."""
    real = SoftwareBackend.generate

    def generate(
        self: SoftwareBackend, label: str, usage: KeyUsage, algorithm: KeyAlgorithm
    ) -> KeyHandle:
        if usage is KeyUsage.KEY_EXCHANGE:
            raise _Failed("no room on the token")
        return real(self, label, usage, algorithm)

    monkeypatch.setattr(SoftwareBackend, "generate", generate)


@pytest.mark.parametrize(
    ("failing", "fault"),
    [("build", _build_fails), ("record", _record_fails), ("kex", _key_exchange_key_fails)],
)
def test_keys_of_a_request_never_recorded_are_destroyed(
    bank: RunningBank,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    failing: str,
    fault: Callable[[pytest.MonkeyPatch], None],
) -> None:
    directory = tmp_path / "m"
    configure_merchant(bank, directory, f"m-unrecorded-{failing}")
    with monkeypatch.context() as patch:
        fault(patch)
        for _ in range(2):
            with pytest.raises(_Failed):
                register_merchant(directory)
    _nothing_left(directory)
    _certified_alone(directory)


# -- the CA's verified refusal ---------------------------------------------------------------


def test_keys_of_a_request_the_ca_refused_are_destroyed(bank: RunningBank, tmp_path: Path) -> None:
    """A CertRes refusing the first send (the ID has an account, the request names none)."""
    merchant_id = "m-refused-keys"
    bank.ledger.open_merchant_account(merchant_id, EUR)
    directory = tmp_path / merchant_id
    configure_merchant(bank, directory, merchant_id)
    for _ in range(2):
        with pytest.raises(RegistrationError) as refused:
            register_merchant(directory)
        assert refused.value.status == REJECTED_BY_AGENT
        _nothing_left(directory)


def test_keys_of_a_request_the_ca_answered_with_an_error_are_destroyed(
    bank: RunningBank, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CA's signed Error to the first send: a request dated past its window."""
    directory = tmp_path / "m"
    configure_merchant(bank, directory, "m-error-keys")
    with monkeypatch.context() as patch:
        _dated_in_the_past(patch)
        with pytest.raises(PeerError) as refused:
            register_merchant(directory)
    assert refused.value.code == ErrorCode.ERROR_CODE_MESSAGE_TOO_OLD
    _nothing_left(directory)
    _certified_alone(directory)


def test_a_refusal_whose_answer_was_lost_keeps_the_keys_until_it_is_heard(
    bank: RunningBank, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The answer is lost: the record and its keys are kept. The resend is refused again
    and CertInq finds no request: only then do the keys go."""
    merchant_id = "m-refused-lost"
    bank.ledger.open_merchant_account(merchant_id, EUR)
    directory = tmp_path / merchant_id
    _left_unfinished(bank, directory, merchant_id, monkeypatch, _answer_lost)
    assert _stored(directory) == {(KEY_EXCHANGE_LABEL, 1): None, (SIGNATURE_LABEL, 1): None}
    assert (directory / PENDING_FILE).exists()
    with pytest.raises(RegistrationError) as refused:
        register_merchant(directory)
    assert refused.value.status == REJECTED_BY_AGENT
    _nothing_left(directory)


# -- the CA holds no request (UNKNOWN_LID) ---------------------------------------------------


def test_keys_of_a_request_the_ca_never_saw_go_when_it_says_so(
    bank: RunningBank, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Made with a form and never received, and past its window when sent again
    (MESSAGE_TOO_OLD, then CertInq's UNKNOWN_LID): the run that learns so drops the record
    and stops (the form is needed again), and drops the keys too."""
    directory = tmp_path / "m"
    configure_merchant(bank, directory, "m-never-seen-keys")
    _dated_in_the_past(monkeypatch)
    _unreachable(monkeypatch)
    with pytest.raises(TransportError):
        _register(directory, form=FORM)
    monkeypatch.undo()
    assert set(_stored(directory).values()) == {None} and len(_stored(directory)) == 2

    with pytest.raises(RegistrationError, match="made with form: run register again"):
        _register(directory)
    _nothing_left(directory)
    assert _register(directory, form=FORM).complete
    assert None not in _stored(directory).values() and len(_stored(directory)) == 2


def test_a_request_dropped_under_a_changed_id_leaves_only_the_new_keys(
    bank: RunningBank, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """merchant.toml corrected after a request that never arrived: CertInq says the CA
    holds none, the request is dropped with its keys and made again, certified."""
    directory = tmp_path / "m"
    _left_unfinished(bank, directory, "m-typo-keys", monkeypatch, _unreachable)
    configure_merchant(bank, directory, "m-right-keys")
    _certified_alone(directory)


# -- a lost answer of a certified request ----------------------------------------------------


def test_a_lost_answer_is_collected_under_the_kept_keys(
    bank: RunningBank, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "m"
    issued = _left_unfinished(bank, directory, "m-lost-keys", monkeypatch, _answer_lost)
    kept = _stored(directory)
    assert kept == {(KEY_EXCHANGE_LABEL, 1): None, (SIGNATURE_LABEL, 1): None}
    register_merchant(directory)
    stored = _stored(directory)
    assert sorted(stored) == sorted(kept)
    assert all(der in issued for der in stored.values())
