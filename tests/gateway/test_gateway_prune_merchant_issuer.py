"""Which merchants ``setpay ca prune-gateway`` asks the ledger for: those the Merchant CA
the bank holds certified, never those of another Merchant CA recorded in ``ca.db``.

A ledger lacking the account of a merchant the bank's Merchant CA certified is not the
bank's (``ForeignLedger``): the certification opened that account first. A merchant
certificate another Merchant CA issued (an earlier one of the brand, here made beside
the bank's under the same root; or a row copied in) says nothing of this bank's ledger:
counted, it refused every pruning of the bank's own ledger. The merchants are read by
issuer from ``ca.db`` (``StoreTransaction.subjects_issued``), not from a listing of every
certificate.

Real parts: ``init_bank``, ``renew-gateway``, ``revoke`` through the CLI, the bank's own
keys and CAs, certificates recorded in ``ca.db`` as a certification records them.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.bank_pki import GATEWAY_KEX_LABEL, load_bank_pki, open_ca_store
from gateway.ca.publishing import describe_certificate, record_certificate
from gateway.config import load
from gateway.gateway_pruning import prune_gateway_keys
from gateway.pruning_ledger import ForeignLedger
from hsm.base import KeyAlgorithm, KeyUsage
from setcore.pki import roles
from setcore.pki.extensions import MerchantData
from setcore.pki.issuance import IssuingCA, issue_ca_certificate, issue_merchant
from setcore.pki.roles import CertificateUsage
from tests.cli.test_ca_prune_unanswered import Renewed, _renewed, _revoke
from tests.gateway.ledger.ledger_support import MERCHANT

OTHER_MERCHANT = "M-other-merchant-ca"


@pytest.fixture
def bank(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Renewed:
    """A stopped bank on the SQLite ledger ``init_bank`` made (its merchant ``MERCHANT``'s
    account opened), renewed once."""
    return _renewed("sqlite", request, tmp_path / "bank", monkeypatch, capsys)


def _certify(config_path: Path, merchant_id: str, *, by_another_ca: bool = False) -> bytes:
    """A merchant signature certificate recorded in ca.db as a certification records it:
    issued by the bank's Merchant CA, or by another Merchant CA under the bank's root (a
    key and certificate of its own, as one made before a renewal of the CA). Its DER."""
    config = load(config_path)
    pki = load_bank_pki(config, judge_presented=False)
    try:
        keys = pki.authority_keys()
        issuing = keys.merchant.issuing
        if by_another_ca:
            key = pki.backend.generate("test-older-mca", KeyUsage.CA_SIGNING, KeyAlgorithm.EC_P256)
            der = issue_ca_certificate(
                keys.root, key.public_key, roles.MERCHANT_CA, common_name="Older Merchant CA"
            )
            issuing = IssuingCA(pki.backend, key, der, keys.root.chain)
            assert issuing.thumbprint != keys.merchant.issuing.thumbprint
        public = ec.generate_private_key(ec.SECP256R1()).public_key()
        merchant = MerchantData(merchant_id, "Prune Issuer Shop", pan_allowed=False)
        der = issue_merchant(issuing, public, CertificateUsage.SIGNATURE, merchant)
        with contextlib.closing(open_ca_store(config)) as store, store.write() as tx:
            record_certificate(tx, der, issuing, datetime.now(UTC))
        return der
    finally:
        pki.close()


def _with_revoked_kept_file(renewed: Renewed, capsys: pytest.CaptureFixture[str]) -> datetime:
    """The kept key-exchange certificate revoked: a pruning deletes it and its key, so it
    reads the ledger. Now, for the pruning."""
    _revoke(renewed, renewed.kept.read_bytes(), capsys)
    return datetime.now(UTC)


def test_a_merchant_another_merchant_ca_certified_is_not_asked_of_the_banks_ledger(
    bank: Renewed, capsys: pytest.CaptureFixture[str]
) -> None:
    """Counted (the issuer filter removed), its missing account refused the pruning as
    one of a foreign ledger: ForeignLedger, 1 of the 2 merchants, nothing deleted."""
    renewed = bank
    _certify(renewed.made.config_path, MERCHANT)  # its account opened in the bank's ledger
    _certify(renewed.made.config_path, OTHER_MERCHANT, by_another_ca=True)  # none there
    at = _with_revoked_kept_file(renewed, capsys)
    config = load(renewed.made.config_path)

    dry = prune_gateway_keys(config, apply=False, at=at)
    assert [item.what for item in dry.files] == ["certs/gateway-kex.v1.der"]
    assert dry.ledger == renewed.ledger and dry.unanswered is None

    done = prune_gateway_keys(config, apply=True, at=at)
    assert done.applied and not renewed.kept.exists()
    assert (GATEWAY_KEX_LABEL, 1) not in renewed.versions()


def test_a_merchant_the_banks_merchant_ca_certified_is_still_asked_of_it(
    bank: Renewed, capsys: pytest.CaptureFixture[str]
) -> None:
    """The other side of the filter: one of the bank's Merchant CA whose account the
    ledger lacks still refuses (a read that found none would let a foreign ledger by)."""
    renewed = bank
    _certify(renewed.made.config_path, "M-bank-merchant-without-account")
    _certify(renewed.made.config_path, OTHER_MERCHANT, by_another_ca=True)
    at = _with_revoked_kept_file(renewed, capsys)
    before = renewed.versions()

    config = load(renewed.made.config_path)
    for apply in (False, True):
        with pytest.raises(ForeignLedger, match="no settlement account for 1 of the 1 merchants"):
            prune_gateway_keys(config, apply=apply, at=at)
    assert renewed.kept.exists() and renewed.versions() == before


def test_the_issuers_subjects_are_read_by_issuer_and_type(
    bank: Renewed, capsys: pytest.CaptureFixture[str]
) -> None:
    """``subjects_issued``: that CA's certificates of that type, revoked ones too, each
    subject once; another CA's, or another type under that CA's thumbprint, never."""
    renewed = bank
    path = renewed.made.config_path
    first = _certify(path, "M-twice")
    _certify(path, "M-twice")
    revoked = _certify(path, "M-revoked")
    _certify(path, OTHER_MERCHANT, by_another_ca=True)
    _revoke(renewed, revoked, capsys)
    config = load(path)
    pki = load_bank_pki(config, judge_presented=False)
    try:
        mca = pki.mca.signature_thumb
        odd = describe_certificate(first, mca, datetime.now(UTC))
        # A row of another type under the Merchant CA's thumbprint (none is ever issued).
        odd_row = type(odd)(
            b"\x01" * 32, odd.serial + 1, mca, roles.CARDHOLDER, odd.usage, "C-not-a-merchant",
            odd.der, odd.not_after_ms, odd.issued_ms,
        )  # fmt: skip
        with contextlib.closing(open_ca_store(config)) as store:
            with store.write() as tx:
                tx.add_certificate(odd_row)
            with store.read() as tx:
                merchants = tx.subjects_issued(mca, roles.MERCHANT)
                others = tx.subjects_issued(pki.pca.signature_thumb, roles.MERCHANT)
                gateways = tx.subjects_issued(pki.pca.signature_thumb, roles.PAYMENT_GATEWAY)
    finally:
        pki.close()
    assert merchants == frozenset({"M-twice", "M-revoked"})
    assert others == frozenset()
    assert len(gateways) == 1  # the bank's gateway, renewed: one subject
