"""A Merchant CA of a later release answers with a CertStatusCode this one does not know.

Real bank, real CA over gRPC and TLS; the CA's answers are built by its own code, signed
with its own key, with the status replaced by one no release of this build defines
(``LATER``). The merchant reads such an answer, once verified, as an outcome unknown
(pended or refused, it cannot tell): ``setpay merchant register`` (or ``renew``) says so
and exits 4, installs nothing and keeps ``registration.json``, so the same request is
asked about again by the next run, never by itself. The same answer failing a check
(Chall-EE3 not echoed, a wrong signature) is refused as any answer is.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from clients.errors import RegistrationOutcomeUnknown
from clients.merchant.config import load as load_merchant_config
from clients.merchant.registration import PENDING_FILE
from gateway.ca import merchant as ca_merchant
from setcore.credentials import Credentials
from setcore.errors import ErrorCode, ProtocolError
from setcore.freshness import new_id
from setcore.profiles import EC
from setcore.registration_certreq import CertAnswer
from setpay.v1 import crypto_pb2
from tests.clients.authority_calls import sent_cert_requests
from tests.clients.bank_support import (
    RunningBank,
    configure_merchant,
    merchant_registrar,
    register_merchant,
)
from tests.clients.cli_support import run_cli
from tests.clients.merchant.test_registration_lost_answer import _stored

# A CertStatusCode no release of this build defines.
LATER = 42
# What ``setpay merchant`` exits with when an outcome is unknown.
EXIT_OUTCOME_UNKNOWN = 4
Builder = Callable[..., bytes]


def _answering(monkeypatch: pytest.MonkeyPatch, alter: Callable[[bytes], bytes] | None = None,
               *, chall_ee3: bytes | None = None) -> None:  # fmt: skip
    """The Merchant CA answers every CertReq and CertInq with status LATER, as it signs
    any answer (``chall_ee3``: echoed in place of the request's; ``alter``: applied to
    the signed answer's bytes)."""
    real: Builder = ca_merchant.build_merchant_cert_response

    def later(ca: Credentials, answer: CertAnswer, status: int, **kwargs: object) -> bytes:
        if chall_ee3 is not None:
            answer = replace(answer, chall_ee3=chall_ee3)
        body = real(ca, answer, LATER, **kwargs)
        return body if alter is None else alter(body)

    monkeypatch.setattr(ca_merchant, "build_merchant_cert_response", later)


def _bad_signature(body: bytes) -> bytes:
    signed = crypto_pb2.Signed.FromString(body)
    value = bytearray(signed.signatures[0].value)
    value[10] ^= 0x01  # inside r: a well-formed signature, of other bytes
    signed.signatures[0].value = bytes(value)
    return signed.SerializeToString()


def _register(directory: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    return run_cli(["merchant", "--dir", str(directory), "register"], capsys)


def _check_outcome_unknown(directory: Path, status: int, out: str, err: str) -> None:
    """Exit 4, said plainly: the code, outcome unknown, nothing installed, what to do."""
    assert (status, out) == (EXIT_OUTCOME_UNKNOWN, ""), err
    assert err.startswith("setpay merchant: the Merchant CA answered the certificate request "
                          "with CertStatusCode 42, a status this release of setpay does not "
                          "know"), err  # fmt: skip
    for said in (
        "the outcome is unknown", "may have pended or refused the request",
        "no certificate was installed", "Upgrade setpay, then run `setpay merchant register` again",
        f"the pending request is kept in {PENDING_FILE}",
    ):  # fmt: skip
        assert said in err, err
    assert "REQUEST_COMPLETE" not in err and "refused:" not in err


def test_an_unknown_status_is_an_outcome_unknown_and_installs_nothing(
    bank: RunningBank, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    directory = tmp_path / "m-later"
    configure_merchant(bank, directory, "m-later")
    _answering(monkeypatch)  # the CA certifies, and says so with a later status
    sent = sent_cert_requests(monkeypatch)

    _check_outcome_unknown(directory, *_register(directory, capsys))
    assert len(sent) == 1  # asked once, not again by itself
    assert set(_stored(directory).values()) == {None}  # no certificate stored
    assert not load_merchant_config(directory).chain.exists()
    record = json.loads((directory / PENDING_FILE).read_text())
    assert "cert_request" in record  # the request is kept, as it was sent

    # The next run asks about the same request (its very bytes), once, and reads the
    # CA's answer: still a status this release does not know.
    _check_outcome_unknown(directory, *_register(directory, capsys))
    assert sent == [sent[0], sent[0]]
    assert set(_stored(directory).values()) == {None}
    assert json.loads((directory / PENDING_FILE).read_text()) == record


def test_a_renewal_answered_with_an_unknown_status_keeps_the_current_certificates(
    bank: RunningBank, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    directory = tmp_path / "m-later-renew"
    configure_merchant(bank, directory, "m-later-renew")
    register_merchant(directory)
    before = _stored(directory)
    chain = load_merchant_config(directory).chain.read_bytes()
    _answering(monkeypatch)

    status, out, err = run_cli(["merchant", "--dir", str(directory), "renew"], capsys)
    assert (status, out) == (EXIT_OUTCOME_UNKNOWN, ""), err
    assert "CertStatusCode 42" in err and "run `setpay merchant renew` again" in err
    after = _stored(directory)
    # The current certificates stay; the renewal's new keys are kept, uncertified, for
    # the request kept in registration.json.
    assert {k: v for k, v in after.items() if k in before} == before
    assert [v for k, v in after.items() if k not in before] == [None, None]
    assert load_merchant_config(directory).chain.read_bytes() == chain
    assert (directory / PENDING_FILE).exists()


def test_an_unknown_status_not_echoing_chall_ee3_is_refused_not_unknown(
    bank: RunningBank, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    directory = tmp_path / "m-later-chall"
    configure_merchant(bank, directory, "m-later-chall")
    _answering(monkeypatch, chall_ee3=new_id())
    status, out, err = _register(directory, capsys)
    assert (status, out) == (1, "")
    assert err == "setpay merchant: ERROR_CODE_CHALLENGE_MISMATCH: Chall-EE3 not echoed\n"
    assert set(_stored(directory).values()) == {None}


def test_an_unknown_status_under_a_wrong_signature_is_refused_not_unknown(
    bank: RunningBank, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "m-later-sig"
    configure_merchant(bank, directory, "m-later-sig")
    _answering(monkeypatch, _bad_signature)
    with merchant_registrar(directory) as registrar, pytest.raises(ProtocolError) as refused:
        registrar.register(EC)
    assert not isinstance(refused.value, RegistrationOutcomeUnknown)
    assert refused.value.code == ErrorCode.ERROR_CODE_SIGNATURE_FAILURE, refused.value
    assert set(_stored(directory).values()) == {None}
