"""Renewing the payment gateway's own keys: ``setpay ca renew-gateway`` on a stopped bank.

The gateway's signature and key-exchange certificates last a year
(``setcore.pki.issuance.END_ENTITY_LIFETIME``). A renewal makes the next version of
``gateway-sig`` and ``gateway-kex`` in the key backend, has the Payment Gateway CA certify
both (recorded in ``ca.db`` like every certificate the brand issues, so ``setpay ca list``
and ``revoke`` see them), keeps the key-exchange certificate it replaces as
``certs/gateway-kex.vN.der`` and writes the new ones as ``certs/gateway-sig.der`` and
``certs/gateway-kex.der``. At its next start the bank signs with the new signature key,
hands out the new key-exchange certificate, and still opens what is sealed to an older
one until that ends (``gateway.opening_keys``): merchants and wallets never register
again.

The steps run in this order, so that the bank starts on the old keys until the last
one: keys, certificates (also stored beside their keys), the older certificate kept
under its own name, one ``ca.db`` transaction, then the two files renamed into place
(key exchange first).

A renewal that fails is taken back: a failure before the renames takes back the key
versions it made (every version of the two labels newer than those it found, also one a
failed ``generate`` made) and the files it wrote; one during the renames puts the old files back
as well and revokes the two certificates just recorded. If putting the old files back
fails too (the disk full), nothing more is taken back, since the files in place may
already name the new keys: ``RenewalHalfInstalled`` says what is in place; the bank
starts on it, and running the renewal again finishes the job, also in the Payment
Gateway CA's last day (``gateway.renewal_issuer``, which refuses a renewal under a CA
that no longer stands, and one in its last day that gains nothing).

A renewal killed part way is not taken back, but leaves a bank that starts:

- before the ``ca.db`` transaction: on its old keys; the key versions it made are never
  certified, and the bank uses the version its certificate certifies
  (``gateway.bank_pki.certified_version``), warning about the newer one;
- after it, before the renames: on its old keys, with two certificates live in ``ca.db``
  that no file holds;
- between the renames: on the new key-exchange key and the old signature key (the older
  key-exchange certificate is kept by then, so what was sealed to it opens), with the
  new signature certificate live in ``ca.db`` and held by no file.

A live certificate of a newer version of the gateway's keys than the bank uses is one
no file holds, yet a merchant would take a signature from it (merchants pin the
gateway's name), so the bank warns about such certificates at start
(``gateway.bank_pki.unused_gateway_certificates``) and the next renewal revokes them
before it makes anything. The certificates a finished renewal replaced certify older
versions: they stay live until they end.

One renewal at a time: it holds the bank's lock (``gateway.renewal_lock``) from before
it looks at the bank until it has finished or been taken back; a second one is refused
at once (``KeysLocked``) and changes nothing, and so is a bank process starting
meanwhile. A renewal killed part way leaves no lock behind.

The bank must be stopped: a running process keeps the old keys until it restarts, and a
worker restarted by its supervisor meanwhile would load the new ones beside it. Until
then, an envelope sealed to the new key-exchange certificate (handed out by a process
already restarted, on this host or another sharing the bank's state) is answered
UNAVAILABLE by a process on the old keys, never refused (``gateway.opening_keys``). A
bank whose configured ports are held is refused (``BankRunning``); one configured on port
0, started with other addresses than its configuration's, or on another host cannot be
seen from here, and must be stopped (or restarted promptly after the renewal) by the
operator.

Errors: ``gateway.bank_pki``'s ``ProvisioningError`` tree (``BankRunning`` and
``RenewalHalfInstalled`` here, ``KeysLocked``); the key backend's and the CA store's own
errors, and the file system's, pass through.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from gateway.bank_files import write_new
from gateway.bank_pki import (
    CERT_SUFFIX,
    GATEWAY_KEX_LABEL,
    GATEWAY_SIG_LABEL,
    BankPki,
    ProvisioningError,
    delete_key_command,
    load_bank_pki,
    older_kex_name,
    open_ca_store,
    unused_gateway_certificates,
)
from gateway.ca.errors import CaError
from gateway.ca.keys import AuthorityKeys
from gateway.ca.publishing import record_certificate, revoke
from gateway.config import BankConfig, config_option
from gateway.ports import parse_port
from gateway.provisioning import GATEWAY_NAME
from gateway.renewal_issuer import check_issuer_lasts, check_issuer_stands
from gateway.renewal_lock import RENEW_TASK, KeysLock, holding_keys_lock
from hsm.base import KeyHandle, KeyUsage
from hsm.errors import KeyBackendError
from hsm.keystore import fsync_directory
from setcore.encoding import thumbprint
from setcore.errors import SetcoreError
from setcore.pki.certificate import load_certificate
from setcore.pki.issuance import IssuingCA, issue_gateway, kem_for, utc
from setcore.pki.roles import CertificateUsage
from setcore.registration import key_thumbprint, spki_of

log = logging.getLogger("setpay.provisioning")


class BankRunning(ProvisioningError):
    """The bank's ports are held: it (or something else on them) is running."""


