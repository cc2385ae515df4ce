"""A bank does not start on a certificate it presents that no peer accepts, and the
command its refusal names mends it.

Before, a bank whose ``certs/gateway-sig.der`` (or ``gateway-kex.der``, or a CA's) was
replaced by one of another brand, an ended one, a revoked one or one of another type or
usage started and served: every merchant refused it message by message. The certificates
here certify the bank's own keys, so every check that ran before passes.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cli.main import main as setpay
from gateway.bank_pki import BankIncomplete, bank_keys_uri, load_bank_pki
from gateway.bank_presented import _presented
from gateway.config import BankConfig, load
from gateway.gateway_pruning import prune_gateway_keys
from gateway.process import start_bank
from gateway.provisioning import init_bank
from hsm.base import KeyBackend
from hsm.uri import open_backend
from setcore.credentials import Credentials
from setcore.encoding import thumbprint
from setcore.pki import roles
from setcore.pki.certificate import common_name_of, load_certificate
from setcore.pki.extensions import MerchantData
from setcore.pki.hierarchy import create_brand
from setcore.pki.issuance import (
    IssuingCA,
    issue_ca_certificate,
    issue_ca_key_exchange,
    issue_gateway,
    issue_merchant,
)
from setcore.pki.roles import CertificateUsage
from setcore.pki.truststore import TrustCounters
from setcore.profiles import EC

from .advised_commands import advised, advised_argv, spaced_root

#: What a refusal of the gateway's certificate says after the peer's reason.
RENEW = "so the bank does not start on it: renew the gateway's keys with `setpay ca renew-gateway"


def _bank(parent: Path, at: datetime | None = None) -> BankConfig:
    """A bank as ``setpay init`` makes it, in a directory a shell would split."""
    directory = spaced_root(parent) / "bank"
    init_bank(directory, profile="ec", env={}, at=at)
    return load(directory / "setpay.toml", env={})


def _certs(config: BankConfig) -> Path:
    return config.path(config.certs_dir)


def _issuing(backend: KeyBackend, config: BankConfig, label: str, *chain: str) -> IssuingCA:
    """The bank's own CA of ``label``, as ``setpay init`` made it."""
    der = (_certs(config) / f"{label}.der").read_bytes()
    issuers = tuple((_certs(config) / f"{name}.der").read_bytes() for name in chain)
    return IssuingCA(backend, backend.get(label), der, issuers)


Replacement = Callable[[KeyBackend, BankConfig], bytes]


def _replace(config: BankConfig, name: str, made: Replacement) -> None:
    """``certs/NAME.der`` replaced by what ``made`` issues for the same key."""
    backend = open_backend(bank_keys_uri(config))
    try:
        der = made(backend, config)
    finally:
        backend.close()
    (_certs(config) / f"{name}.der").write_bytes(der)


def _gateway_name(config: BankConfig) -> str:
    return common_name_of(load_certificate((_certs(config) / "gateway-sig.der").read_bytes()))


def _foreign_gateway(backend: KeyBackend, config: BankConfig) -> bytes:
    """The gateway's signature key certified by another brand of the same names: its CA
    is found by name, and its signature does not verify under the brand's key."""
    other = open_backend("soft:ephemeral")
    try:
        brand = create_brand(other, EC, config.brand_id)
        return issue_gateway(
            brand.gateway_ca.ca, backend.get("gateway-sig").public_key,
            CertificateUsage.SIGNATURE, _gateway_name(config),
        )  # fmt: skip
    finally:
        other.close()


def _ended_gateway(backend: KeyBackend, config: BankConfig) -> bytes:
    """The gateway's key-exchange key certified by its own CA, ended yesterday."""
    return issue_gateway(
        _issuing(backend, config, "pca", "brand-root"), backend.get("gateway-kex").public_key,
        CertificateUsage.KEY_EXCHANGE, _gateway_name(config),
        at=datetime.now(UTC) - timedelta(days=3), lifetime=timedelta(days=2),
    )  # fmt: skip


