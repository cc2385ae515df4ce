"""The merchant's registration with the brand's Merchant CA (Me-AqCInit, CertReq, CertInq).

The merchant's two keys are made in its key backend under ``merchant-sig`` and
``merchant-kex``; the CA certifies both (SET-PROTOCOL.md 4.2) and each certificate is
stored beside its key, the Merchant CA certificate in ``certs/chain.pem``. The protocol
and every check of the CA's answers are setcore's (``setcore.registration_merchant``).

Before the CertReq leaves, what resuming needs (its exact bytes among it) is recorded in
``registration.json`` (``clients.merchant.registration_pending``): an answer lost after
the CA issued is collected by the next ``register``, which sends the same bytes again
(the CA answers them from its store) or asks with CertInq; a refusal of the bytes sent
again is not final (the CA verifies them again before it looks for its stored answer: a
certificate expired or revoked since, a new CA key-exchange certificate, an answer
purged), CertInq's answer is (``clients.merchant.registration_inquiry``). The record
names the merchant ID, name, brand and CA target the request was made with: a resume
under a merchant.toml that says otherwise is refused unless the CA holds no such request
(``clients.merchant.registration_pending``). A request the CA has not decided
(REQUEST_PENDED, or REQUEST_IN_PROGRESS: ``UNDECIDED``) is polled with CertInq a few
times, then left recorded with its keys for a later run: the CA may still certify it.
The record is kept while the two issued certificates are stored, one after the other,
and removed only once both are: a backend that fails between the two leaves a
registration the next ``register`` finishes (CertInq returns the certificates again),
not a half-certified merchant that can neither register nor open. A CertInq the CA
answers UNKNOWN_LID (it holds no request of this registration: the CertReq never
arrived, or was refused, and the CA keeps no refusal) certified nothing: the record is
dropped and ``register`` starts over, a new request hearing any refusal again (or, for
one made with a form or an account, stops: the next ``register`` needs them again);
unless the resend was answered with a CertRes refusing it: the CA's decision of this
request (it keeps only the requests it certified), raised as the refusal it is. A
verified refusal of a first send (a CertStatus other than complete or undecided, or the
CA's Error to the CertReq) removes it too; a CertStatus this release does not know keeps
it (``clients.pending_request``). A dropped record takes its request's keys with it: no
later run sends that request again, and a new one is made with new keys, so no CA will
certify them (on a token, each would hold a slot for good). Until the record is written
the keys are destroyed on any failure too; once it is (read back: a write can fail after
its rename), they are kept for the resume, and a record whose keys are gone is dropped.
A merchant that holds certificates registers again only once its signature certificate
has ended or been revoked, judged before anything is made
(``clients.merchant.registration_again``): new versions of both keys, the old ones kept.

``renew`` makes new versions of both keys and asks for a renewal, signed by the new
signature key and by the current one (SET-PROTOCOL.md 4.3 rule 2). The merchant uses the
newest version of each key that holds a certificate (``current_credentials``), so the
new keys displace the old only as their certificates are stored, by the same path and
with the same ``registration.json`` as a registration. Only a verified refusal (or the
CA holding no such request) destroys the new keys, and leaves the current ones as they
were: a renewal whose answer is lost or cannot be verified keeps them and its record,
and the next ``renew`` resumes it. The old keys and certificates are kept: the gateway's
answers to requests stored before the renewal are sealed to the old key-exchange key and
name the old signature certificate.

One ``register`` or ``renew`` runs at a time in a merchant directory: a second one is
refused at once, nothing made, recorded or sent (``clients.registration_lock`` says what two at
once did to each other's record).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from clients.authority import AuthorityClient
from clients.errors import ConfigError, RegistrationError, TransportError
from clients.identity import (
    certified_key_exchanges,
    certified_versions,
    read_certificates,
    write_certificates,
)
from clients.merchant.config import MerchantConfig
from clients.merchant.form_filling import filled_fields
from clients.merchant.registration_again import check_may_register
from clients.merchant.registration_inquiry import answer_to_recorded, inquired
from clients.merchant.registration_pending import (
    CA_TARGET,
    KEY_EXCHANGE_LABEL,
    PENDING_FILE,
    SIGNATURE_LABEL,
    changed_config_refusal,
    config_changes,
    discard_keys,
    dropped_refusal,
    is_renewal,
    made_with_of,
    missing_keys,
    new_keys,
    pending_keys,
    read_pending,
    resumed_state,
    save_pending,
    unrecorded,
)
from clients.pending_request import NEVER_RECEIVED, polled, unknown_status_reported
from clients.registration_lock import one_at_a_time
from clients.revocation import RevocationFeed
from hsm.base import KeyBackend, KeyHandle
from setcore.credentials import Credentials, KeyExchangeChooser
from setcore.encoding import thumbprint
from setcore.errors import PeerError, SetcoreError
from setcore.pki.truststore import TrustStore
from setcore.profiles import Profile
from setcore.registration import CERT_STATUS_NAMES, UNDECIDED, request_kind
from setcore.registration_merchant import (
    MeAqCInitState,
    MerchantCertificates,
    MerchantIdentity,
    MerchantRegistration,
    MerchantRequestState,
    build_me_aq_c_init_request,
    build_merchant_cert_request,
    open_me_aq_c_init_response,
    open_merchant_cert_response,
)
from setpay.v1 import registration_pb2

log = logging.getLogger("setpay.merchant")

_UNFINISHED_WITH_OPTIONS = (
    "a registration is unfinished (registration.json): its request is sent again exactly "
    "as it was made, so --form and --account-file would not be used: run register without "
    "them to finish it"
)

__all__ = [
    "KEY_EXCHANGE_LABEL",
    "PENDING_FILE",
    "SIGNATURE_LABEL",
    "MerchantRegistrar",
    "Registered",
    "current_credentials",
]
# Local registration labels (LID-EE) are short random ids.
LID_BYTES = 16
# Why, as the merchant is told: a refusal changes nothing at the CA, which keeps none.
_NOT_HELD = (
    "it never arrived, or was refused (the CA keeps no refusal, which changes nothing), or"
    " it opened the settlement account and came back after its session's hour: if register"
    " is then refused, ask the bank for the account id (`setpay bank show-merchant`) and"
    " register with --account-file"
)
# A verified CertRes of a status this release does not know: outcome unknown, the
# request kept in registration.json, nothing installed (``clients.pending_request``).
_UNKNOWN_REGISTER = unknown_status_reported("Merchant CA", "setpay merchant register", PENDING_FILE)
_UNKNOWN_RENEW = unknown_status_reported("Merchant CA", "setpay merchant renew", PENDING_FILE)


@dataclass(frozen=True)
class Registered:
    """What registration produced: the two certificates' thumbprints, or none while the
    CA has not decided (``status`` pended or in progress)."""

    status: int
    signature_thumb: bytes = b""
    key_exchange_thumb: bytes = b""

    @property
    def complete(self) -> bool:
        """True when both certificates are stored beside their keys."""
        return bool(self.signature_thumb)


def _opening_by_thumbprint(exchanges: list[tuple[KeyHandle, bytes]]) -> KeyExchangeChooser:
    """Opens an answer with the certified key-exchange key its envelope is sealed to;
    one sealed to no certificate of ours with the newest key, which the opener then finds
    is not the one named (WRONG_RECIPIENT)."""
    keys = {thumbprint(der): key for key, der in exchanges}
    newest_key, newest_der = exchanges[0]
    newest = (newest_key, thumbprint(newest_der))

    def choose(thumb: bytes) -> tuple[KeyHandle, bytes]:
        key = keys.get(thumb)
        return newest if key is None else (key, thumb)

    return choose


def current_credentials(backend: KeyBackend, chain: Path) -> Credentials:
    """The merchant's credentials: the newest version of each key that holds a certificate
    (new keys of a renewal under way are not used until they are certified).

    Every older certified version (a key-exchange one until its certificate ends) answers
    for what it signed or was named in: a request stored before a renewal and sent again
    after it names the certificates it was built with, and the gateway seals its answer
    to that key-exchange key and names that signature certificate. So the credentials
    open each answer with the key it is sealed to and take the earlier signature
    certificates as the merchant's own (``Credentials.signs_as``); they sign and are
    named in new requests with the newest only. Nothing here deletes an older version.
    """
    signatures = list(certified_versions(backend, SIGNATURE_LABEL))
    exchanges = certified_key_exchanges(backend, KEY_EXCHANGE_LABEL)
    if not signatures or not exchanges:
        raise ConfigError("this merchant is not registered yet: run register first")
    (signature_key, signature_der), (kex_key, kex_der) = signatures[0], exchanges[0]
    return Credentials(
        backend, signature_key, signature_der, read_certificates(chain), kex_key, kex_der,
        key_exchange_chooser=_opening_by_thumbprint(exchanges),
        earlier_signature_thumbs=frozenset(thumbprint(der) for _, der in signatures[1:]),
    )  # fmt: skip


class MerchantRegistrar:
    """Runs (or resumes) the merchant's registration against the Merchant CA."""

    def __init__(
        self,
        config: MerchantConfig,
        backend: KeyBackend,
        authority: AuthorityClient,
        trust: TrustStore,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._config = config
        self._backend = backend
        self._authority = authority
        self._trust = trust
        self._sleep = sleep
        self._pending_path = config.base_dir / PENDING_FILE
        # What the request under way was made with beyond merchant.toml, recorded with it.
        self._made_with: frozenset[str] = frozenset()

    @_UNKNOWN_REGISTER
    @one_at_a_time("merchant", "register")
    def register(
        self,
        profile: Profile,
        *,
        form: Mapping[str, str] | None = None,
        account: str | None = None,
    ) -> Registered:
        """Register (or resume an unfinished registration); certificates stored when
        issued. One at a time in the merchant directory (``clients.registration_lock``)."""
        given = frozenset(name for name, value in (("form", form), ("account", account)) if value)
        if self._pending_path.exists():
            record = read_pending(self._pending_path)
            if is_renewal(record):
                raise RegistrationError("a renewal is unfinished: run renew to finish it")
            if given:
                raise RegistrationError(_UNFINISHED_WITH_OPTIONS)
            resumed = self._resume(record)
            if resumed is not None:
                return resumed
            self._drop(record)
            needed = made_with_of(record)
            if needed:
                raise RegistrationError(
                    "the Merchant CA holds no request for the unfinished registration "
                    f"({_NOT_HELD}), so it is discarded; it was made with "
                    f"{' and '.join(sorted(needed))}: run register again with them, to be "
                    "certified or to hear the refusal"
                )
            log.warning(
                "the Merchant CA holds no request for the unfinished registration (%s): "
                "registering again",
                _NOT_HELD,
            )
        config = self._config
        # Nothing made before the CA's form is filled in: a misspelt field costs no keys;
        # nor before a registered merchant is found to have to register again.
        check_may_register(config, self._backend, self._trust, self._refresh_revocation)
        registration, init_state = self._me_aq_c_init(
            registration_pb2.REQUEST_TYPE_MER_INITIAL_BOTH
        )
        filled = filled_fields(registration.form, config, form or {})
        self._made_with = given
        return self._send(
            *self._recorded_request(profile, registration, init_state, filled, account=account)
        )

    @_UNKNOWN_RENEW
    @one_at_a_time("merchant", "renew")
    def renew(self, profile: Profile) -> Registered:
        """Renew both certificates with new keys, proving the current signature key; the
        current certificates stay in use until the new ones are stored. One at a time in
        the merchant directory (``clients.registration_lock``)."""
        if self._pending_path.exists():
            record = read_pending(self._pending_path)
            if not is_renewal(record):
                raise RegistrationError(
                    "this merchant is not registered yet: its registration is unfinished, "
                    "run register to finish it"
                )
            resumed = self._resume(record)
            if resumed is not None:
                return resumed
            log.warning(
                "the Merchant CA holds no request for the unfinished renewal (%s): renewing again",
                _NOT_HELD,
            )
            self._drop(record)
        config = self._config
        current = current_credentials(self._backend, config.chain)
        self._refresh_revocation()
        registration, init_state = self._me_aq_c_init(
            registration_pb2.REQUEST_TYPE_MER_RENEWAL_BOTH
        )
        filled = filled_fields(registration.form, config, {})
        return self._send(
            *self._recorded_request(profile, registration, init_state, filled, renewing=current)
        )

    def _recorded_request(
        self, profile: Profile, registration: MerchantRegistration, init_state: MeAqCInitState,
        filled: list[tuple[str, str]], *, account: str | None = None,
        renewing: Credentials | None = None,
    ) -> tuple[registration_pb2.CertRequest, MerchantRequestState]:  # fmt: skip
        """New versions of both keys and the CertReq they make, recorded before it may
        leave. Until it is recorded, a failure destroys the new keys: never sent, they can
        never be certified (a token holds only so many)."""
        keys = new_keys(self._backend, profile, log)
        try:
            request, state = build_merchant_cert_request(
                self._backend, *keys, registration, init_state,
                filled=filled, account=account, renewing=renewing,
            )  # fmt: skip
            self._save_pending(state, request.SerializeToString())
        except BaseException:
            discard_keys(self._backend, unrecorded(self._pending_path, keys), log)
            raise
        return request, state

    def _send(
        self, request: registration_pb2.CertRequest, state: MerchantRequestState
    ) -> Registered:
        """Send the recorded CertReq and finish with the answer. A lost or unverifiable
        answer leaves the record for the next run."""
        try:
            response = self._authority.cert(request)
            result = open_merchant_cert_response(response, state, self._trust)
        except PeerError:
            self._refused(state)
            raise
        return self._finish(result, state)

    def _refused(self, state: MerchantRequestState) -> None:
        """The CA's verified word that it will not certify this request: its record goes,
        then its keys, an initial request's as a renewal's (no run sends it again)."""
        self._pending_path.unlink(missing_ok=True)
        discard_keys(self._backend, (state.signature_key, state.key_exchange_key), log)

    def _drop(self, record: dict[str, Any]) -> None:
        """Drop the recorded request the CA holds nothing of (it certified nothing): the
        record first, so that a crash between leaves no record naming a destroyed key."""
        self._pending_path.unlink()
        discard_keys(self._backend, pending_keys(record, self._backend), log)

    def _me_aq_c_init(self, request_type: int) -> tuple[MerchantRegistration, MeAqCInitState]:
        """Me-AqCInit for this merchant: the CA's form and the state the CertReq goes on."""
        config = self._config
        identity = MerchantIdentity(config.merchant_id, config.name or config.merchant_id)
        request, init_state = build_me_aq_c_init_request(
            request_type, identity, config.brand_id, os.urandom(LID_BYTES)
        )
        registration = open_me_aq_c_init_response(
            self._authority.me_aq_c_init(request, sent=init_state.sent), init_state, self._trust
        )
        log.info(
            "Me-AqCInit: Merchant CA %s answered with form %s",
            registration.ca.signer.subject_id, registration.form.form_id,
        )  # fmt: skip
        return registration, init_state

    def _refresh_revocation(self) -> None:
        RevocationFeed(
            self._trust, lambda: self._authority.revocation(self._config.brand_id)
        ).refresh()

    def _finish(self, result: MerchantCertificates, state: MerchantRequestState) -> Registered:
        """Poll a request the CA has not decided (``UNDECIDED``: pended, or in progress),
        then store what it decided: one still undecided stays recorded with its keys, as
        the CA may yet certify it; a refusal drops both (``_refused``)."""
        answer = (result, state)
        ask = partial(inquired, self._authority, self._backend, self._trust)
        result, state = polled(answer, ask, self._sleep)
        name = CERT_STATUS_NAMES.get(result.status, str(result.status))
        if result.status in UNDECIDED:
            self._save_pending(state)
            log.info("CertReq not decided yet by the Merchant CA (%s); run again later", name)
            return Registered(result.status)
        if not result.complete or result.signature is None or result.key_exchange is None:
            self._refused(state)
            raise RegistrationError(f"the Merchant CA refused: {name}", result.status)
        # The backend stores one certificate at a time: until both are in, what resumes
        # the registration stays on disk.
        self._save_pending(state)
        self._backend.store_certificate(state.signature_key, result.signature.der)
        self._backend.store_certificate(state.key_exchange_key, result.key_exchange.der)
        write_certificates(self._config.chain, result.chain)
        self._pending_path.unlink()
        log.info(
            "%s merchant %s: signature certificate %s, key exchange %s",
            "renewed" if request_kind(state.request_type).renewal else "registered",
            self._config.merchant_id, result.signature.thumbprint.hex()[:8],
            result.key_exchange.thumbprint.hex()[:8],
        )  # fmt: skip
        return Registered(
            result.status, result.signature.thumbprint, result.key_exchange.thumbprint
        )

    # -- an unfinished request across runs ---------------------------------------------

    def _save_pending(self, state: MerchantRequestState, request: bytes | None = None) -> None:
        save_pending(self._pending_path, state, self._config, request, self._made_with)

    def _resume(self, record: dict[str, Any]) -> Registered | None:
        """Finish the recorded request; None when the CA holds no request of this
        registration (nothing was certified)."""
        missing = missing_keys(record, self._backend)
        if missing:  # no run could send it or ask about it: dropped, whatever else changed
            self._drop(record)
            raise RegistrationError(dropped_refusal(self._pending_path, record, missing))
        changes = config_changes(record, self._config)
        if any(where == CA_TARGET for where, _, _ in changes):
            # Only the CA it went to can say whether it holds it: nothing is sent.
            raise RegistrationError(changed_config_refusal(self._pending_path, changes))
        self._refresh_revocation()
        state, request = resumed_state(self._pending_path, record, self._backend, self._trust)
        self._made_with = made_with_of(record)
        try:
            if changes:
                self._refuse_changes(changes, state)
            result, state = answer_to_recorded(
                self._authority, self._backend, self._trust, state, request
            )
        except PeerError as exc:
            if exc.code == NEVER_RECEIVED:
                return None
            raise
        return self._finish(result, state)

    def _refuse_changes(
        self, changes: list[tuple[str, str, str]], state: MerchantRequestState
    ) -> None:
        """merchant.toml changed since the recorded request was made: NEVER_RECEIVED (a
        PeerError) when the CA holds no request of it, so a new one is made with the new
        values; a RegistrationError naming both values otherwise."""
        refusal = changed_config_refusal(self._pending_path, changes)
        try:
            inquired(self._authority, self._backend, self._trust, state)
        except PeerError as exc:
            if exc.code == NEVER_RECEIVED:
                raise
            raise RegistrationError(f"{refusal} (CertInq: {exc})") from exc
        except (SetcoreError, TransportError) as exc:
            raise RegistrationError(f"{refusal} (CertInq: {exc})") from exc
        raise RegistrationError(refusal)
