"""A bank's PKI: its key labels, and loading its keys and certificates at start.

``setpay init`` (``gateway.provisioning``) makes a bank's keys under the labels named
here. ``load_bank_pki`` is what a bank process calls at start: it opens the backend, reads
the certificates, re-publishes the CRLs and BCI if they are due, and loads a
``TrustStore`` with them. Nothing of our own is re-verified beyond what the TrustStore
does.

The gateway's two keys are renewed (``gateway.gateway_renewal``): ``certs/gateway-sig.der``
and ``certs/gateway-kex.der`` certify the newest versions, and each older key-exchange
certificate stays as ``certs/gateway-kex.vN.der`` (N its key's version) so that envelopes
sealed to it still open (``gateway.opening_keys``) until it ends; ended, its key is kept
only for the answers to decisions left unanswered (``gateway.older_key_exchange``). For
these two labels the bank uses the key version its certificate certifies, even when a
newer one exists (a renewal stopped before its certificates were written), and says so
in its log. It also warns about a live certificate ``ca.db`` records for a newer version
of those keys, which no file holds (``unused_gateway_certificates``: a renewal killed
after recording it) and the next renewal revokes; and it hands ``ca.db`` to
``gateway.opening_keys`` for envelopes sealed to a certificate renewed since it started.

Each key-exchange key must accept the key transport its certificate names (kemAlgorithm),
an older one's too (``setcore.credentials.check_key_exchange_pair``): envelopes are
opened by the key's own, peers seal by the certificate's. One that does not is refused
(``BankIncomplete``, naming its label and version): the bank does not start. The refusal
says what lets it start: for an older gateway key, the ``setpay keys delete`` that
removes it; for a key in use, its files restored from a backup the keystore accepts.

A bank does not start on a certificate it presents that no peer accepts (foreign,
ended, revoked, of another type or usage: ``gateway.bank_presented``); the refusal names
the file and what to do. A renewal or pruning of the gateway's keys (the remedy), and
the CA's commands, load the bank without that judgement.

A bank is not loaded while a renewal or pruning of the gateway's keys holds the bank's
lock (``gateway.renewal_lock``): it would read half of one.

Errors: ``ProvisioningError`` (``BankExists``, ``BankIncomplete``, ``KeysLocked``;
``gateway.bank_errors``), one tree for making and for loading a bank; the key backend's
and the CA store's own errors pass through.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote

# Re-exported: callers import the bank's errors from here, as before they moved.
from gateway.bank_errors import BankExists as BankExists  # noqa: PLC0414
from gateway.bank_errors import BankIncomplete as BankIncomplete  # noqa: PLC0414
from gateway.bank_errors import ProvisioningError as ProvisioningError  # noqa: PLC0414
from gateway.bank_presented import check_presented
from gateway.ca.errors import CaError
from gateway.ca.keys import AuthorityKeys
from gateway.ca.publishing import current_revocation, refresh
from gateway.ca.records import IssuedCertificate
from gateway.ca.standing import CaStanding
from gateway.ca.store import CaStore
from gateway.ca.watcher import valid_until
from gateway.config import BankConfig, config_option
from gateway.older_key_exchange import load_older_key_exchange
from gateway.opening_keys import IssuedKeyExchange, OpeningKeys, ca_db_reader
from gateway.renewal_lock import KeysLock, check_unlocked
from gateway.token_key import sole_version
from hsm.base import KeyBackend, KeyHandle
from hsm.errors import KeyBackendError, KeyNotFound, PermanentBackendError
from hsm.observer import Observer
from hsm.uri import encode_uri_value, open_backend
from setcore.credentials import Credentials, older_version_remedy
from setcore.errors import ConfigurationError, ProtocolError
from setcore.pki import roles
from setcore.pki.certificate import common_name_of, load_certificate, public_key_of
from setcore.pki.tls import TransportCA
from setcore.pki.truststore import TrustStore
from setcore.registration import spki_of
from setcore.token_seal import TokenKey

log = logging.getLogger("setpay.bank")

# The labels both sides agree on: init makes a key under each, a bank process loads it.
ROOT_LABEL = "brand-root"
KEX_SUFFIX = "-kex"
CA_LABELS = {roles.CARDHOLDER_CA: "cca", roles.MERCHANT_CA: "mca", roles.PAYMENT_GATEWAY_CA: "pca"}
GATEWAY_SIG_LABEL = "gateway-sig"
GATEWAY_KEX_LABEL = "gateway-kex"
GATEWAY_TOKEN_LABEL = "gateway-token"  # noqa: S105 - a key label, not a secret
# The token seed (setcore.token_seal), beside the certificates: a KEM ciphertext to the
# token-sealing key, public in the sense that only that key can open it.
TOKEN_SEED_FILE = "gateway-token.seed"  # noqa: S105 - a file name, not a secret
# An older gateway key-exchange certificate kept after a renewal: the version of the key
# it certifies between the two dots.
OLDER_KEX_PREFIX = f"{GATEWAY_KEX_LABEL}.v"
CERT_SUFFIX = ".der"
# The transport (TLS) root's key: TLS only, never a SET key (setcore.pki.tls).
TLS_CA_LABEL = "tls-ca"
ALL_LABELS = (
    ROOT_LABEL,
    *(label + suffix for label in CA_LABELS.values() for suffix in ("", KEX_SUFFIX)),
    GATEWAY_SIG_LABEL,
    GATEWAY_KEX_LABEL,
    GATEWAY_TOKEN_LABEL,
    TLS_CA_LABEL,
)


# --- key URIs ----------------------------------------------------------------------


def bank_keys_uri(config: BankConfig) -> str:
    """The configured key URI, with relative keystore and pin-source file paths resolved
    against the configuration's directory (``BankConfig.keys_uri`` does the former)."""
    uri = config.keys_uri()
    scheme, _, rest = uri.partition(":")
    # Read as ``hsm.uri`` reads it: attributes in the path (``;``) and, for pkcs11, in the
    # query (``?`` then ``&``); names in any case, values %-encoded.
    path, qsep, query = rest.partition("?")

    def resolved(part: str) -> str:
        name, sep, value = part.partition("=")
        kind, colon, location = unquote(value).partition(":")
        if (
            not sep
            or unquote(name).strip().lower() != "pin-source"
            or kind != "file"
            or not (colon and location)
            or Path(location).is_absolute()
        ):
            return part
        return f"pin-source=file:{encode_uri_value(str(config.base_dir / location))}"

    uri = f"{scheme}:{';'.join(resolved(p) for p in path.split(';'))}"
    return f"{uri}?{'&'.join(resolved(p) for p in query.split('&'))}" if qsep else uri


