"""An unfinished merchant registration taken up again: under a changed merchant.toml, with
options the recorded request was not made with, and after the CA refused the resend.

Real bank, real CA over gRPC and TLS on an OS-chosen port, real soft keys. A send the CA
never saw is the TransportError the Caller raises when the CA cannot be reached; an
answer lost after the CA decided is the one of ``test_registration_lost_answer``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from clients.authority import AuthorityClient
from clients.errors import RegistrationError, TransportError
from clients.merchant import registration as registration_module
from clients.merchant.config import load as load_merchant_config
from clients.merchant.registration import (
    KEY_EXCHANGE_LABEL,
    PENDING_FILE,
    SIGNATURE_LABEL,
    Registered,
)
from hsm.uri import open_backend
from setcore import registration_merchant
from setcore.freshness import FRESHNESS_WINDOW_MS, now_ms
from setcore.pki.certificate import load_certificate
from setcore.pki.extensions import read_merchant_data
from setcore.profiles import EC
from setpay.v1 import registration_pb2
from tests.clients.bank_support import (
    RunningBank,
    configure_merchant,
    merchant_registrar,
    register_merchant,
)
from tests.clients.merchant.test_registration_lost_answer import (
    _answer_lost,
    _left_unfinished,
    _stored,
)

# How far before the CA's clock a request is dated to be past its window: a minute more
# than the window, far beyond any drift between the test's steps.
PAST_THE_WINDOW_MS = FRESHNESS_WINDOW_MS + 60_000


def _unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    """The next CertReq never reaches the CA."""

    def unreachable(self: AuthorityClient, request: registration_pb2.CertRequest) -> object:
        raise TransportError("CA Cert", "UNAVAILABLE")

    monkeypatch.setattr(AuthorityClient, "cert", unreachable)


def _register(directory: Path, form: Mapping[str, str] | None = None) -> Registered:
    with merchant_registrar(directory) as registrar:
        return registrar.register(EC, form=form)


def _certified_id(directory: Path) -> str:
    """The merchant ID the stored signature certificate names."""
    backend = open_backend(load_merchant_config(directory).keys_uri())
    try:
        der = backend.certificate(backend.get(SIGNATURE_LABEL))
    finally:
        backend.close()
    assert der is not None
    data = read_merchant_data(load_certificate(der))
    assert data is not None
    return data.merchant_id


def _sent(monkeypatch: pytest.MonkeyPatch) -> list[registration_pb2.CertRequest]:
    """Every CertReq sent from now on (each still reaches the CA)."""
    sent: list[registration_pb2.CertRequest] = []
    real = AuthorityClient.cert

    def counted(self: AuthorityClient, request: registration_pb2.CertRequest) -> object:
        sent.append(request)
        return real(self, request)

    monkeypatch.setattr(AuthorityClient, "cert", counted)
    return sent


def test_a_corrected_merchant_id_registers_anew_once_certinq_says_the_ca_never_saw_it(
    bank: RunningBank, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "m"
    _left_unfinished(bank, directory, "m-typo", monkeypatch, _unreachable)
    configure_merchant(bank, directory, "m-right")
    register_merchant(directory)
    assert _certified_id(directory) == "m-right"


def test_a_changed_merchant_id_is_refused_while_the_ca_holds_the_request(
    bank: RunningBank, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "m"
    issued = _left_unfinished(bank, directory, "m-held", monkeypatch, _answer_lost)

    configure_merchant(bank, directory, "m-other")
    with pytest.raises(RegistrationError) as refused:
        register_merchant(directory)
    message = str(refused.value)
    assert "'m-held'" in message and "'m-other'" in message, message
    assert "put the recorded values back" in message
    assert (directory / PENDING_FILE).exists()
    assert set(_stored(directory).values()) == {None}  # nothing stored under 'm-other'

    configure_merchant(bank, directory, "m-held")  # the way out: the recorded values
    register_merchant(directory)
    assert _stored(directory)[(SIGNATURE_LABEL, 1)] in issued
    assert _certified_id(directory) == "m-held"


def test_a_changed_ca_target_is_refused_before_anything_is_sent(
    bank: RunningBank, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "m"
    _left_unfinished(bank, directory, "m-moved", monkeypatch, _unreachable)
    toml = directory / "merchant.toml"
    toml.write_text(toml.read_text().replace(bank.ca_target, "localhost:1"))
    with pytest.raises(RegistrationError) as refused:
        _register(directory)
    assert f"[ca] target '{bank.ca_target}' then, 'localhost:1' now" in str(refused.value)
    assert (directory / PENDING_FILE).exists()


def test_a_form_on_a_resume_is_refused_before_anything_is_sent(
    bank: RunningBank, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "m"
    _left_unfinished(bank, directory, "m-form-later", monkeypatch, _unreachable)
    sent = _sent(monkeypatch)
    with pytest.raises(RegistrationError, match="without them to finish it"):
        _register(directory, form={"contact-email": "shop@example.org"})
    assert sent == [] and (directory / PENDING_FILE).exists()
    assert _register(directory).complete  # the recorded request, as it was made


def test_a_request_made_with_a_form_is_not_made_again_without_it(
    bank: RunningBank, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CA never saw a request made with a form: it is discarded, and the run that
    found so stops rather than make a new request without the form."""
    directory = tmp_path / "m"
    configure_merchant(bank, directory, "m-form-typo")
    _unreachable(monkeypatch)
    with pytest.raises(TransportError):
        _register(directory, form={"contact-email": "shop@example.org"})
    monkeypatch.undo()
    configure_merchant(bank, directory, "m-form-right")
    sent = _sent(monkeypatch)
    with pytest.raises(RegistrationError, match="made with form: run register again"):
        _register(directory)
    assert sent == [] and not (directory / PENDING_FILE).exists()
    assert _register(directory, form={"contact-email": "shop@example.org"}).complete
    assert _certified_id(directory) == "m-form-right"


