"""A merchant does not serve on a certificate it presents that no peer accepts, and what
its refusal advises mends it. Against the real bank and its CA.

Before, a merchant whose signature or key-exchange certificate (stored beside its key)
was replaced by one of another brand, an ended one, a revoked one, or one of another type
or usage served: every wallet and the gateway refused it, message by message. The
certificates here certify the merchant's own keys, so every check that ran before passes.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cli.main import build_parser
from clients.errors import ConfigError
from clients.identity import read_certificates, write_certificates
from clients.merchant.config import load as load_merchant_config
from clients.merchant.registration import KEY_EXCHANGE_LABEL, SIGNATURE_LABEL
from clients.merchant.runtime import Merchant
from gateway.ca.publishing import revoke
from hsm.base import KeyBackend
from hsm.uri import open_backend
from setcore.encoding import thumbprint
from setcore.pki.certificate import load_certificate
from setcore.pki.extensions import MerchantData, read_merchant_data
from setcore.pki.hierarchy import create_brand
from setcore.pki.issuance import IssuingCA, issue_gateway, issue_merchant
from setcore.pki.roles import CertificateUsage
from setcore.profiles import EC
from tests.clients.bank_support import RunningBank, configure_merchant, register_merchant
from tests.clients.cli_support import run_cli

#: What a refused signature certificate neither ended nor revoked advises: not ``renew``,
#: which the Merchant CA refuses when signed under such a certificate
#: (``test_renewing_runs_...`` below), nor ``register``, which refuses while it is neither.
SIGNATURE_REMEDY = (
    "the Merchant CA refuses a renewal signed under it too, and register refuses while it "
    "has neither ended nor been revoked: put back the certificate the Merchant CA issued "
    "for this key, from the merchant's backup"
)


def _register_again(directory: Path) -> str:
    """What an ended or revoked one advises while the key-exchange certificate is still
    live, as here: have the acquirer revoke that first (the Merchant CA registers an ID
    none of whose certificates is live; run in ``test_register_again_kex``)."""
    der = _certificate(directory, KEY_EXCHANGE_LABEL)
    until = load_certificate(der).not_valid_after_utc
    thumb = ":".join(f"{byte:02X}" for byte in thumbprint(der))
    return (
        "the Merchant CA refuses a renewal signed under it too; the Merchant CA registers "
        "this merchant ID again only once none of its certificates is live, and these have "
        f"neither ended nor been revoked: {KEY_EXCHANGE_LABEL} v1 (certificate "
        f"{thumbprint(der).hex()[:8]}, until {until:%Y-%m-%d %H:%M} UTC: `setpay ca revoke "
        f"--config BANK_CONFIG --thumb {thumb}`); ask the acquirer to revoke each, "
        "BANK_CONFIG being the bank's setpay.toml; then register this merchant again, with "
        f"new keys, with `setpay merchant --dir {shlex.quote(str(directory))} register "
        "--account-file FILE`, FILE holding the settlement account id the bank handed out "
        "for it, then start it again"
    )


#: Makes a certificate for the key under a label of the merchant's backend: (label, DER).
Made = Callable[[RunningBank, KeyBackend], tuple[str, bytes]]


def _issuing(bank: RunningBank, side: str) -> IssuingCA:
    """The bank's Merchant (``mca``) or Payment Gateway (``pca``) CA."""
    party = getattr(bank.pki, side)
    return IssuingCA(
        bank.pki.backend, party.signature_key, party.signature_cert, (bank.pki.root_der,)
    )


def _registered(bank: RunningBank, directory: Path) -> Path:
    configure_merchant(bank, directory, directory.name)
    register_merchant(directory)
    return directory


def _certificate(directory: Path, label: str) -> bytes:
    config = load_merchant_config(directory)
    backend = open_backend(config.keys_uri())
    try:
        der = backend.certificate(backend.get(label))
    finally:
        backend.close()
    assert der is not None
    return der


def _store(directory: Path, label: str, der: bytes) -> None:
    """``der`` stored beside the newest version of ``label``, in place of its own."""
    config = load_merchant_config(directory)
    backend = open_backend(config.keys_uri())
    try:
        backend.store_certificate(backend.get(label), der)
    finally:
        backend.close()


def _replace(bank: RunningBank, directory: Path, made: Made) -> None:
    config = load_merchant_config(directory)
    backend = open_backend(config.keys_uri())
    try:
        label, der = made(bank, backend)
    finally:
        backend.close()
    _store(directory, label, der)