# --- load ------------------------------------------------------------------------------


@dataclass(frozen=True)
class BankPki:
    """The bank's keys and certificates, loaded at start."""

    backend: KeyBackend
    brand_id: str
    root_der: bytes
    root_key: KeyHandle
    trust: TrustStore
    gateway: Credentials
    token_key: KeyHandle
    token_seed: bytes
    cca: Credentials
    mca: Credentials
    pca: Credentials
    #: Older gateway key-exchange keys with their certificates, unexpired at start.
    older_key_exchange: tuple[tuple[KeyHandle, bytes], ...] = ()
    #: The bank's ca.db, read for envelopes sealed to a certificate of the bank renewed
    #: since this start (``gateway.opening_keys``); None: not read for them.
    ca_db: Path | None = None
    #: Older gateway key-exchange keys with their certificates, ended at start: they open
    #: only the answers to decisions left unanswered (``gateway.older_key_exchange``).
    ended_key_exchange: tuple[tuple[KeyHandle, bytes], ...] = ()

    def opening_keys(self) -> OpeningKeys:
        """The gateway's key-exchange keys envelopes may be sealed to, newest first."""
        issued = None
        if self.ca_db is not None:
            reader = ca_db_reader(self.ca_db, self.gateway, self.pca.signature_thumb)
            issued = IssuedKeyExchange(reader)
        return OpeningKeys.with_older(
            self.gateway, self.older_key_exchange, issued, ended=self.ended_key_exchange
        )

    def authority_keys(self) -> AuthorityKeys:
        """The CA keys as the certificate authority uses them."""
        return AuthorityKeys.from_credentials(
            self.backend, self.root_key, self.root_der, self.cca, self.mca, self.pca
        )

    def token_sealer(self) -> TokenKey:
        """The token-sealing key opened for sealing and opening tokens (once per process)."""
        return TokenKey.from_handle(self.backend, self.token_key, self.token_seed)

    def close(self) -> None:
        """Close the key backend."""
        self.backend.close()


