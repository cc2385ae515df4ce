"""A bank starting while its CA keys cannot re-publish revocation data: it starts on
what ca.db holds while that is current, and refuses to start once it is not."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

import pytest

from gateway.bank_pki import BankIncomplete, BankPki, load_bank_pki, open_ca_store
from gateway.ca import AuthorityKeys
from gateway.config import BankConfig, load
from gateway.provisioning import init_bank
from hsm.errors import TransientBackendError

from .ca.revocation_support import DUE_AGE, LAPSED_AGE, TokenGone, authority_keys, publish_dated


@pytest.fixture
def config(tmp_path: Path) -> BankConfig:
    init_bank(tmp_path / "bank", profile="ec", env={})
    return load(tmp_path / "bank" / "setpay.toml", env={})


def _publish_aged(config: BankConfig, age: timedelta) -> None:
    pki, store = load_bank_pki(config), open_ca_store(config)
    try:
        publish_dated(store, pki, age)
    finally:
        store.close()
        pki.close()


def _token_gone(monkeypatch: pytest.MonkeyPatch) -> None:
    def gone(pki: BankPki) -> AuthorityKeys:
        return authority_keys(pki, TokenGone(pki.backend))

    monkeypatch.setattr(BankPki, "authority_keys", gone)


def test_a_start_goes_on_with_current_data_when_re_publishing_fails(
    config: BankConfig, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _publish_aged(config, DUE_AGE)  # due for re-publishing, current for an hour more
    _token_gone(monkeypatch)
    with caplog.at_level(logging.WARNING, logger="setpay.bank"):
        pki = load_bank_pki(config)
    try:
        assert pki.trust.revocation is not None
        assert "could not re-publish the CRLs and BCI at start" in caplog.text
        assert "TransientBackendError" in caplog.text
    finally:
        pki.close()


def test_a_start_with_nothing_current_fails_naming_the_refresh_failure(
    config: BankConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    _publish_aged(config, LAPSED_AGE)
    _token_gone(monkeypatch)
    with pytest.raises(BankIncomplete, match="cannot re-publish") as caught:
        load_bank_pki(config)
    assert "TransientBackendError: token removed" in str(caught.value)
    assert isinstance(caught.value.__cause__, TransientBackendError)