class RenewalHalfInstalled(ProvisioningError):
    """The renewal failed as it renamed its certificates into place, and putting the old
    ones back failed too: nothing is taken back, and the message says what is in place
    (the bank starts on it) and what to do."""


@dataclass(frozen=True)
class RenewedKey:
    """One renewed key: its label, new version, and the certificate that certifies it."""

    label: str
    version: int
    serial: int
    thumb: bytes


@dataclass(frozen=True)
class Renewal:
    """What ``renew_gateway_keys`` made, and the key-exchange certificate it kept."""

    signature: RenewedKey
    key_exchange: RenewedKey
    kept: Path


def check_stopped(config: BankConfig, before: str = "renewing its keys") -> None:
    """Refuse if anything listens on a port the bank is configured to hold; ports 0 name
    no port and are not checked. ``before``: what the bank must be stopped for."""
    addresses = [("gateway", config.listen), ("CA", config.ca_listen)]
    if config.metrics_port:
        addresses.append(("metrics", f"{config.metrics_host}:{config.metrics_port}"))
    for what, address in addresses:
        host, _, port_text = address.rpartition(":")
        port = parse_port(port_text)
        if not port:
            continue
        try:
            family, _, _, _, where = socket.getaddrinfo(
                host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )[0]
        except OSError as exc:
            raise ProvisioningError(
                f"cannot check the bank's {what} address {address}: {exc}"
            ) from exc
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            # Past the connections of a bank just stopped, still in TIME_WAIT, which
            # ``gateway.ports.reserve`` (made for a starting bank) is not when the server
            # did not share its port: only a listener, or a bank's reservation, holds it.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(where)
            except OSError as exc:
                raise BankRunning(
                    f"the bank's {what} address {address} is in use ({exc}): stop the bank"
                    f" before {before}"
                ) from exc


def _issue(pca: IssuingCA, key: KeyHandle, usage: CertificateUsage, at: datetime) -> bytes:
    kem = kem_for(key) if usage is CertificateUsage.KEY_EXCHANGE else None
    return issue_gateway(pca, key.public_key, usage, GATEWAY_NAME, kem=kem, at=at)


@dataclass
class _Staged:
    """Files written for the renewal and not yet in place."""

    kept: Path
    kept_is_new: bool = False
    sig: Path | None = None
    kex: Path | None = None

    def discard(self) -> None:
        """Remove them (the kept certificate only if this renewal wrote it)."""
        for path in (self.sig, self.kex, self.kept if self.kept_is_new else None):
            if path is not None:
                path.unlink(missing_ok=True)


def _stage(certs: Path, pki: BankPki, sig_der: bytes, kex_der: bytes, staged: _Staged) -> None:
    current = pki.gateway.key_exchange_cert
    if current is None or pki.gateway.key_exchange_key is None:
        raise ProvisioningError("the gateway has no key-exchange key to renew")
    if staged.kept.exists():
        # Left by an earlier renewal that stopped after keeping it: the same bytes.
        if staged.kept.read_bytes() != current:
            raise ProvisioningError(f"{staged.kept} exists and is not the current certificate")
    else:
        write_new(staged.kept, current)
        staged.kept_is_new = True
    staged.sig = _write_staged(certs, GATEWAY_SIG_LABEL, sig_der)
    staged.kex = _write_staged(certs, GATEWAY_KEX_LABEL, kex_der)
    fsync_directory(certs)


def _write_staged(certs: Path, label: str, der: bytes) -> Path:
    path = certs / f".{label}{CERT_SUFFIX}.new"
    path.unlink(missing_ok=True)  # the staging file of a renewal that stopped
    write_new(path, der)
    return path


def _record(
    config: BankConfig, pca: IssuingCA, made: list[tuple[KeyHandle, bytes]], at: datetime
) -> None:
    """Record the new certificates and their keys in ca.db, in one transaction."""
    store = open_ca_store(config)
    try:
        with store.write() as tx:
            for key, der in made:
                issued = record_certificate(tx, der, pca, at)
                key_thumb = key_thumbprint(spki_of(key.public_key))
                tx.claim_key(key_thumb, None, issued.thumb, int(at.timestamp() * 1000))
    finally:
        store.close()


