"""``clients.identity.discard_uncertified``: what the wallet and the merchant do with a key
version their registration will never certify."""

from __future__ import annotations

import logging

import pytest

from clients.identity import discard_uncertified
from hsm.base import KeyAlgorithm, KeyUsage
from hsm.software import SoftwareBackend

LABEL = "card-sig"


def test_the_version_goes_and_one_already_gone_is_no_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    backend = SoftwareBackend.ephemeral()
    kept = backend.generate(LABEL, KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    uncertified = backend.generate(LABEL, KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    log = logging.getLogger("setpay.wallet")
    with caplog.at_level(logging.DEBUG):
        discard_uncertified(backend, uncertified, log)
        assert backend.list_keys() == [kept]  # the other version stays
        discard_uncertified(backend, uncertified, log)  # as an earlier run left it
    assert caplog.records == []


def test_a_backend_that_refuses_is_a_warning_on_the_callers_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    backend = SoftwareBackend.ephemeral()
    key = backend.generate(LABEL, KeyUsage.SIGNATURE, KeyAlgorithm.EC_P256)
    backend.close()  # it refuses every call now, as a token gone away does
    with caplog.at_level(logging.WARNING):
        discard_uncertified(backend, key, logging.getLogger("setpay.merchant"))
    (record,) = caplog.records
    assert (record.name, record.levelno) == ("setpay.merchant", logging.WARNING)
    assert record.getMessage() == (
        f"could not destroy the uncertified {key!r}: software key backend is closed"
    )