def _merchant_data(backend: KeyBackend) -> MerchantData:
    der = backend.certificate(backend.get(SIGNATURE_LABEL))
    assert der is not None
    data = read_merchant_data(load_certificate(der))
    assert data is not None
    return data


def _foreign(bank: RunningBank, backend: KeyBackend) -> tuple[str, bytes]:
    """The signature key certified by another brand of the same names."""
    other = open_backend("soft:ephemeral")
    try:
        brand = create_brand(other, EC, bank.config.brand_id)
        return SIGNATURE_LABEL, issue_merchant(
            brand.merchant_ca.ca, backend.get(SIGNATURE_LABEL).public_key,
            CertificateUsage.SIGNATURE, _merchant_data(backend),
        )  # fmt: skip
    finally:
        other.close()


def _ended(bank: RunningBank, backend: KeyBackend) -> tuple[str, bytes]:
    """The signature key certified by the brand's Merchant CA, ended yesterday."""
    return SIGNATURE_LABEL, issue_merchant(
        _issuing(bank, "mca"), backend.get(SIGNATURE_LABEL).public_key,
        CertificateUsage.SIGNATURE, _merchant_data(backend),
        at=datetime.now(UTC) - timedelta(days=3), lifetime=timedelta(days=2),
    )  # fmt: skip


def _for_key_exchange(bank: RunningBank, backend: KeyBackend) -> tuple[str, bytes]:
    """The signature key certified by the brand's Merchant CA as a key-exchange key."""
    return SIGNATURE_LABEL, issue_merchant(
        _issuing(bank, "mca"), backend.get(SIGNATURE_LABEL).public_key,
        CertificateUsage.KEY_EXCHANGE, _merchant_data(backend),
    )  # fmt: skip


def _refused(directory: Path) -> str:
    """The merchant opens (as the settlement commands do) but does not serve."""
    merchant = Merchant.open(load_merchant_config(directory))
    try:
        with pytest.raises(ConfigError) as refused:
            merchant.serve()
        assert merchant.port == 0
    finally:
        merchant.close()
    return str(refused.value)


def _serves(directory: Path) -> None:
    merchant = Merchant.open(load_merchant_config(directory))
    try:
        assert merchant.serve() > 0
    finally:
        merchant.close()


def _name(label: str) -> str:
    return f"the certificate of key {label!r} v1: no peer accepts it"


def test_a_registered_merchant_serves(bank: RunningBank, tmp_path: Path) -> None:
    _serves(_registered(bank, tmp_path / "m-as-issued"))


@pytest.mark.parametrize(
    ("made", "reason"),
    [
        (_foreign, "ERROR_CODE_INVALID_CERTIFICATE: certificate signature does not verify"),
        (_ended, "ERROR_CODE_EXPIRED_CERTIFICATE: certificate 'm-ended' ended at T"),
        (_for_key_exchange, "ERROR_CODE_WRONG_CERTIFICATE_ROLE: key-exchange certificate "
         "where signature is required"),
    ],
    ids=["foreign-root", "ended", "key-exchange-usage"],
)  # fmt: skip
def test_a_signature_certificate_no_peer_accepts_stops_serving_until_put_back(
    bank: RunningBank, tmp_path: Path, made: Made, reason: str
) -> None:
    directory = _registered(bank, tmp_path / f"m-{made.__name__.strip('_').replace('_', '-')}")
    issued = _certificate(directory, SIGNATURE_LABEL)  # the merchant's backup of it
    _replace(bank, directory, made)
    remedy = _register_again(directory) if made is _ended else SIGNATURE_REMEDY
    ended = load_certificate(_certificate(directory, SIGNATURE_LABEL)).not_valid_after_utc
    assert _refused(directory) == (
        f"{_name(SIGNATURE_LABEL)} ({reason}), so the merchant does not serve on it: {remedy}"
    ).replace("ended at T", f"ended at {ended:%Y-%m-%d %H:%M:%S} UTC")
    _store(directory, SIGNATURE_LABEL, issued)
    _serves(directory)


