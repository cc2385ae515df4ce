"""Making a bank (``setpay init``) and issuing it TLS certificates on demand.

``init_bank`` writes a bank directory::

    setpay.toml       the configuration (``gateway.config``)
    keys/, keys.pass  the software keystore and its passphrase (0600), when the keys are
                      ``soft:keys`` and SETPAY_KEYSTORE_PASSPHRASE is not set: for trying
                      setpay out, since a copy of the directory then opens every key (and
                      so, with ledger.keys, every card number); ``setpay init`` says so,
                      and ``setpay gateway serve`` warns of it at every start
    certs/*.der       brand-root, cca, cca-kex, mca, mca-kex, pca, pca-kex, gateway-sig,
                      gateway-kex (key labels in the backend are the same names)
    ca.db             every certificate and certified key, the first CRLs and BCI 1
    certs/gateway-token.seed
                      the token seed (``setcore.token_seal``): opens only with the key
    tls/              root.pem; gateway.pem + .key (server, 127.0.0.1 and localhost);
                      client-ca.pem (mTLS); keys are PEM, mode 0600; with
                      ``merchant_tls`` also merchant-client.pem + .key and
                      merchant-server.pem + .key, a merchant's credentials for the demo
                      and the bench's own bank
    ledger.keys       the ledger's data key and index key, sealed to the gateway-token
                      key (``gateway.ledger_keys``; 0600): opens only with the backend
    ledger.db         the SQLite ledger, holding only its key check of those keys
                      (``gateway.ledger.key_check``), written while init holds them

Private keys of the brand, the CAs and the gateway are made in the key backend and never
leave it; TLS keys are ordinary PEM files (gRPC takes them that way). An existing bank
is never overwritten: a non-empty directory, or a backend that already holds one of the
labels, is refused (``BankExists``). An init that fails part way takes back what it
made: the keys it generated in the backend, and the files in the directory (the
directory too, if it made it), so that it can be run again as it was.

The key labels, and loading the bank at start, are ``gateway.bank_pki``'s.

Errors: ``gateway.bank_pki``'s ``ProvisioningError`` tree (``BankExists`` here, and
``BankIncomplete`` for a bank without its TLS root); the key backend's and the CA store's
own errors pass through.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from gateway.bank_files import write_private
from gateway.bank_pki import (
    ALL_LABELS,
    CA_LABELS,
    GATEWAY_KEX_LABEL,
    GATEWAY_SIG_LABEL,
    GATEWAY_TOKEN_LABEL,
    KEX_SUFFIX,
    ROOT_LABEL,
    TLS_CA_LABEL,
    TOKEN_SEED_FILE,
    BankExists,
    BankPki,
    ProvisioningError,
    bank_keys_uri,
    load_transport_ca,
)
from gateway.ca.keys import AuthorityKeys
from gateway.ca.publishing import publish_initial, record_certificate
from gateway.ca.store import CaStore
from gateway.config import CONFIG_FILE, BankConfig
from gateway.issuer import open_store
from gateway.ledger_keys import check_belongs, read_ledger_keys, write_ledger_keys
from hsm.base import KeyAlgorithm, KeyBackend, KeyHandle, KeyUsage
from hsm.errors import KeyBackendError, KeyNotFound
from hsm.uri import PASSPHRASE_ENV, open_backend
from setcore.credentials import Credentials
from setcore.names import describe, refused_character
from setcore.pki import roles
from setcore.pki.issuance import (
    IssuingCA,
    create_brand_root,
    issue_ca_certificate,
    issue_ca_key_exchange,
    issue_gateway,
    kem_for,
    utc,
)
from setcore.pki.roles import CertificateUsage
from setcore.pki.tls import (
    TlsCredentials,
    TransportCA,
    create_transport_ca,
    issue_tls_client,
    issue_tls_server,
)
from setcore.profiles import profile_named
from setcore.registration import key_thumbprint, spki_of
from setcore.token_seal import TokenKey

_CA_TITLES = {
    roles.CARDHOLDER_CA: "Cardholder CA",
    roles.MERCHANT_CA: "Merchant CA",
    roles.PAYMENT_GATEWAY_CA: "Payment Gateway CA",
}
# The gateway certificates' CommonName (one gateway per bank directory).
GATEWAY_NAME = "gateway-1"
# Name of the merchant TLS client certificate made for the demo.
DEMO_MERCHANT_TLS_NAME = "merchant"
# The merchant credentials ``merchant_tls`` writes into tls/ (NAME.pem and NAME.key).
MERCHANT_CLIENT_TLS = "merchant-client"
MERCHANT_SERVER_TLS = "merchant-server"
PASSPHRASE_FILE = "keys.pass"  # noqa: S105 - a file name, not a secret
# 32 random bytes, base64url: as strong as any key the passphrase protects.
PASSPHRASE_BYTES = 32
TLS_DIR = "tls"
# The transport root a TLS peer trusts, written beside the credentials of ``issue_tls_files``.
TLS_ROOT_FILE = "root.pem"
DIRECTORY_MODE = 0o700
# Every name init gives a certificate holds the brand id in a CommonName or an
# organizationName, of at most 64 characters (RFC 5280 ub-common-name,
# ub-organization-name); the longest is the transport CA's "setpay BRAND transport CA"
# (``setcore.pki.tls``), 20 characters besides the brand's.
MAX_BRAND_ID_CHARS = 64 - len("setpay  transport CA")

log = logging.getLogger("setpay.provisioning")


@dataclass(frozen=True)
class TlsFilePaths:
    """Where a TLS certificate chain and its key were written."""

    certificate: Path
    key: Path


def write_tls_files(directory: Path, name: str, tls: TlsCredentials) -> TlsFilePaths:
    """``NAME.pem`` (leaf and its CA) and ``NAME.key`` (0600) in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    certificate, key = directory / f"{name}.pem", directory / f"{name}.key"
    if certificate.exists() or key.exists():
        raise BankExists(f"{certificate} or {key} already exists")
    certificate.write_bytes(tls.certificate_chain_pem)
    write_private(key, tls.private_key_pem)
    return TlsFilePaths(certificate, key)