def open_ca_store(config: BankConfig) -> CaStore:
    """The bank's ``ca.db``."""
    return CaStore.open(config.path(config.ca_db))


def load_bank_pki(
    config: BankConfig,
    observer: Observer | None = None,
    *,
    locked: KeysLock | None = None,
    judge_presented: bool = True,
) -> BankPki:
    """Open the key backend (reporting to ``observer``: metrics) and load the certificates
    and current revocation data; refused (``KeysLocked``) while a renewal or pruning of
    the gateway's keys runs, unless the caller is that one (``locked``). Refused too
    (``BankIncomplete``) on a certificate the bank presents that no peer accepts
    (``gateway.bank_presented``) when ``judge_presented``; a caller that loads the bank
    to manage it rather than serve passes False, as it must run on such a bank: the CA's
    commands, and the renewal and pruning of the gateway's keys (the remedy)."""
    if locked is None:
        check_unlocked(config)
    certs = config.path(config.certs_dir)

    def stored(name: str) -> bytes:
        try:
            return (certs / name).read_bytes()
        except OSError as exc:
            raise BankIncomplete(f"missing {name} in {certs}") from exc

    def der(label: str) -> bytes:
        return stored(f"{label}.der")

    backend = open_backend(bank_keys_uri(config), observer)

    def matching(label: str) -> KeyHandle:
        return _certified_key(backend, label, der(label))

    try:
        root_der = der(ROOT_LABEL)

        def ca(label: str, chain: tuple[bytes, ...] = ()) -> Credentials:
            kex = label + KEX_SUFFIX
            return _paired(backend, matching(label), der(label), chain, matching(kex), der(kex))

        cca, mca, pca = (ca(label) for label in CA_LABELS.values())

        def renewable(label: str) -> KeyHandle:
            return certified_version(backend, label, der(label))

        gateway = _paired(
            backend, renewable(GATEWAY_SIG_LABEL), der(GATEWAY_SIG_LABEL), (pca.signature_cert,),
            renewable(GATEWAY_KEX_LABEL), der(GATEWAY_KEX_LABEL),
        )  # fmt: skip
        older = load_older_key_exchange(
            backend, GATEWAY_KEX_LABEL, older_kex_files(certs), gateway.key_exchange_cert or b"",
            lambda version: older_version_remedy(delete_older_command(config, version)),
            datetime.now(UTC),
        )  # fmt: skip
        pki = BankPki(
            backend=backend, brand_id=config.brand_id, root_der=root_der,
            root_key=matching(ROOT_LABEL), trust=TrustStore(root_der), gateway=gateway,
            token_key=sole_version(backend, config), token_seed=stored(TOKEN_SEED_FILE),
            cca=cca, mca=mca, pca=pca, older_key_exchange=older.lasting,
            ended_key_exchange=older.ended, ca_db=config.path(config.ca_db),
        )  # fmt: skip
        known = [c.signature_cert for c in (cca, mca, pca, gateway)]
        known += [c.key_exchange_cert for c in (cca, mca, pca, gateway) if c.key_exchange_cert]
        known += [cert for _, cert in older.lasting]
        pki.trust.add_certificates(known)
        _load_revocation(config, pki)
        if judge_presented:
            cas: dict[int, Credentials] = dict(zip(CA_LABELS, (cca, mca, pca), strict=True))
            check_presented(config, pki.trust, cas, gateway)
        _warn_unused(config, pki)
        _warn_ending(pki, datetime.now(UTC))
    except BaseException:
        backend.close()
        raise
    return pki