def _gateway_as_merchant(backend: KeyBackend, config: BankConfig) -> bytes:
    """The gateway's signature key certified by the brand's Merchant CA, as a merchant."""
    return issue_merchant(
        _issuing(backend, config, "mca", "brand-root"), backend.get("gateway-sig").public_key,
        CertificateUsage.SIGNATURE, MerchantData("m-1", "A merchant", pan_allowed=False),
    )  # fmt: skip


def _gateway_signature_for_key_exchange(backend: KeyBackend, config: BankConfig) -> bytes:
    """The gateway's signature key certified by its own CA as a key-exchange key."""
    return issue_gateway(
        _issuing(backend, config, "pca", "brand-root"), backend.get("gateway-sig").public_key,
        CertificateUsage.KEY_EXCHANGE, _gateway_name(config),
    )  # fmt: skip


def _refused(config: BankConfig) -> str:
    """The bank's refusal to load, and to start (nothing served, nothing left open)."""
    with pytest.raises(BankIncomplete) as refused:
        load_bank_pki(config)
    with pytest.raises(BankIncomplete) as again:
        start_bank(config, listen="127.0.0.1:0", ca_listen="127.0.0.1:0")
    assert str(again.value) == str(refused.value)
    return str(refused.value)


def _starts(config: BankConfig) -> None:
    pki = load_bank_pki(config)
    pki.close()


def _run_advice(refusal: str, config: BankConfig) -> None:
    """The command the refusal names, parsed by the real parser (this bank's file) and
    run as pasted."""
    args = advised(refusal, config.base_dir / "setpay.toml")  # a command that exists
    assert (args.command, args.ca_command) == ("ca", "renew-gateway")
    assert setpay(advised_argv(refusal)[1:]) == 0


def test_a_bank_as_made_starts(tmp_path: Path) -> None:
    config = _bank(tmp_path)
    running = start_bank(config, listen="127.0.0.1:0", ca_listen="127.0.0.1:0")
    running.stop(None)


@pytest.mark.parametrize(
    ("name", "made", "reason"),
    [
        ("gateway-sig", _foreign_gateway,
         "ERROR_CODE_INVALID_CERTIFICATE: certificate signature does not verify"),
        ("gateway-kex", _ended_gateway, "ERROR_CODE_EXPIRED_CERTIFICATE: certificate "),
        ("gateway-sig", _gateway_as_merchant,
         "ERROR_CODE_WRONG_CERTIFICATE_ROLE: CERTIFICATE_TYPE_MERCHANT where "
         "CERTIFICATE_TYPE_PAYMENT_GATEWAY is required"),
        ("gateway-sig", _gateway_signature_for_key_exchange,
         "ERROR_CODE_WRONG_CERTIFICATE_ROLE: key-exchange certificate where signature is "
         "required"),
    ],
    ids=["foreign-root", "ended", "merchant-type", "key-exchange-usage"],
)  # fmt: skip
def test_a_gateway_certificate_no_peer_accepts_stops_the_bank_and_renewal_mends_it(
    tmp_path: Path, name: str, made: Replacement, reason: str
) -> None:
    config = _bank(tmp_path)
    _replace(config, name, made)
    refusal = _refused(config)
    assert refusal.startswith(f"{name}.der: no peer accepts this certificate ({reason}")
    assert RENEW in refusal
    assert refusal.endswith("` (the bank stopped), then start it")
    _run_advice(refusal, config)
    _starts(config)


def test_a_gateway_certificate_the_banks_own_crl_revokes_stops_the_bank(
    tmp_path: Path,
) -> None:
    config = _bank(tmp_path)
    der = (_certs(config) / "gateway-sig.der").read_bytes()
    revoke = ["ca", "revoke", "--config", str(config.base_dir / "setpay.toml")]
    assert setpay([*revoke, "--thumb", thumbprint(der).hex()]) == 0
    refusal = _refused(config)
    assert refusal.startswith(
        "gateway-sig.der: no peer accepts this certificate (ERROR_CODE_REVOKED_CERTIFICATE: "
        f"certificate {_gateway_name(config)!r} is revoked)"
    )
    assert RENEW in refusal
    _run_advice(refusal, config)
    _starts(config)


