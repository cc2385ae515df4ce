"""A Merchant CA that answers REQUEST_IN_PROGRESS: it has not decided the request yet.

SET defines two CertStatus codes for a request the CA is still deciding, requestPended
and requestInProgress (SET-PROTOCOL.md 4.1). setpay's CA sends neither to a merchant;
another CA, or a later release, may, and may still certify the request after either.
``register`` kept only REQUEST_PENDED and took REQUEST_IN_PROGRESS for a refusal: it
removed ``registration.json`` and destroyed the two keys the CA might still certify.
Now both are polled with CertInq, then left recorded with their keys for a later run,
which ``setpay merchant register`` and ``renew`` report as not decided yet (exit 3).

Real bank, real CA over gRPC and TLS; the CA's answers are built and signed by its own
code, with the status of the first few replaced by REQUEST_IN_PROGRESS (and no
certificates): the CA certified the request, and says so only when asked again.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

from clients.authority import AuthorityClient
from clients.identity import read_root
from clients.merchant.config import load as load_merchant_config
from clients.merchant.registration import PENDING_FILE, MerchantRegistrar, Registered
from clients.transport import Caller, open_channel
from gateway.ca import merchant as ca_merchant
from hsm.uri import open_backend
from setcore.credentials import Credentials
from setcore.errors import ErrorCode, PeerError
from setcore.pki.truststore import TrustStore
from setcore.profiles import EC
from setcore.registration import RevocationData
from setcore.registration_certreq import CertAnswer
from setpay.v1 import registration_pb2
from tests.clients.bank_support import RunningBank, configure_merchant, register_merchant
from tests.clients.cli_support import run_cli
from tests.clients.merchant.test_registration_lost_answer import _left_unfinished, _stored
from tests.clients.merchant.test_registration_resume import _unreachable

IN_PROGRESS = registration_pb2.CERT_STATUS_CODE_REQUEST_IN_PROGRESS
COMPLETE = registration_pb2.CERT_STATUS_CODE_REQUEST_COMPLETE
# The CertInqs ``register`` sends about an undecided request before it leaves it.
POLLS = 3
# What ``setpay merchant register`` exits with for a request the CA has not decided.
EXIT_PENDED = 3


def _in_progress(monkeypatch: pytest.MonkeyPatch, answers: int) -> None:
    """The Merchant CA's next ``answers`` answers (CertRes or CertInqRes) of a certified
    request say REQUEST_IN_PROGRESS and carry no certificates; the later ones are true."""
    real = ca_merchant.build_merchant_cert_response
    left = [answers]

    def saying(ca: Credentials, answer: CertAnswer, status: int, *,
               revocation: RevocationData | None, certificates: Sequence[bytes] = (),
               ee_message: str = "") -> bytes:  # fmt: skip
        if status == COMPLETE and left[0] > 0:
            left[0] -= 1
            status, certificates = IN_PROGRESS, ()
        return real(ca, answer, status, revocation=revocation, certificates=certificates,
                    ee_message=ee_message)  # fmt: skip

    monkeypatch.setattr(ca_merchant, "build_merchant_cert_response", saying)


def _no_sleep(seconds: float) -> None:
    """Polls of an undecided request run back to back in tests."""


def _inquiries(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """One entry per CertInq sent from now on (each still reaches the CA)."""
    sent: list[int] = []
    real = AuthorityClient.cert_inq

    def counted(self: AuthorityClient, request: registration_pb2.CertInqRequest) -> object:
        sent.append(1)
        return real(self, request)

    monkeypatch.setattr(AuthorityClient, "cert_inq", counted)
    return sent


@contextmanager
def _registrar(directory: Path) -> Iterator[MerchantRegistrar]:
    """The registrar ``setpay merchant`` runs, polling without waiting."""
    config = load_merchant_config(directory)
    backend = open_backend(config.keys_uri())
    try:
        with open_channel(config.ca.channel(), "CA") as channel:
            yield MerchantRegistrar(
                config, backend, AuthorityClient(Caller(channel, "CA")),
                TrustStore(read_root(config.root)),
                sleep=_no_sleep,
            )  # fmt: skip
    finally:
        backend.close()


def _register(directory: Path) -> Registered:
    with _registrar(directory) as registrar:
        return registrar.register(EC)


def _renew(directory: Path) -> Registered:
    with _registrar(directory) as registrar:
        return registrar.renew(EC)


def _record(directory: Path) -> dict[str, object]:
    return dict(json.loads((directory / PENDING_FILE).read_text()))


def test_a_request_in_progress_is_asked_about_until_certified(
    bank: RunningBank, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In progress for the CertRes and the first CertInq: the second CertInq, in the same
    run, collects the certificates, for the keys the request was made with."""
    directory = tmp_path / "m"
    configure_merchant(bank, directory, "m-in-progress")
    _in_progress(monkeypatch, answers=2)
    asked = _inquiries(monkeypatch)
    done = _register(directory)
    assert done.complete and done.status == COMPLETE
    assert len(asked) == 2
    stored = _stored(directory)
    assert sorted(version for _, version in stored) == [1, 1]
    assert None not in stored.values()
    assert not (directory / PENDING_FILE).exists()


