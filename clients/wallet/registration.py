"""The cardholder's registration with the brand's Cardholder CA, and its renewal.

    CardCInit -> RegForm (PAN sealed to the CA) -> CertReq (PANData0 sealed to the CA)
    -> CertRes (Nonce-CCA under the wallet's back key) | pended -> CertInq ... -> CertRes

Every check of the CA's answers is setcore's (``setcore.registration_cardholder``); the
wallet keeps the outcome: the signature key in its key backend under the configured
label with the certificate beside it, the Cardholder CA certificate in
``certs/chain.pem``, and the card with CardSecret and PANSecret in the sealed card
file. CardSecret is sealed into the card file *before* the CertReq leaves, so a crash
after the CA certified the key never strands a certificate whose PANSecret the wallet
can no longer compute; an undecided request's state (with the back key) is sealed there too.

A request lost on the way, or whose answer was lost, is sent again as it was, else asked
about with CertInq (``clients.wallet.held_request``). A request the CA has not decided yet
(REQUEST_PENDED, or REQUEST_IN_PROGRESS: ``UNDECIDED``) is asked about a few times, then
kept with its key version for a later run: the CA may still certify it. A CertInq
answered UNKNOWN_LID means the CA holds no request for this registration: its pending
state is discarded with its key version, and the registration starts over with a new key.

Registration and renewal alike make the new key version only once the CA's form is
filled in, and destroy it when anything fails before its CertReq is sealed (a misspelt
field, the CA unreachable), unless the card file, read back, names it: a seal can fail
after its rename (the directory's fsync, a Ctrl-C). Once sealed, the request may leave,
and the version is kept for resuming it, until the request is dropped: the CA's verified
refusal, its word that it holds no such request, or the version gone (no run could
finish it). No run sends a dropped request again, so no CA will certify its version,
which then goes too.

The card's enrolment code (from the issuer's card file) fills the CA's form field for
it, and is sealed with the card: renewals need it too (``gateway.ca.enrolment``).

``renew`` (CARD_RENEWAL_SIG) runs the same exchange for the registered card with a new
version of the key, the CertReq signed by the new key and by the current certificate's
(SET-PROTOCOL.md 4.3 rule 2), and a new CardSecret kept in the pending state: the card
file keeps the current PANSecret, so the card buys with the current certificate until
the new one and its PANSecret are stored, and a lost answer resumes as above. Older
certified versions are kept (``clients.wallet.credentials`` says why); a renewal the CA
refuses, or that never reached it, takes back its new key version. A certificate that
expired or was revoked cannot be renewed: ``register`` then registers the card (or its
replacement) again under a new key version. One ``register`` or ``renew`` runs at a time
in the wallet's directory (``clients.registration_lock``).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import NoReturn

from clients.authority import AuthorityClient
from clients.errors import RegistrationError, VaultError
from clients.identity import (
    certified_versions,
    discard_uncertified,
    read_certificates,
    write_certificates,
)
from clients.pending_request import NEVER_RECEIVED, polled, unknown_status_reported
from clients.registration_lock import one_at_a_time
from clients.revocation import RevocationFeed
from clients.wallet.config import WalletConfig
from clients.wallet.credentials import card_credentials
from clients.wallet.form_filling import filled_fields
from clients.wallet.held_request import answer_to_held, inquired
from clients.wallet.pending import (
    pending_record,
    pending_version,
    renewal_pending,
    resumed_state,
)
from clients.wallet.vault import CardSecrets, open_vault, seal
from hsm.base import KeyBackend, KeyUsage
from hsm.errors import KeyNotFound
from setcore.credentials import Credentials
from setcore.encoding import thumbprint
from setcore.errors import ErrorCode, PeerError, ProtocolError, quoted
from setcore.pan import PAN
from setcore.pki.roles import CARDHOLDER, CertificateUsage
from setcore.pki.truststore import TrustStore
from setcore.profiles import Profile
from setcore.registration import CERT_STATUS_NAMES, UNDECIDED, RegistrationForm
from setcore.registration_cardholder import (
    ENROLMENT_CODE_FIELD,
    CardCertificate,
    CardRequestState,
    RegFormState,
    build_card_c_init_request,
    build_card_cert_request,
    build_reg_form_request,
    open_card_c_init_response,
    open_card_cert_response,
    open_reg_form_response,
)
from setpay.v1 import crypto_pb2, registration_pb2

log = logging.getLogger("setpay.wallet")

# Local registration labels (LID-EE) are short random ids.
LID_BYTES = 16
_NOT_HELD = "it never arrived, or was refused: the CA keeps no refused request"
# The CA's Errors to a renewal that no later run can change: the certificate it renews
# is revoked or has ended. Its pending state and new key are taken back at once.
RENEWAL_IMPOSSIBLE = frozenset(
    {ErrorCode.ERROR_CODE_REVOKED_CERTIFICATE, ErrorCode.ERROR_CODE_EXPIRED_CERTIFICATE}
)
# Why a held certificate can no longer sign, by the trust store's (or the CA's) refusal.
_UNUSABLE: dict[int, str] = {
    ErrorCode.ERROR_CODE_REVOKED_CERTIFICATE: "revoked",
    ErrorCode.ERROR_CODE_EXPIRED_CERTIFICATE: "expired",
}
# A verified CertRes of a status unknown here: outcome unknown (clients.pending_request).
_CA, _KEPT = "Cardholder CA", "the sealed card file"
_UNKNOWN_REGISTER = unknown_status_reported(_CA, "setpay wallet register --card CARD.json", _KEPT)
_UNKNOWN_RENEW = unknown_status_reported(_CA, "setpay wallet renew", _KEPT)
_REGISTER_AGAIN = (
    "it cannot be renewed; register the card again with `setpay wallet register --card "
    "CARD.json` (the file of the card the bank issued in its place, if it did)"
)


@dataclass(frozen=True)
class RegisteredCard:
    """The outcome for the card it names (BIN and last four): a certificate (its
    thumbprint), or a request the CA has not decided (``status`` pended or in progress)."""

    status: int
    masked_pan: str
    certificate_thumb: bytes = b""

    @property
    def complete(self) -> bool:
        """True when the certificate is stored and the card sealed with its PANSecret."""
        return bool(self.certificate_thumb)


class CardholderRegistrar:
    """Runs (or resumes) the wallet's registration, or renewal, with the Cardholder CA."""

    def __init__(
        self,
        config: WalletConfig,
        backend: KeyBackend,
        authority: AuthorityClient,
        trust: TrustStore,
        passphrase: str,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._config = config
        self._backend = backend
        self._authority = authority
        self._trust = trust
        self._passphrase = passphrase
        self._sleep = sleep
        # The card's enrolment code for the request under way: sealed with the card.
        self._code: str | None = None

    @property
    def _card_file(self) -> Path:
        return self._config.card_file

    def _refuse_registered_key(self, *, replacing: bool = False) -> None:
        """Refuse a registration while a certified version of the key can still sign,
        unless it is the card's own being ``replacing``: this wallet is registered."""
        label = self._config.key_label
        for key, der in certified_versions(self._backend, label):
            if not replacing and not self._unusable(der):
                raise RegistrationError(
                    f"{label} version {key.version} holds a certificate that can still sign, "
                    f"but {self._card_file.name} holds no card registered with it: register "
                    "in a new wallet directory"
                )

    def _sealed_request(
        self, profile: Profile, form: tuple[RegistrationForm, RegFormState],
        filled: list[tuple[str, str]], card: tuple[PAN, str], *,
        current: CardSecrets | None = None, renewing: Credentials | None = None,
    ) -> tuple[registration_pb2.CertRequest, CardRequestState]:  # fmt: skip
        """A new version of the signature key and the CertReq it signs for ``card`` (the
        number and expiry), sealed as pending before it may leave; for a renewal beside
        the card as registered (``current``), signed by ``renewing`` too. A failure takes
        the version back unless sealed: never certified, it would hold a token's slot."""
        label = self._config.key_label
        key = self._backend.generate(label, KeyUsage.SIGNATURE, profile.signature_key)
        try:
            request, state = build_card_cert_request(
                self._backend, key, *form, *card, filled=filled, renewing=renewing
            )
        except BaseException:
            self._destroy_version(key.version)  # nothing sealed: no file can name it
            raise
        try:
            self._seal_pending(state, current, request.SerializeToString())
        except BaseException:
            self._discard_unsealed(key.version)
            raise
        return request, state

    def _refresh_revocation(self) -> None:
        brand = self._config.brand_id
        RevocationFeed(self._trust, lambda: self._authority.revocation(brand)).refresh()

    def _unusable(self, der: bytes) -> str:
        """Why a certificate of ours can no longer sign (revoked, expired), "" if it can."""
        bundle = crypto_pb2.CertBundle(certificates=[der, *read_certificates(self._config.chain)])
        try:
            self._trust.resolve(thumbprint(der), bundle, CARDHOLDER, CertificateUsage.SIGNATURE)
        except ProtocolError as exc:
            if exc.code not in _UNUSABLE:
                raise
            return _UNUSABLE[exc.code]
        return ""

    def _current(self, held: CardSecrets) -> tuple[Credentials, str]:
        """The registered card's credentials, and why they cannot sign ("" when they can)."""
        label, chain = self._config.key_label, self._config.chain
        current = card_credentials(self._backend, label, chain, held.card())
        return current, self._unusable(current.signature_cert)

    @_UNKNOWN_REGISTER
    @one_at_a_time("wallet", "register")
    def register(
        self,
        pan: PAN,
        expiry: str,
        profile: Profile,
        *,
        form: Mapping[str, str] | None = None,
        enrolment_code: str | None = None,
    ) -> RegisteredCard:
        """Register the card (or resume its pended request): certificate, chain, sealed card.
        ``enrolment_code``: the one the issuer's card file gives, if any (the CA's form
        asks for it; a ``form`` value of that field takes precedence).

        A pending request of another card is refused: only one card is registered at a
        time, and resuming it under this card's name would report the wrong card. A
        registered card whose certificate can still sign is refused too: ``renew`` it.
        """
        held = open_vault(self._card_file, self._passphrase) if self._card_file.exists() else None
        self._code = (form or {}).get(ENROLMENT_CODE_FIELD) or enrolment_code
        if self._code is None and held is not None and held.pan == pan:
            self._code = held.enrolment_code
        if held is not None and renewal_pending(held):
            raise RegistrationError(
                f"the renewal of the certificate of card {held.pan.masked} is unfinished: "
                "run `setpay wallet renew` to finish it"
            )
        if held is not None and held.pending and held.pan != pan:
            raise RegistrationError(
                f"{self._card_file} holds the pending registration of card {held.pan.masked}, "
                f"not {pan.masked}: finish it with `setpay wallet register --card` naming "
                f"that card's file, or drop it by removing {self._card_file} (the CA's answer "
                "to it is then never collected)"
            )
        self._refresh_revocation()
        replacing = False
        if held is not None:
            if held.pending:
                resumed = self._resume(held)
                if resumed is not None:
                    return resumed
                log.warning(
                    "the Cardholder CA holds no request for the pending registration of card "
                    "%s (%s): registering again", held.pan.masked, _NOT_HELD,
                )  # fmt: skip
                self._card_file.unlink()
                self._destroy_version(pending_version(held))
            elif held.pan_secret is not None:
                current, unusable = self._current(held)
                if not unusable:
                    raise RegistrationError(
                        f"this wallet already holds the registered card {held.pan.masked} "
                        f"(certificate {current.signature_thumb.hex()[:16]}): renew its "
                        "certificate with `setpay wallet renew`; another card needs a wallet "
                        "directory of its own"
                    )
                log.warning(
                    "the certificate of card %s is %s: registering %s with a new key",
                    held.pan.masked, unusable, pan.masked,
                )  # fmt: skip
                replacing = True
        self._refuse_registered_key(replacing=replacing)
        # The new key is made once the form is filled in (``_sealed_request``); one left
        # uncertified by an interrupted registration is superseded by it.
        ca_form = self._form(pan, registration_pb2.REQUEST_TYPE_CARD_INITIAL_SIG)
        filled = filled_fields(ca_form[0], form or {}, self._code)
        request, state = self._sealed_request(profile, ca_form, filled, (pan, expiry))
        result = open_card_cert_response(self._authority.cert(request), state, self._trust)
        return self._finish(result, state, None)

    @_UNKNOWN_RENEW
    @one_at_a_time("wallet", "renew")
    def renew(
        self,
        profile: Profile,
        *,
        form: Mapping[str, str] | None = None,
        card: tuple[PAN, str | None] | None = None,
    ) -> RegisteredCard:
        """Renew the registered card's certificate with a new key version (or resume the
        renewal under way); the current certificate signs until the new one is stored.
        ``card``: the number and enrolment code of the bank's card file (a new code for
        the card), refused unless it names this wallet's card; a ``form`` value wins."""
        if not self._card_file.exists():
            raise RegistrationError("this wallet holds no card: run `setpay wallet register`")
        held = open_vault(self._card_file, self._passphrase)
        if card is not None and card[0] != held.pan:
            raise RegistrationError(
                f"the card file is of card {card[0].masked}, this wallet's card is "
                f"{held.pan.masked}: renew with the file of this wallet's card"
            )
        given = (form or {}).get(ENROLMENT_CODE_FIELD) or (card[1] if card else None)
        self._code = given or held.enrolment_code
        if held.pending and not renewal_pending(held):
            raise RegistrationError(
                f"the registration of card {held.pan.masked} is unfinished: run `setpay "
                "wallet register` to finish it"
            )
        self._refresh_revocation()
        if held.pending:
            resumed = self._resume(held)
            if resumed is not None:
                return resumed
            log.warning(
                "the Cardholder CA holds no request for the pending renewal of card %s (%s): "
                "renewing again", held.pan.masked, _NOT_HELD,
            )  # fmt: skip
            held = self._take_back(held, pending_version(held))
        if held.pan_secret is None:
            raise RegistrationError(f"card {held.pan.masked} is not registered: run register")
        current, unusable = self._current(held)
        if unusable:
            raise RegistrationError(
                f"the certificate {current.signature_thumb.hex()[:16]} of card "
                f"{held.pan.masked} is {unusable}: {_REGISTER_AGAIN}"
            )
        renewal = registration_pb2.REQUEST_TYPE_CARD_RENEWAL_SIG
        ca_form = self._form(held.pan, renewal)
        filled = filled_fields(ca_form[0], form or {}, self._code)
        card = (held.pan, held.expiry)
        request, state = self._sealed_request(
            profile, ca_form, filled, card, current=held, renewing=current
        )
        try:
            result = open_card_cert_response(self._authority.cert(request), state, self._trust)
        except PeerError as exc:
            self._renewal_refused(exc, held, state.key.version)
        return self._finish(result, state, held)

    def _renewal_refused(self, exc: PeerError, current: CardSecrets, version: int) -> NoReturn:
        """Re-raise the CA's Error to a renewal; one no later run can change (the renewed
        certificate revoked or ended) takes the renewal back and says what to do instead."""
        if exc.code not in RENEWAL_IMPOSSIBLE:
            raise exc
        self._take_back(current, version)
        raise RegistrationError(
            f"the Cardholder CA refused to renew the certificate of card {current.pan.masked}: "
            f"it is {_UNUSABLE[exc.code]}; {_REGISTER_AGAIN}"
        ) from exc

    def _form(self, pan: PAN, request_type: int) -> tuple[RegistrationForm, RegFormState]:
        """CardCInit and RegForm: the CA's form for this card and request type."""
        lid_ee = os.urandom(LID_BYTES)
        init, init_state = build_card_c_init_request(self._config.brand_id, lid_ee)
        answer = self._authority.card_c_init(init, sent=init_state.sent)
        ca = open_card_c_init_response(answer, init_state, self._trust)
        log.info("CardCInit: Cardholder CA %s", ca.signer.subject_id)
        reg_form, reg_state = build_reg_form_request(
            ca, pan, lid_ee, request_type=request_type, language=self._config.language
        )
        filled_form = open_reg_form_response(
            self._authority.reg_form(reg_form), reg_state, self._trust
        )
        if filled_form.referral:
            raise RegistrationError(
                f"the CA refers this card elsewhere: {quoted(filled_form.referral)}"
            )
        log.info("RegForm: card %s accepted for form %s", pan.masked, filled_form.form_id)
        return filled_form, reg_state

    def _finish(
        self, result: CardCertificate, state: CardRequestState, current: CardSecrets | None
    ) -> RegisteredCard:
        """Poll a request the CA has not decided (``UNDECIDED``: pended, or in progress),
        then store what the CA decided; one still undecided is kept with its key version
        for a later run, as the CA may yet certify it. ``current``: for a renewal, the card
        as registered before it (kept until the renewal is done)."""
        answer = (result, state)
        ask = partial(inquired, self._authority, self._backend, self._trust)
        result, state = polled(answer, ask, self._sleep)
        if result.status in UNDECIDED:
            self._seal_pending(state, current)
            log.info(
                "CertReq not decided yet by the Cardholder CA (%s); run %s again later",
                CERT_STATUS_NAMES[result.status], "renew" if current is not None else "register",
            )  # fmt: skip
            return RegisteredCard(result.status, state.pan.masked)
        if not result.complete or result.certificate is None or result.card is None:
            if current is not None:
                self._take_back(current, state.key.version)
            else:  # the card file held only this request
                self._card_file.unlink(missing_ok=True)
                self._destroy_version(state.key.version)
            name = CERT_STATUS_NAMES.get(result.status, str(result.status))
            raise RegistrationError(f"the Cardholder CA refused: {name}", result.status)
        # The certificate first: a crash before the card file is sealed leaves the pending
        # state, whose next run stores both (``clients.wallet.credentials`` for purchases).
        self._backend.store_certificate(state.key, result.certificate.der)
        write_certificates(self._config.chain, result.chain)
        card = result.card
        seal(
            self._card_file,
            CardSecrets(card.pan, card.expiry, card.card_secret, card.pan_secret, None, self._code),
            self._passphrase,
        )
        log.info(
            "%s card %s: certificate %s", "renewed" if current is not None else "registered",
            card.pan.masked, result.certificate.thumbprint.hex()[:8],
        )  # fmt: skip
        return RegisteredCard(result.status, card.pan.masked, result.certificate.thumbprint)

    # -- the sealed pending state -----------------------------------------------------

    def _seal_pending(
        self, state: CardRequestState, current: CardSecrets | None, request: bytes | None = None
    ) -> None:
        """Seal what resuming needs (``clients.wallet.pending``): for a renewal beside the
        card as registered (``current``), for a registration in place of any card."""
        pending = pending_record(state, request, renewal=current is not None)
        if current is not None:
            secrets = replace(current, pending=pending, enrolment_code=self._code)
        else:
            secrets = CardSecrets(
                state.pan, state.expiry, state.card_secret, None, pending, self._code
            )
        seal(self._card_file, secrets, self._passphrase)

    def _take_back(self, held: CardSecrets, version: int | None) -> CardSecrets:
        """Drop a held request that will never be certified: the card sealed again without
        it (as registered, for a renewal), then its new key ``version`` destroyed. The seal
        returned, so the card file names no pending version: nothing to read back."""
        current = replace(held, pending=None)
        seal(self._card_file, current, self._passphrase)
        self._destroy_version(version)
        return current

    def _discard_unsealed(self, version: int) -> None:
        """Destroy key ``version`` of a request whose seal failed, unless the card file,
        read back, names it (a seal can fail after its rename); in doubt, keep it. The
        read-back opens the card file (scrypt): only a seal that failed needs it."""
        try:
            named = pending_version(open_vault(self._card_file, self._passphrase)) == version
        except VaultError:  # no card file; or one that cannot be read: kept, in doubt
            named = self._card_file.exists()
        if not named:
            self._destroy_version(version)

    def _destroy_version(self, version: int | None) -> None:
        """Destroy key ``version`` (None: there is none) unless a certificate names it: a
        certified version is never destroyed (an inquiry may need it)."""
        if version is None:
            return
        with suppress(KeyNotFound):  # destroyed by an earlier run
            key = self._backend.get(self._config.key_label, version)
            if self._backend.certificate(key) is None:
                discard_uncertified(self._backend, key, log)

    def _resume(self, held: CardSecrets) -> RegisteredCard | None:
        """Send the unanswered CertReq again, or ask about a pended one with CertInq; None
        when a CertInq finds no request of this registration (``_NOT_HELD``)."""
        try:
            state, request = resumed_state(held, self._backend, self._config.key_label, self._trust)
        except RegistrationError as exc:
            if not isinstance(exc.__cause__, KeyNotFound):
                raise
            self._take_back(held, None)
            command = "renew" if renewal_pending(held) else "register --card CARD.json"
            raise RegistrationError(
                f"{exc}: dropped, as no run could finish it; run `setpay wallet {command}` again"
            ) from exc
        current = replace(held, pending=None) if renewal_pending(held) else None
        try:
            response, state = answer_to_held(
                self._authority, self._backend, self._trust, state, request
            )
        except PeerError as exc:
            if exc.code == NEVER_RECEIVED:
                return None
            if current is not None:
                self._renewal_refused(exc, current, state.key.version)
            raise
        return self._finish(response, state, current)