def test_pruning_runs_on_a_bank_that_does_not_start(tmp_path: Path) -> None:
    config = _bank(tmp_path)
    _replace(config, "gateway-kex", _ended_gateway)
    _refused(config)
    assert not prune_gateway_keys(config, apply=False).files


def test_a_gateway_certificate_that_ends_soon_starts(tmp_path: Path) -> None:
    config = _bank(tmp_path)

    def ending(backend: KeyBackend, config: BankConfig) -> bytes:
        return issue_gateway(
            _issuing(backend, config, "pca", "brand-root"), backend.get("gateway-sig").public_key,
            CertificateUsage.SIGNATURE, _gateway_name(config), lifetime=timedelta(days=2),
        )  # fmt: skip

    _replace(config, "gateway-sig", ending)
    _starts(config)


def _foreign_ca(backend: KeyBackend, config: BankConfig) -> bytes:
    """The Merchant CA's key certified by another brand's root of the same name."""
    other = open_backend("soft:ephemeral")
    try:
        brand = create_brand(other, EC, config.brand_id)
        name = common_name_of(load_certificate((_certs(config) / "mca.der").read_bytes()))
        return issue_ca_certificate(
            brand.root, backend.get("mca").public_key, roles.MERCHANT_CA, common_name=name
        )
    finally:
        other.close()


def _ca_of_another_type(backend: KeyBackend, config: BankConfig) -> bytes:
    """The Merchant CA's key certified by the brand's own root as a Cardholder CA."""
    return issue_ca_certificate(
        _issuing(backend, config, "brand-root"), backend.get("mca").public_key,
        roles.CARDHOLDER_CA, common_name="a Merchant CA of the wrong type",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("made", "reason"),
    [
        (_foreign_ca, "ERROR_CODE_INVALID_CERTIFICATE: certificate signature does not verify"),
        (_ca_of_another_type,
         "ERROR_CODE_WRONG_CERTIFICATE_ROLE: CERTIFICATE_TYPE_CARDHOLDER_CA where "
         "CERTIFICATE_TYPE_MERCHANT_CA is required"),
    ],
    ids=["foreign-root", "cardholder-ca-type"],
)  # fmt: skip
def test_a_ca_certificate_not_the_brands_stops_the_bank(
    tmp_path: Path, made: Replacement, reason: str
) -> None:
    config = _bank(tmp_path)
    _replace(config, "mca", made)
    assert _refused(config) == (
        f"mca.der: no peer accepts this certificate ({reason}), so the bank does not start "
        "on it: put back the certificate the brand root issued for this key (from the "
        "bank's backup): no setpay command re-issues a CA's certificates yet"
    )


def test_an_ended_ca_key_exchange_certificate_is_logged_and_the_bank_starts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # No setpay command re-issues it, and a bank of an earlier release has them end a
    # year after init: that CA stops answering registrations (gateway.ca.standing), the
    # bank does not stop.
    config = _bank(tmp_path)

    def ended(backend: KeyBackend, config: BankConfig) -> bytes:
        return issue_ca_key_exchange(
            _issuing(backend, config, "mca", "brand-root"), backend.get("mca-kex").public_key,
            at=datetime.now(UTC) - timedelta(days=3), lifetime=timedelta(days=2),
        )  # fmt: skip

    _replace(config, "mca-kex", ended)
    _starts(config)
    assert any(
        r.getMessage().startswith("mca-kex.der: no peer accepts it any longer "
                                  "(ERROR_CODE_EXPIRED_CERTIFICATE")
        for r in caplog.records
    )  # fmt: skip


