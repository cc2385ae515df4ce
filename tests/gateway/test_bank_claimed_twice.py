"""A bank on a token whose key's newest version two keys claim (made by processes that
took different key locks, ``hsm.token_claims``): which lookups refuse, and which go on.

The token-sealing key is "the newest" of its label with nothing to check it against: a
bank started on the version below sealed and opened cap tokens with a key it did not
mean (those sealed under the newest failed as sealed to another), so the start is
refused, naming both CKA_IDs. The gateway's own keys have their certificates to say
which version is meant (``certified_version``): an uncertified renewal claimed twice
leaves the bank on its certified key, said once.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from gateway.bank_pki import (
    GATEWAY_SIG_LABEL,
    GATEWAY_TOKEN_LABEL,
    load_bank_pki,
    open_ca_store,
    unused_gateway_certificates,
)
from gateway.config import BankConfig
from hsm.base import KeyAlgorithm, KeyUsage
from hsm.errors import PermanentBackendError
from hsm.pkcs11 import Pkcs11Backend
from tests.hsm.claims_support import claim_again
from tests.hsm.testbed import SoftToken

from .ledger_keys_support import new_bank


def _claimed_twice(token: SoftToken, label: str, usage: KeyUsage) -> None:
    """Make ``label`` v2 on ``token``, and another key claiming v2 too."""
    backend = Pkcs11Backend(token.config())
    try:
        assert backend.generate(label, usage, KeyAlgorithm.EC_P256).version == 2
        claim_again(backend, label, 2, bytes(16))
    finally:
        backend.close()


def _bank(tmp_path: Path, token: SoftToken) -> BankConfig:
    return new_bank(tmp_path / "bank", token.uri())


@pytest.mark.integration
def test_a_bank_whose_token_sealing_key_newest_is_claimed_twice_does_not_start(
    tmp_path: Path, token: SoftToken
) -> None:
    config = _bank(tmp_path, token)
    load_bank_pki(config).close()  # starts before
    _claimed_twice(token, GATEWAY_TOKEN_LABEL, KeyUsage.TOKEN_SEALING)
    with pytest.raises(PermanentBackendError, match=r"'gateway-token' v2 .* claimed by 2 keys"):
        load_bank_pki(config)


@pytest.mark.integration
def test_a_bank_whose_uncertified_renewal_is_claimed_twice_starts_on_its_certified_key(
    tmp_path: Path, token: SoftToken, caplog: pytest.LogCaptureFixture
) -> None:
    config = _bank(tmp_path, token)
    _claimed_twice(token, GATEWAY_SIG_LABEL, KeyUsage.SIGNATURE)
    with caplog.at_level(logging.WARNING, logger="setpay.bank"):
        pki = load_bank_pki(config)
    try:
        assert pki.gateway.signature_key.version == 1
        said = [r.getMessage() for r in caplog.records if r.name == "setpay.bank"]
        assert any(
            "'gateway-sig' v2 " in line and "claimed by 2 keys" in line
            and line.endswith("; using v1, the key gateway-sig.der certifies")
            for line in said
        ), said  # fmt: skip
        # Newer versions' certificates cannot be looked for while v2 is two keys: said at
        # start (which goes on), and a renewal, which revokes them first, is refused.
        assert any("could not look for unused gateway certificates" in line for line in said)
        store = open_ca_store(config)
        try:
            with pytest.raises(PermanentBackendError, match="claimed by 2 keys"):
                unused_gateway_certificates(store, pki)
        finally:
            store.close()
    finally:
        pki.close()