def _purge_answers(bank: RunningBank) -> None:
    """Forget every stored answer, as the CA's housekeeping does once they are older than
    its retention (decided requests are kept)."""
    with bank.ca_store.write() as tx:
        tx.purge(0, now_ms() + 1)


def test_a_resend_whose_answer_was_purged_is_collected_with_certinq(
    bank: RunningBank,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    directory = tmp_path / "m"
    issued = _left_unfinished(bank, directory, "m-purged", monkeypatch, _answer_lost)
    _purge_answers(bank)
    with caplog.at_level("INFO", logger="setpay.merchant"):
        register_merchant(directory)
    assert any("ERROR_CODE_RRPID_REUSED" in m for m in caplog.messages), caplog.messages
    stored = _stored(directory)
    assert stored[(SIGNATURE_LABEL, 1)] in issued and stored[(KEY_EXCHANGE_LABEL, 1)] in issued


def _dated_in_the_past(monkeypatch: pytest.MonkeyPatch) -> None:
    """The next CertReq is dated ``PAST_THE_WINDOW_MS`` ago: sent again now, it is past
    the CA's window, as one sent again after the CA's retention is."""
    real: Callable[..., Any] = registration_merchant.build_merchant_cert_request

    def dated(*args: Any, **kwargs: Any) -> Any:
        with monkeypatch.context() as patch:
            patch.setattr(registration_merchant, "now_ms", lambda: now_ms() - PAST_THE_WINDOW_MS)
            return real(*args, **kwargs)

    monkeypatch.setattr(registration_module, "build_merchant_cert_request", dated)


def test_a_resend_the_ca_never_saw_past_its_window_registers_anew(
    bank: RunningBank,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    directory = tmp_path / "m"
    _dated_in_the_past(monkeypatch)
    _left_unfinished(bank, directory, "m-never-seen", monkeypatch, _unreachable)
    with caplog.at_level("INFO", logger="setpay.merchant"):
        register_merchant(directory)
    assert any("ERROR_CODE_MESSAGE_TOO_OLD" in m for m in caplog.messages), caplog.messages
    assert any("registering again" in m for m in caplog.messages)
    # The keys of the request the CA never saw went with its record; the new request's
    # (numbered from what is left) are certified.
    stored = _stored(directory)
    assert len(stored) == 2 and None not in stored.values(), stored


def test_a_misspelt_form_field_makes_no_key(bank: RunningBank, tmp_path: Path) -> None:
    directory = tmp_path / "m"
    configure_merchant(bank, directory, "m-misspelt")
    for _ in range(2):
        with pytest.raises(RegistrationError, match="has no field 'legal-nmae'"):
            _register(directory, form={"legal-nmae": "Shop Ltd"})
    assert _stored(directory) == {}  # the old code made two keys a try
    assert not (directory / PENDING_FILE).exists()