def test_an_earlier_release_bank_a_year_on_is_told_to_renew_and_renewing_mends_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Made a year and a day ago by an earlier release: the gateway's certificates have
    # ended, and so has pca-kex.der, which lasted a year like them. Only pca.der is in the
    # gateway's chain: renewing mends the bank (it used to be told it does not help).
    made = datetime.now(UTC) - timedelta(days=366)
    config = _bank(tmp_path, at=made)

    def earlier_release(backend: KeyBackend, config: BankConfig) -> bytes:
        return issue_ca_key_exchange(
            _issuing(backend, config, "pca", "brand-root"), backend.get("pca-kex").public_key,
            at=made, lifetime=timedelta(days=365),
        )  # fmt: skip

    _replace(config, "pca-kex", earlier_release)
    refusal = _refused(config)
    assert refusal.startswith(
        "gateway-sig.der: no peer accepts this certificate (ERROR_CODE_EXPIRED_CERTIFICATE: "
    )
    assert RENEW in refusal
    assert any(
        r.getMessage().startswith("pca-kex.der: no peer accepts it any longer")
        for r in caplog.records
    )
    _run_advice(refusal, config)
    _starts(config)


def test_judging_at_start_leaves_the_trust_counters_and_cache_empty(tmp_path: Path) -> None:
    # Each worker's setpay_certificate_cache_lookups_total{result="miss"} used to start at
    # 8, the certificates the bank judged, before any request.
    config = _bank(tmp_path)
    pki = load_bank_pki(config)
    try:
        assert pki.trust.counters == TrustCounters(verifications=0, cache_hits=0)
        gateway = pki.gateway
        pki.trust.verify_chain(gateway.signature_cert, gateway.chain, roles.PAYMENT_GATEWAY,
                               CertificateUsage.SIGNATURE)  # fmt: skip
        assert pki.trust.counters == TrustCounters(verifications=1, cache_hits=0)  # not cached
    finally:
        pki.close()


def test_an_ended_payment_gateway_ca_certificate_stops_the_bank_and_says_renewing_does_not_help(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = _bank(tmp_path)

    def ended(backend: KeyBackend, config: BankConfig) -> bytes:
        name = common_name_of(load_certificate((_certs(config) / "pca.der").read_bytes()))
        return issue_ca_certificate(
            _issuing(backend, config, "brand-root"), backend.get("pca").public_key,
            roles.PAYMENT_GATEWAY_CA, common_name=name,
            at=datetime.now(UTC) - timedelta(days=3), lifetime=timedelta(days=2),
        )  # fmt: skip

    _replace(config, "pca", ended)
    refusal = _refused(config)
    assert refusal.startswith(
        "gateway-sig.der: no peer accepts this certificate (ERROR_CODE_EXPIRED_CERTIFICATE: "
    )
    assert refusal.endswith(
        "so the bank does not start on it: the Payment Gateway CA's own certificate no "
        "longer stands (see its line above), and renewing the gateway's keys does not help "
        "while it does not: no setpay command re-issues a CA's certificates yet"
    )
    assert any(
        r.getMessage().startswith("pca.der: no peer accepts it any longer") for r in caplog.records
    )


def test_a_party_presents_both_certificates_or_is_refused() -> None:
    # A bank's parties hold both (load_bank_pki refuses a bank without either file); a
    # party without a key-exchange certificate is refused, never judged on half.
    backend = open_backend("soft:ephemeral")
    try:
        mca = create_brand(backend, EC, "brand").merchant_ca
        both = Credentials(backend, mca.ca.key, mca.ca.der, (), mca.key_exchange_key,
                           mca.key_exchange_der)  # fmt: skip
        held = _presented(both, roles.MERCHANT_CA, (), (mca.ca.der,))
        assert [(p.name, p.der, p.chain, p.usage) for p in held] == [
            (f"{mca.ca.key.label}.der", mca.ca.der, (), CertificateUsage.SIGNATURE),
            (f"{mca.key_exchange_key.label}.der", mca.key_exchange_der, (mca.ca.der,),
             CertificateUsage.KEY_EXCHANGE),
        ]  # fmt: skip
        signing_only = Credentials(backend, mca.ca.key, mca.ca.der)
        with pytest.raises(BankIncomplete, match="no key-exchange certificate"):
            _presented(signing_only, roles.MERCHANT_CA, (), (mca.ca.der,))
    finally:
        backend.close()