# --- setpay.toml ------------------------------------------------------------------------


def _default_keys(directory: Path, env: Mapping[str, str]) -> tuple[str, Path | None]:
    """The key URI of a bank made without ``keys``, and the passphrase file written for
    it (None: the passphrase comes from the environment)."""
    if env.get(PASSPHRASE_ENV):
        return "soft:keys", None
    passphrase = secrets.token_urlsafe(PASSPHRASE_BYTES)
    path = directory / PASSPHRASE_FILE
    write_private(path, passphrase.encode("ascii") + b"\n")
    return f"soft:keys;pin-source=file:{PASSPHRASE_FILE}", path


def _toml(value: str) -> str:
    # TOML basic strings take JSON's escapes for everything json.dumps emits.
    return json.dumps(value)


def _config_text(profile: str, brand_id: str, keys: str, insecure: bool) -> str:
    return f"""# Written by setpay init. Relative paths are relative to this file's directory.
[bank]
profile = {_toml(profile)}
brand_id = {_toml(brand_id)}
keys = {_toml(keys)}

[gateway]
listen = "127.0.0.1:7443"
ca_listen = "127.0.0.1:7444"
# workers: one per core unless set here, by SETPAY_WORKERS or --workers
reflection = true
insecure = {"true" if insecure else "false"}

[gateway.tls]
cert = "tls/gateway.pem"
key = "tls/gateway.key"
client_ca = "tls/client-ca.pem"

[ledger]
store = "sqlite:ledger.db"
"""


# --- init ----------------------------------------------------------------------------


@dataclass(frozen=True)
class InitResult:
    """What ``init_bank`` made."""

    directory: Path
    config_path: Path
    brand_id: str
    profile: str
    root_thumbprint: bytes
    #: The keystore passphrase file written inside the directory (keys left to their
    #: default without SETPAY_KEYSTORE_PASSPHRASE): it opens every key of the bank, and so
    #: the ledger's card numbers, for whoever holds a copy of the directory. None: no file.
    passphrase_file: Path | None = None