def _load_revocation(config: BankConfig, pki: BankPki) -> None:
    """Re-publish what is due, then install ca.db's newest BCI and CRLs.

    A re-publishing that fails (the CA keys' token away, ca.db busy) does not stop the
    start while what ca.db holds is current, as it stops no request of a running worker
    (``gateway.ca.watcher``): a worker restarted during such an outage would otherwise
    fail, and its failure stops the whole bank. It is logged, and the worker's watcher
    tries again a minute later."""
    path = config.path(config.ca_db)
    if not path.exists():
        raise BankIncomplete(f"no CA database at {path}")
    store = CaStore.open(path)
    failed: Exception | None = None
    try:
        try:
            refresh(store, pki.authority_keys())
        except (CaError, KeyBackendError) as exc:
            failed = exc
        found = current_revocation(store)
    finally:
        store.close()
    if found is None:
        raise BankIncomplete(f"{path} holds no published revocation data") from failed
    _, data = found
    if failed is None:
        pki.trust.update_revocation(data.bci, data.crls)
        return
    stale = BankIncomplete(
        f"cannot re-publish the revocation data ({type(failed).__name__}: {failed}), and"
        f" what {path} holds is no longer current"
    )
    try:
        pki.trust.update_revocation(data.bci, data.crls)
    except ProtocolError:  # out of its validity window
        raise stale from failed
    held = pki.trust.revocation
    if held is None or valid_until(held) <= datetime.now(UTC):
        raise stale from failed
    log.warning(
        "could not re-publish the CRLs and BCI at start (%s: %s); starting on BCI %d, "
        "current until %s", type(failed).__name__, failed, held.sequence_num,
        valid_until(held).isoformat(timespec="seconds"),
    )  # fmt: skip


def _paired(
    backend: KeyBackend,
    signature_key: KeyHandle,
    signature_cert: bytes,
    chain: tuple[bytes, ...],
    key_exchange_key: KeyHandle,
    key_exchange_cert: bytes,
) -> Credentials:
    """A party of the bank's credentials; ``BankIncomplete`` if its key-exchange key does
    not accept the key transport its certificate names (``check_key_exchange_pair``)."""
    try:
        return Credentials(
            backend, signature_key, signature_cert, chain, key_exchange_key, key_exchange_cert
        )
    except ConfigurationError as exc:
        raise BankIncomplete(f"{key_exchange_key.label}.der: {exc}") from exc


def _certified_key(backend: KeyBackend, label: str, der: bytes) -> KeyHandle:
    """The newest key under ``label``, refused unless ``der`` certifies it: a key
    generated again under a bank label must be certified before it is used."""
    key = backend.get(label)
    if spki_of(public_key_of(load_certificate(der))) != spki_of(key.public_key):
        raise BankIncomplete(f"key {label!r} v{key.version} is not the key {label}.der certifies")
    return key


def certified_version(backend: KeyBackend, label: str, der: bytes) -> KeyHandle:
    """The version under ``label`` that ``der`` certifies: the newest, or an older one when a newer
    one is uncertified (a renewal stopped before its certificates, ``setpay keys generate``) or two
    keys' (``get`` refuses it, ``list_keys`` omits it: ``hsm.token_claims``); else refused."""
    wanted = spki_of(public_key_of(load_certificate(der)))
    try:
        newest: KeyHandle | PermanentBackendError = backend.get(label)
    except PermanentBackendError as refused:
        newest = refused
    if isinstance(newest, KeyHandle) and spki_of(newest.public_key) == wanted:
        return newest
    for key in backend.list_keys():
        if key.label == label and spki_of(key.public_key) == wanted:
            passed = newest if isinstance(newest, Exception) else (
                f"key {label!r} v{newest.version} is not certified (a renewal that did not"
                " finish?)")  # fmt: skip
            log.warning("%s; using v%d, the key %s.der certifies", passed, key.version, label)
            return key
    if isinstance(newest, Exception):
        raise newest  # the certified key may be one of the two: the claim is the cause
    raise BankIncomplete(f"no version of key {label!r} is the key {label}.der certifies")


def older_kex_name(version: int) -> str:
    """The file an older gateway key-exchange certificate is kept in (``certs/``)."""
    return f"{OLDER_KEX_PREFIX}{version}{CERT_SUFFIX}"


def older_kex_files(certs: Path) -> list[tuple[int, Path]]:
    """The older gateway key-exchange certificates kept in ``certs``, by key version."""
    found = []
    for path in certs.glob(f"{OLDER_KEX_PREFIX}*{CERT_SUFFIX}"):
        version = path.name.removeprefix(OLDER_KEX_PREFIX).removesuffix(CERT_SUFFIX)
        if version.isascii() and version.isdigit():
            found.append((int(version), path))
    return sorted(found)