def test_a_request_still_in_progress_stays_recorded_with_its_keys(
    bank: RunningBank, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In progress after every poll: kept, with its keys, as a pended request is, and
    asked about with CertInq by the next run, which collects the certificates."""
    directory = tmp_path / "m"
    configure_merchant(bank, directory, "m-still-in-progress")
    with monkeypatch.context() as patch:
        _in_progress(patch, answers=1 + POLLS)
        asked = _inquiries(patch)
        done = _register(directory)
    assert (done.status, done.complete) == (IN_PROGRESS, False)
    assert len(asked) == POLLS
    record = _record(directory)
    assert "cert_request" not in record  # only CertInq asks about it now
    kept = _stored(directory)
    assert sorted(version for _, version in kept) == [1, 1]
    assert set(kept.values()) == {None}

    assert _register(directory).complete
    stored = _stored(directory)
    assert sorted(stored) == sorted(kept) and None not in stored.values()
    assert not (directory / PENDING_FILE).exists()


def test_register_reports_a_request_in_progress_as_not_decided_yet(
    bank: RunningBank, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """The command's answer is a pended request's, exit 3, run register again later, in
    words that fit both: not decided yet (before: "pended by the Merchant CA")."""
    directory = tmp_path / "m"
    configure_merchant(bank, directory, "m-in-progress-cli")
    with monkeypatch.context() as patch:
        _in_progress(patch, answers=1 + POLLS)
        status, out, err = run_cli(["merchant", "--dir", str(directory), "register"], capsys)
    assert (status, err) == (EXIT_PENDED, ""), err
    assert out == (
        "certificate request not decided yet by the Merchant CA (pended or in progress): run "
        "register again later\n"
    )
    assert (directory / PENDING_FILE).exists()
    assert set(_stored(directory).values()) == {None} and len(_stored(directory)) == 2


def test_renew_reports_a_renewal_in_progress_as_not_decided_yet(
    bank: RunningBank, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """Before: "renewal pended by the Merchant CA", for a CA that said in progress."""
    directory = tmp_path / "m"
    configure_merchant(bank, directory, "m-renew-in-progress-cli")
    register_merchant(directory)
    with monkeypatch.context() as patch:
        _in_progress(patch, answers=1 + POLLS)
        status, out, err = run_cli(["merchant", "--dir", str(directory), "renew"], capsys)
    assert (status, err) == (EXIT_PENDED, ""), err
    assert out == (
        "renewal not decided yet by the Merchant CA (pended or in progress): run renew again "
        "later\n"
    )
    assert (directory / PENDING_FILE).exists()


def test_a_renewal_in_progress_keeps_the_current_certificates_and_its_keys(
    bank: RunningBank, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "m"
    configure_merchant(bank, directory, "m-renewal-in-progress")
    register_merchant(directory)
    before = _stored(directory)
    with monkeypatch.context() as patch:
        _in_progress(patch, answers=1 + POLLS)
        done = _renew(directory)
    assert (done.status, done.complete) == (IN_PROGRESS, False)
    during = _stored(directory)
    assert {k: v for k, v in during.items() if k in before} == before
    assert [v for k, v in during.items() if k not in before] == [None, None]
    assert (directory / PENDING_FILE).exists()

    assert _renew(directory).complete
    after = _stored(directory)
    assert sorted(after) == sorted(during) and None not in after.values()


def test_a_resend_answered_in_progress_is_not_taken_for_a_refusal(
    bank: RunningBank, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first send never arrived; the resend is answered REQUEST_IN_PROGRESS by a CA
    that records nothing until it has decided, so CertInq finds nothing yet. A resend's
    refusal followed by UNKNOWN_LID is the CA's decision; an answer in progress is none:
    the record and its keys stay for a later run, and the CA's word goes up as it is."""
    directory = tmp_path / "m"
    _left_unfinished(bank, directory, "m-resend-in-progress", monkeypatch, _unreachable)
    kept, record = _stored(directory), _record(directory)
    assert set(kept.values()) == {None} and "cert_request" in record

    def deciding_later(*args: object) -> tuple[int, tuple[bytes, ...]]:
        return IN_PROGRESS, ()

    with monkeypatch.context() as patch:
        patch.setattr(ca_merchant.MerchantRegistrar, "_decide", deciding_later)
        with pytest.raises(PeerError) as unheard:
            _register(directory)
    assert unheard.value.code == ErrorCode.ERROR_CODE_UNKNOWN_LID
    assert _stored(directory) == kept
    assert _record(directory) == record