def check_brand_id(brand_id: str) -> None:
    """ProvisioningError unless every certificate name can hold ``brand_id``: 1 to
    ``MAX_BRAND_ID_CHARS`` characters, none of them one ``setcore.names`` refuses in a
    name (the certificates' names are printed, in logs and listings)."""
    if not 0 < len(brand_id) <= MAX_BRAND_ID_CHARS:
        raise ProvisioningError(
            f"a brand id is 1 to {MAX_BRAND_ID_CHARS} characters, to fit the names of the "
            f"bank's certificates (given: {len(brand_id)})"
        )
    refused = refused_character(brand_id)
    if refused is not None:
        raise ProvisioningError(
            "a brand id holds no control, line or paragraph separator, or bidirectional "
            f"character (given: {describe(refused)})"
        )


def _refuse_existing(directory: Path) -> None:
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise BankExists(f"{directory} exists and is not an empty directory")


def _refuse_labels(backend: KeyBackend) -> None:
    for label in ALL_LABELS:
        try:
            backend.get(label)
        except KeyNotFound:
            continue
        raise BankExists(f"the key backend already holds a key labelled {label!r}")


@dataclass(frozen=True)
class _Made:
    label: str
    key: KeyHandle
    der: bytes
    issuer: IssuingCA | None  # None: the self-signed root


def _make_keys_and_certificates(
    backend: KeyBackend, profile_name: str, brand_id: str, at: datetime
) -> tuple[IssuingCA, list[_Made]]:
    profile = profile_named(profile_name)
    root_key = backend.generate(ROOT_LABEL, KeyUsage.CA_SIGNING, profile.ca_key)
    root = create_brand_root(backend, root_key, brand_id, at=at)
    made = [_Made(ROOT_LABEL, root_key, root.der, None)]
    cas: dict[int, IssuingCA] = {}
    for ca_type, label in CA_LABELS.items():
        key = backend.generate(label, KeyUsage.CA_SIGNING, profile.ca_key)
        title = f"{brand_id} {_CA_TITLES[ca_type]}"
        der = issue_ca_certificate(root, key.public_key, ca_type, common_name=title, at=at)
        cas[ca_type] = ca = IssuingCA(backend, key, der, root.chain)
        kex = backend.generate(label + KEX_SUFFIX, KeyUsage.KEY_EXCHANGE, profile.key_exchange_key)
        kex_der = issue_ca_key_exchange(ca, kex.public_key, kem=kem_for(kex), at=at)
        made += [_Made(label, key, der, root), _Made(label + KEX_SUFFIX, kex, kex_der, ca)]
    pca = cas[roles.PAYMENT_GATEWAY_CA]
    sig = backend.generate(GATEWAY_SIG_LABEL, KeyUsage.SIGNATURE, profile.signature_key)
    kex = backend.generate(GATEWAY_KEX_LABEL, KeyUsage.KEY_EXCHANGE, profile.key_exchange_key)
    sig_der = issue_gateway(pca, sig.public_key, CertificateUsage.SIGNATURE, GATEWAY_NAME, at=at)
    kex_der = issue_gateway(
        pca, kex.public_key, CertificateUsage.KEY_EXCHANGE, GATEWAY_NAME, kem=kem_for(kex), at=at
    )
    made += [
        _Made(GATEWAY_SIG_LABEL, sig, sig_der, pca),
        _Made(GATEWAY_KEX_LABEL, kex, kex_der, pca),
    ]
    for item in made:
        backend.store_certificate(item.key, item.der)
    return root, made


def _write_ca_db(path: Path, keys: AuthorityKeys, made: list[_Made], at: datetime) -> None:
    store = CaStore.open(path, create=True)
    try:
        with store.write() as tx:
            for item in made:
                issuer = item.issuer or keys.root
                issued = record_certificate(tx, item.der, issuer, at)
                key_thumb = key_thumbprint(spki_of(item.key.public_key))
                tx.claim_key(key_thumb, None, issued.thumb, int(at.timestamp() * 1000))
        publish_initial(store, keys, at=at)
    finally:
        store.close()