def _install(config: BankConfig, certs: Path, staged: _Staged, old: dict[str, bytes]) -> None:
    """Rename the staged files into place, key exchange first; on failure put back what
    was renamed and raise (``RenewalHalfInstalled`` if that fails too)."""
    kex, sig = staged.kex, staged.sig
    if kex is None or sig is None:
        raise ProvisioningError("the renewal's certificates were not staged")
    done: list[str] = []
    try:
        for name, path in ((GATEWAY_KEX_LABEL, kex), (GATEWAY_SIG_LABEL, sig)):
            os.replace(path, certs / f"{name}{CERT_SUFFIX}")
            done.append(name)
        fsync_directory(certs)
    except BaseException as failure:
        try:
            if done:
                # Last renamed first: what is in place at any moment is what a renewal
                # killed between the renames leaves, a state the bank starts on.
                while done:
                    back = certs / f".{done[-1]}{CERT_SUFFIX}.old"
                    back.unlink(missing_ok=True)
                    write_new(back, old[done[-1]])
                    os.replace(back, certs / f"{done[-1]}{CERT_SUFFIX}")
                    done.pop()
                fsync_directory(certs)
        # Whatever stops the putting back (an interrupt too) leaves files that may name
        # the new keys: taking those back would leave a bank that cannot start.
        except BaseException as undo:  # noqa: BLE001 - raised again as what it means
            raise RenewalHalfInstalled(_half_installed(config, done, failure, undo)) from failure
        raise


def _half_installed(
    config: BankConfig, renewed: list[str], failure: BaseException, undo: BaseException
) -> str:
    files = ", ".join(
        f"{name}{CERT_SUFFIX} {'renewed' if name in renewed else 'as before'}"
        for name in (GATEWAY_KEX_LABEL, GATEWAY_SIG_LABEL)
    )
    return (
        f"the renewal failed as it installed its certificates ({failure}), and putting the"
        f" old ones back failed too ({undo}); in place now: {files}, perhaps not yet on"
        " disk. The bank starts on that, and nothing was taken back: delete no key version"
        " and no file in the certificates directory. Once the cause is fixed, run"
        f" `setpay ca renew-gateway {config_option(config)}` again: it revokes the"
        " certificates this renewal recorded that no file holds, and renews both keys"
    )


def _newest_versions(pki: BankPki) -> dict[str, int]:
    """The newest version of each of the gateway's labels, before the renewal makes any."""
    listed = pki.backend.list_keys()
    return {
        label: max((k.version for k in listed if k.label == label), default=0)
        for label in (GATEWAY_SIG_LABEL, GATEWAY_KEX_LABEL)
    }


def _take_back(config: BankConfig, pki: BankPki, newest: dict[str, int]) -> None:
    """Delete every version of the gateway's labels newer than ``newest``: the renewal's.

    Not only the handles ``generate`` returned: one that failed after the backend made
    the key (the token lost as it answered) made a version no handle names. Backend
    messages name keys, tokens and files, never a PIN or key material: they are logged.
    """
    try:
        doomed = [
            (key.label, key.version)
            for key in pki.backend.list_keys()
            if key.label in newest and key.version > newest[key.label]
        ]
    except KeyBackendError as exc:
        for label, version in newest.items():
            log.warning(
                "renewal failed and the key backend could not list its keys (%s: %s): any"
                " version of %r newer than v%d is this renewal's and unused (the bank starts"
                " on v%d); once the backend answers, delete each with: `setpay keys delete"
                " %s --label %s --version N` (N: a version above v%d)",
                type(exc).__name__, exc, label, version, version, config_option(config), label,
                version,
            )  # fmt: skip
        return
    for label, version in doomed:
        try:
            pki.backend.delete(label, version)
        except KeyBackendError as exc:
            log.warning(
                "renewal failed and could not delete key %r v%d (%s: %s): the bank starts on"
                " the old version; delete it with: `%s`",
                label, version, type(exc).__name__, exc,
                delete_key_command(config, label, version),
            )  # fmt: skip