def test_renewing_runs_on_a_merchant_that_does_not_serve(
    bank: RunningBank, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # ``renew`` opens no Merchant, so nothing here stops it: it reaches the Merchant CA,
    # which refuses a renewal signed under an ended certificate (hence not the advice).
    directory = _registered(bank, tmp_path / "m-renew-ended")
    _replace(bank, directory, _ended)
    _refused(directory)
    status, _, err = run_cli(["merchant", "--dir", str(directory), "renew"], capsys)
    assert (status, err) == (
        1, "setpay merchant: peer refused the request: ERROR_CODE_EXPIRED_CERTIFICATE "
        "'expired certificate'\n",
    )  # fmt: skip


def _renews(directory: Path, refusal: str, capsys: pytest.CaptureFixture[str]) -> None:
    """The command the refusal names, parsed by the real parser and run as typed; the
    merchant serves after it."""
    argv = shlex.split(refusal.split("`")[1])
    assert argv[0] == "setpay"
    args = build_parser().parse_args(argv[1:])  # a command that exists
    assert (args.command, args.merchant_command, args.dir) == ("merchant", "renew", directory)
    status, out, err = run_cli(argv[1:], capsys)
    assert (status, err) == (0, "")
    assert out.startswith(f"renewed {directory.name}: ")
    _serves(directory)


def test_a_key_exchange_certificate_of_another_type_stops_serving_and_renewal_mends_it(
    bank: RunningBank, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The key-exchange key certified by the Payment Gateway CA, as a gateway's, and that
    CA sent in the merchant's chain: its peers find the chain, and the type wrong."""
    directory = _registered(bank, tmp_path / "m-gateway-type")
    config = load_merchant_config(directory)
    write_certificates(
        config.chain, [*read_certificates(config.chain), bank.pki.pca.signature_cert]
    )

    def as_gateway(bank: RunningBank, backend: KeyBackend) -> tuple[str, bytes]:
        key = backend.get(KEY_EXCHANGE_LABEL)
        return KEY_EXCHANGE_LABEL, issue_gateway(
            _issuing(bank, "pca"), key.public_key, CertificateUsage.KEY_EXCHANGE,
            directory.name, kem=key.kem,
        )  # fmt: skip

    _replace(bank, directory, as_gateway)
    refusal = _refused(directory)
    assert refusal == (
        f"{_name(KEY_EXCHANGE_LABEL)} (ERROR_CODE_WRONG_CERTIFICATE_ROLE: "
        "CERTIFICATE_TYPE_PAYMENT_GATEWAY where CERTIFICATE_TYPE_MERCHANT is required), so "
        "the merchant does not serve on it: renew its certificates with `setpay merchant "
        f"--dir {shlex.quote(str(directory))} renew`, then start it again"
    )
    _renews(directory, refusal, capsys)


def _revoked(bank: RunningBank, directory: Path, label: str) -> None:
    """The certificate of ``label`` revoked, and the CA's revocation data current."""
    revoke(
        bank.ca_store, bank.pki.authority_keys(), thumb=thumbprint(_certificate(directory, label))
    )
    bank.authority.watcher.check(force=True)


def test_a_revoked_signature_certificate_stops_serving(bank: RunningBank, tmp_path: Path) -> None:
    directory = _registered(bank, tmp_path / "m-revoked-sig")
    _revoked(bank, directory, SIGNATURE_LABEL)
    assert _refused(directory) == (
        f"{_name(SIGNATURE_LABEL)} (ERROR_CODE_REVOKED_CERTIFICATE: certificate "
        "'m-revoked-sig' is revoked), so the merchant does not serve on it: "
        f"{_register_again(directory)}"
    )


def test_a_revoked_key_exchange_certificate_stops_serving_and_renewal_mends_it(
    bank: RunningBank, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = _registered(bank, tmp_path / "m-revoked-kex")
    _revoked(bank, directory, KEY_EXCHANGE_LABEL)
    refusal = _refused(directory)
    assert refusal.startswith(
        f"{_name(KEY_EXCHANGE_LABEL)} (ERROR_CODE_REVOKED_CERTIFICATE: certificate "
        "'m-revoked-kex' is revoked), so the merchant does not serve on it: renew"
    )
    _renews(directory, refusal, capsys)


def test_a_signature_certificate_that_ends_soon_serves(bank: RunningBank, tmp_path: Path) -> None:
    directory = _registered(bank, tmp_path / "m-ending")

    def ending(bank: RunningBank, backend: KeyBackend) -> tuple[str, bytes]:
        return SIGNATURE_LABEL, issue_merchant(
            _issuing(bank, "mca"), backend.get(SIGNATURE_LABEL).public_key,
            CertificateUsage.SIGNATURE, _merchant_data(backend), lifetime=timedelta(days=2),
        )  # fmt: skip

    _replace(bank, directory, ending)
    _serves(directory)