def _write_tls(directory: Path, transport: TransportCA, *, merchant_tls: bool) -> None:
    tls = directory / TLS_DIR
    tls.mkdir(mode=DIRECTORY_MODE)
    gateway = issue_tls_server(transport)
    write_tls_files(tls, "gateway", gateway)
    (tls / TLS_ROOT_FILE).write_bytes(gateway.root_certificate_pem)
    # The gateway accepts client certificates from setpay's transport CA only.
    (tls / "client-ca.pem").write_bytes(gateway.root_certificate_pem)
    if merchant_tls:
        # A working client credential for the gateway's mutual TLS: only where a merchant
        # of the same machine needs one (the demo, a bench's own bank), never by default
        # in a bank's directory, where it would let whoever reads it past the mTLS.
        client = issue_tls_client(transport, DEMO_MERCHANT_TLS_NAME)
        write_tls_files(tls, MERCHANT_CLIENT_TLS, client)
        write_tls_files(tls, MERCHANT_SERVER_TLS, issue_tls_server(transport))


def destroy_bank_keys(backend: KeyBackend) -> list[str]:
    """Take every bank label out of ``backend`` (a bank init made, that nothing else
    uses): going on past a label that fails. The labels left, each with its error's type."""
    left = []
    for label in ALL_LABELS:
        try:
            backend.delete(label)
        except KeyNotFound:
            continue
        except KeyBackendError as exc:
            left.append(f"{label} ({type(exc).__name__})")
    return left


def _empty(directory: Path, made: bool) -> None:
    """Remove what init wrote: the directory if init made it, else its contents."""
    if made:
        shutil.rmtree(directory, ignore_errors=True)
        return
    for child in directory.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def _provision(
    backend: KeyBackend,
    config: BankConfig,
    profile: str,
    brand_id: str,
    when: datetime,
    *,
    merchant_tls: bool,
) -> IssuingCA:
    """Keys, certificates, ca.db, TLS files and ledger keys of a new bank; its root."""
    root, made = _make_keys_and_certificates(backend, profile, brand_id, when)
    certs = config.path(config.certs_dir)
    certs.mkdir()
    for item in made:
        (certs / f"{item.label}.der").write_bytes(item.der)
    # The gateway seals capture and auth tokens to itself with this key (no
    # certificate), under a master key its workers derive from the token seed.
    token_key = backend.generate(
        GATEWAY_TOKEN_LABEL, KeyUsage.TOKEN_SEALING, profile_named(profile).key_exchange_key
    )
    (certs / TOKEN_SEED_FILE).write_bytes(TokenKey.create(backend, token_key).seed)
    by_label = {item.label: item for item in made}

    def credentials(label: str) -> Credentials:
        sig, kex = by_label[label], by_label[label + KEX_SUFFIX]
        return Credentials(backend, sig.key, sig.der, (), kex.key, kex.der)

    authority = AuthorityKeys.from_credentials(
        backend, root.key, root.der,
        *(credentials(label) for label in CA_LABELS.values()),
    )  # fmt: skip
    _write_ca_db(config.path(config.ca_db), authority, made, when)
    tls_key = backend.generate(TLS_CA_LABEL, KeyUsage.CA_SIGNING, KeyAlgorithm.EC_P256)
    transport = create_transport_ca(backend, tls_key, brand_id)
    (certs / f"{TLS_CA_LABEL}.der").write_bytes(transport.der)
    backend.store_certificate(tls_key, transport.der)
    _write_tls(config.base_dir, transport, merchant_tls=merchant_tls)
    # Sealed to the token key: the file opens no PAN without the backend.
    write_ledger_keys(config.path(config.ledger_keys), backend, token_key)
    _bind_ledger_keys(config, backend)
    return root