def _revoke_unheld(
    config: BankConfig,
    pki: BankPki,
    keys: AuthorityKeys,
    at: datetime,
    recorded: Sequence[bytes] | None = None,
) -> None:
    """Revoke live certificates of the gateway's keys that no file holds.

    Without ``recorded``, before the renewal makes anything: those a renewal killed after
    recording them left (``unused_gateway_certificates`` at ``at``), revoked at ``at``; a
    failure raises, and nothing is renewed. With ``recorded`` (DER), taking back a failed
    renewal: its own, revoked now (after anything revoked at its start); one that cannot
    be revoked is logged for the operator, since the renewal's failure is what is raised."""
    store = open_ca_store(config)
    try:
        if recorded is None:
            for cert in unused_gateway_certificates(store, pki, at):
                revoke(store, keys, thumb=cert.thumb, at=at)
                log.warning(
                    "revoked the gateway's %s certificate %s: recorded in ca.db by a renewal"
                    " that did not finish, and held by no file in %s",
                    cert.usage, cert.thumb.hex(), config.path(config.certs_dir).name,
                )  # fmt: skip
            return
        for thumb in map(thumbprint, recorded):
            try:
                revoke(store, keys, thumb=thumb)
            except (CaError, KeyBackendError, SetcoreError) as exc:
                log.warning(
                    "certificate %s was recorded but never used and could not be revoked (%s):"
                    " revoke it with `setpay ca revoke %s --thumb %s`",
                    thumb.hex(), exc, config_option(config), thumb.hex(),
                )  # fmt: skip
    finally:
        store.close()


def renew_gateway_keys(config: BankConfig, *, at: datetime | None = None) -> Renewal:
    """Make, certify and install the next version of the gateway's signature and
    key-exchange keys on a stopped bank; a failure is taken back (see the module)."""
    # Once before the lock, so that a renewal run on a running bank says so without
    # taking the lock a worker the supervisor restarts meanwhile would be refused by;
    # once after, so that a bank started in between is either refused by the lock or
    # seen here.
    check_stopped(config)
    with holding_keys_lock(config, RENEW_TASK) as locked:
        check_stopped(config)
        return _renew(config, utc(at), locked)


def _renew(config: BankConfig, when: datetime, locked: KeysLock) -> Renewal:
    certs = config.path(config.certs_dir)
    # Refuses an incomplete bank, not one whose certificates no peer accepts
    # (gateway.bank_presented): renewing is what mends them.
    pki = load_bank_pki(config, locked=locked, judge_presented=False)
    try:
        keys = pki.authority_keys()
        check_issuer_stands(pki, keys.gateway.issuing, when)
        check_issuer_lasts(config, pki, keys.gateway.issuing, when)
        _revoke_unheld(config, pki, keys, when)
        old_kex = pki.gateway.key_exchange_key
        if old_kex is None or pki.gateway.key_exchange_cert is None:
            raise ProvisioningError("the gateway has no key-exchange key to renew")
        old = {
            GATEWAY_SIG_LABEL: pki.gateway.signature_cert,
            GATEWAY_KEX_LABEL: pki.gateway.key_exchange_cert,
        }
        pca = keys.gateway.issuing
        staged = _Staged(certs / older_kex_name(old_kex.version))
        newest = _newest_versions(pki)
        try:
            sig = pki.backend.generate(
                GATEWAY_SIG_LABEL, KeyUsage.SIGNATURE, pki.gateway.signature_key.algorithm
            )
            kex = pki.backend.generate(GATEWAY_KEX_LABEL, KeyUsage.KEY_EXCHANGE, old_kex.algorithm)
            sig_der = _issue(pca, sig, CertificateUsage.SIGNATURE, when)
            kex_der = _issue(pca, kex, CertificateUsage.KEY_EXCHANGE, when)
            pki.backend.store_certificate(sig, sig_der)
            pki.backend.store_certificate(kex, kex_der)
            _stage(certs, pki, sig_der, kex_der, staged)
            _record(config, pca, [(sig, sig_der), (kex, kex_der)], when)
        except BaseException:
            staged.discard()
            _take_back(config, pki, newest)
            raise
        try:
            _install(config, certs, staged, old)
        except RenewalHalfInstalled:
            raise  # the files in place may name the new keys: they stay, and so does ca.db
        except BaseException:
            staged.discard()
            _take_back(config, pki, newest)
            _revoke_unheld(config, pki, keys, when, recorded=[sig_der, kex_der])
            raise
    finally:
        pki.close()

    def renewed(key: KeyHandle, der: bytes) -> RenewedKey:
        serial = load_certificate(der).serial_number
        return RenewedKey(key.label, key.version, serial, thumbprint(der))

    result = Renewal(renewed(sig, sig_der), renewed(kex, kex_der), staged.kept)
    log.info(
        "renewed the gateway's keys: %s v%d and %s v%d; the key-exchange certificate v%d is"
        " kept in %s and opens envelopes until it ends",
        sig.label, sig.version, kex.label, kex.version, old_kex.version, staged.kept.name,
    )  # fmt: skip
    return result