def delete_key_command(config: BankConfig, label: str, version: int) -> str:
    """The command that deletes version ``version`` of the key ``label`` from the bank
    ``config`` names, as an operator types it (``setpay keys delete``)."""
    return f"setpay keys delete {config_option(config)} --label {label} --version {version}"


def delete_older_command(config: BankConfig, version: int) -> str:
    """``delete_key_command`` for an older version of the gateway's key-exchange key."""
    return delete_key_command(config, GATEWAY_KEX_LABEL, version)


def unused_gateway_certificates(
    store: CaStore, pki: BankPki, at: datetime | None = None
) -> list[IssuedCertificate]:
    """Live certificates ca.db records for a version of the gateway's own keys newer than
    the version the bank uses: left by a renewal killed after recording them
    (``gateway.gateway_renewal``), and held by no file. Merchants take any signature
    certificate naming the gateway (they pin its name), so such a one should not stay
    live; the next renewal revokes them. The certificates a finished renewal replaced
    certify older versions, and stay live until they end."""
    newer: dict[bytes, KeyHandle] = {}
    for used in (pki.gateway.signature_key, pki.gateway.key_exchange_key):
        if used is None:
            raise BankIncomplete("the gateway's credentials lack a key")
        # Versions above the one in use are keys a renewal made and never installed;
        # a normal start has none, and reads nothing more.
        for version in range(used.version + 1, pki.backend.get(used.label).version + 1):
            try:
                key = pki.backend.get(used.label, version)
            except KeyNotFound:  # deleted by hand
                continue
            newer[spki_of(key.public_key)] = key
    if not newer:
        return []
    subject = common_name_of(load_certificate(pki.gateway.signature_cert))
    now = int((at or datetime.now(UTC)).timestamp() * 1000)
    with store.read() as tx:
        listed = [cert for cert, _ in tx.listed_certificates(subject=subject, live_at_ms=now)]
    # Matched by key, never by name alone: the Payment Gateway CA certifies other
    # gateways too, and their certificates are theirs.
    return [
        cert for cert in listed
        if cert.issuer_thumb == pki.pca.signature_thumb
        and cert.certificate_type == roles.PAYMENT_GATEWAY
        and spki_of(public_key_of(load_certificate(cert.der))) in newer
    ]  # fmt: skip


def _warn_unused(config: BankConfig, pki: BankPki) -> None:
    """Log the certificates ``unused_gateway_certificates`` finds; never stops a start."""
    try:
        store = CaStore.open_readonly(config.path(config.ca_db))
        try:
            unused = unused_gateway_certificates(store, pki)
        finally:
            store.close()
    except (CaError, KeyBackendError, OSError) as exc:
        log.warning("could not look for unused gateway certificates in ca.db: %s", exc)
        return
    for cert in unused:
        log.warning(
            "ca.db holds a live %s certificate of a gateway key version newer than the"
            " one in use, that no file in %s holds (a renewal that did not finish?): %s;"
            " the next setpay ca renew-gateway revokes it, or revoke it with `setpay ca"
            " revoke %s --thumb %s`",
            cert.usage, config.certs_dir, cert.thumb.hex(), config_option(config),
            cert.thumb.hex(),
        )  # fmt: skip


def _warn_ending(pki: BankPki, now: datetime) -> None:
    """Log each CA certificate or CA key-exchange certificate that ends within
    ``gateway.ca.standing.ENDING_WARNING`` (a running CA repeats it once a day,
    ``gateway.ca.authority``)."""
    for line in CaStanding(pki.authority_keys(), pki.trust).ending(now):
        log.warning("%s", line)


def load_transport_ca(config: BankConfig, backend: KeyBackend) -> TransportCA:
    """The bank's TLS root, its key in the key backend (the key its certificate certifies)."""
    path = config.path(config.certs_dir) / f"{TLS_CA_LABEL}.der"
    try:
        der = path.read_bytes()
    except OSError as exc:
        raise BankIncomplete(f"missing certificate {path.name} in {path.parent}") from exc
    return TransportCA(backend, _certified_key(backend, TLS_CA_LABEL, der), der)