def _bind_ledger_keys(config: BankConfig, backend: KeyBackend) -> None:
    """Give the new (default, SQLite) ledger its key check of the keys just written, while
    init holds them: left to the first open, a ledger.keys forged in between (sealing one
    takes only the token key's public half) would be the keys the ledger is bound to. A
    PostgreSQL ledger configured later is still bound by its first open."""
    keys = read_ledger_keys(config, backend)
    store = open_store(config)
    try:
        check_belongs(config, store, keys)
    finally:
        store.close()


def init_bank(
    directory: Path,
    *,
    profile: str = "ec",
    keys: str | None = None,
    brand_id: str = "setpay",
    insecure: bool = False,
    merchant_tls: bool = False,
    env: Mapping[str, str] | None = None,
    at: datetime | None = None,
) -> InitResult:
    """Create a bank in ``directory`` (which must not exist or be empty); on failure,
    leave the directory and the key backend as they were. ``merchant_tls``: also write
    a merchant's TLS client and server credentials into tls/ (the demo's, a bench's)."""
    profile_named(profile)  # an unknown profile fails before anything is written
    check_brand_id(brand_id)  # and a brand id no certificate name can hold
    _refuse_existing(directory)
    made_directory = not directory.exists()
    directory.mkdir(parents=True, exist_ok=True, mode=DIRECTORY_MODE)
    base = directory.resolve()
    try:
        keys_value, passphrase_file = (
            (keys, None)
            if keys is not None
            else _default_keys(base, os.environ if env is None else env)
        )
        config = BankConfig(base_dir=base, profile=profile, brand_id=brand_id, keys=keys_value)
        backend = open_backend(bank_keys_uri(config))
        try:
            _refuse_labels(backend)
            try:
                root = _provision(
                    backend, config, profile, brand_id, utc(at), merchant_tls=merchant_tls
                )
            except BaseException:
                # None of the labels was there before (above).
                if left := destroy_bank_keys(backend):
                    log.warning("init failed and could not delete these keys: %s", ", ".join(left))
                raise
        finally:
            backend.close()
        config_path = base / CONFIG_FILE
        # Written last: a directory with a setpay.toml is a complete bank.
        config_path.write_text(_config_text(profile, brand_id, keys_value, insecure))
    except BaseException:
        _empty(base, made_directory)
        raise
    return InitResult(base, config_path, brand_id, profile, root.thumbprint, passphrase_file)


# --- TLS certificates on demand ----------------------------------------------------------

#: Which CA issues a transport certificate, by the name ``setpay ca issue-tls`` takes.
TLS_ROLES = ("client", "server")


def issue_tls_files(
    config: BankConfig, pki: BankPki, role: str, name: str, out: Path
) -> TlsFilePaths:
    """Issue a TLS client or server certificate from the transport CA and write
    ``NAME.pem``, ``NAME.key`` (0600) and ``root.pem`` into ``out``; refused, with
    nothing written, when NAME.pem would be root.pem, or a root.pem there already is not
    this bank's transport root (the peer given the files would trust it)."""
    if role not in TLS_ROLES:
        raise ProvisioningError(f"role must be one of {', '.join(TLS_ROLES)}")
    root = out / TLS_ROOT_FILE
    if f"{name}.pem".lower() == TLS_ROOT_FILE:
        raise ProvisioningError(
            f"the name {name!r} would write its certificate as {root}, the transport root "
            "its peer trusts: choose another"
        )
    transport = load_transport_ca(config, pki.backend)
    if role == "client":
        tls = issue_tls_client(transport, name)
    else:  # the name is checked there; it also names the files written
        loopback = ("127.0.0.1",) if name == "localhost" else ()
        tls = issue_tls_server(transport, dns_names=(name,), ip_addresses=loopback)
    if root.exists() and root.read_bytes() != tls.root_certificate_pem:
        # Kept, the peer would trust another root than the one the certificate chains to.
        raise ProvisioningError(f"{root} is not this bank's transport root: nothing written")
    paths = write_tls_files(out, name, tls)
    if not root.exists():
        root.write_bytes(tls.root_certificate_pem)
    return paths
