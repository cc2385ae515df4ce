"""The cardholder's registration with the brand's Cardholder CA.

    CardCInit -> RegForm (PAN sealed to the CA) -> CertReq (PANData0 sealed to the CA)
    -> CertRes (Nonce-CCA under the wallet's back key) | pended -> CertInq ... -> CertRes

Every check of the CA's answers is setcore's (``setcore.registration_cardholder``); the
wallet keeps the outcome: the signature key in its key backend under the configured
label with the certificate beside it, the Cardholder CA certificate in
``certs/chain.pem``, and the card with CardSecret and PANSecret in the sealed card
file. CardSecret is sealed into the card file *before* the CertReq leaves, so a crash
after the CA certified the key never strands a certificate whose PANSecret the wallet
can no longer compute; a pended request's state (with the back key) is sealed there too.

Until the CA's first answer is verified, the pending state also holds the CertReq's exact
bytes: a request lost on the way, or whose answer was lost, is sent again as it was, and
the CA answers a repeated RRPID with the answer it stored (or, never having seen it,
processes it now). The CA keeps stored answers only for its retention (a week): a resend
after that is refused whether or not the CA decided it (RRPID_REUSED for a request it
decided, MESSAGE_TOO_OLD for one it never saw), so the wallet then asks with CertInq,
which the CA answers from the decided request for good (the certificate, for the key the
wallet holds, or a pended or refused status). Only a CertInq answered UNKNOWN_LID, no
request for this registration, means the CertReq never reached the CA: the pending state
is discarded and the registration starts over with a new key. Any other refusal leaves
the pending state for a later run.
"""

from __future__ import annotations

import base64
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from google.protobuf.message import DecodeError

from clients.authority import AuthorityClient
from clients.errors import RegistrationError
from clients.identity import write_certificates
from clients.revocation import RevocationFeed
from clients.wallet.config import WalletConfig
from clients.wallet.vault import CardSecrets, open_vault, seal
from hsm.base import KeyBackend, KeyHandle, KeyUsage
from hsm.errors import KeyNotFound
from setcore.errors import ErrorCode, PeerError
from setcore.freshness import new_id
from setcore.pan import PAN
from setcore.pki.roles import CARDHOLDER_CA, CertificateUsage
from setcore.pki.truststore import TrustStore
from setcore.profiles import Profile
from setcore.registration import CERT_STATUS_NAMES, REQUEST_PENDED
from setcore.registration_cardholder import (
    CardCertificate,
    CardRequestState,
    build_card_c_init_request,
    build_card_cert_inquiry,
    build_card_cert_request,
    build_reg_form_request,
    open_card_c_init_response,
    open_card_cert_response,
    open_reg_form_response,
)
from setcore.registration_certreq import Exchange
from setpay.v1 import registration_pb2

log = logging.getLogger("setpay.wallet")

# A pended request is asked about this many times, this far apart, before the command
# leaves it for a later run (see clients.merchant.registration for the reasoning).
PENDED_POLLS = 3
PENDED_POLL_SECONDS = 1.0
# Local registration labels (LID-EE) are short random ids.
LID_BYTES = 16
# Refusals of a resent CertReq that do not say whether the CA decided it: its date is
# outside the window, its RRPID names a decided request whose answer was purged after the
# CA's retention (the wallet resends its own bytes, so that request is this one), or no
# registration by these LIDs. The CA is asked with CertInq before anything else is done.
ASK_BEFORE_REGISTERING = frozenset(
    {
        ErrorCode.ERROR_CODE_MESSAGE_TOO_OLD,
        ErrorCode.ERROR_CODE_RRPID_REUSED,
        ErrorCode.ERROR_CODE_UNKNOWN_LID,
    }
)
# The one answer meaning the CA never decided the request: a CertInq finds no request for
# the registration. The CA keeps decided requests for good: no purge ever causes it.
NEVER_RECEIVED = ErrorCode.ERROR_CODE_UNKNOWN_LID


@dataclass(frozen=True)
class RegisteredCard:
    """The outcome for the card it names (BIN and last four): a certificate (its
    thumbprint) or a pended request."""

    status: int
    masked_pan: str
    certificate_thumb: bytes = b""

    @property
    def complete(self) -> bool:
        """True when the certificate is stored and the card sealed with its PANSecret."""
        return bool(self.certificate_thumb)


def request_unanswered(held: CardSecrets) -> bool:
    """True while the held CertReq has no verified answer from the CA (sent, or about to
    be): its bytes are kept until then, and dropped once the CA pends it."""
    return held.pending is not None and "cert_request" in held.pending


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class CardholderRegistrar:
    """Runs (or resumes) the wallet's registration against the Cardholder CA."""

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

    @property
    def _card_file(self) -> Path:
        return self._config.card_file

    def _new_key(self, profile: Profile) -> KeyHandle:
        label = self._config.key_label
        try:
            existing = self._backend.get(label)
        except KeyNotFound:
            existing = None
        if existing is not None and self._backend.certificate(existing) is not None:
            raise RegistrationError(f"{label} is already certified: this wallet is registered")
        return self._backend.generate(label, KeyUsage.SIGNATURE, profile.signature_key)

    def register(
        self, pan: PAN, expiry: str, profile: Profile, *, form: Mapping[str, str] | None = None
    ) -> RegisteredCard:
        """Register the card (or resume its pended request): certificate, chain, sealed card.

        A pending request of another card is refused: only one card is registered at a
        time, and resuming it under this card's name would report the wrong card.
        """
        config = self._config
        held = open_vault(self._card_file, self._passphrase) if self._card_file.exists() else None
        if held is not None and held.pending and held.pan != pan:
            raise RegistrationError(
                f"{self._card_file} holds the pending registration of card {held.pan.masked}, "
                f"not {pan.masked}: finish it with `setpay wallet register --card` naming "
                f"that card's file, or drop it by removing {self._card_file} (the CA's answer "
                "to it is then never collected)"
            )
        RevocationFeed(self._trust, lambda: self._authority.revocation(config.brand_id)).refresh()
        if held is not None:
            if held.pending:
                resumed = self._resume(held)
                if resumed is not None:
                    return resumed
                log.warning(
                    "the Cardholder CA has no record of the pending registration of card %s "
                    "(its request never arrived): registering again",
                    held.pan.masked,
                )  # fmt: skip
                self._card_file.unlink()
            elif held.pan_secret is not None:
                raise RegistrationError("this wallet already holds a registered card")
        key = self._new_key(profile)
        lid_ee = os.urandom(LID_BYTES)
        init, init_state = build_card_c_init_request(config.brand_id, lid_ee)
        ca = open_card_c_init_response(self._authority.card_c_init(init), init_state, self._trust)
        log.info("CardCInit: Cardholder CA %s", ca.signer.subject_id)
        reg_form, reg_state = build_reg_form_request(ca, pan, lid_ee, language=config.language)
        filled_form = open_reg_form_response(
            self._authority.reg_form(reg_form), reg_state, self._trust
        )
        if filled_form.referral:
            raise RegistrationError(f"the CA refers this card elsewhere: {filled_form.referral}")
        log.info("RegForm: card %s accepted for form %s", pan.masked, filled_form.form_id)
        given = form or {}
        request, state = build_card_cert_request(
            self._backend, key, filled_form, reg_state, pan, expiry,
            filled=[(name, given.get(name, "")) for name in filled_form.fields],
        )  # fmt: skip
        self._seal_pending(state, request.SerializeToString())
        result = open_card_cert_response(self._authority.cert(request), state, self._trust)
        return self._finish(result, state)

    def _finish(self, result: CardCertificate, state: CardRequestState) -> RegisteredCard:
        for _ in range(PENDED_POLLS):
            if result.status != REQUEST_PENDED:
                break
            self._sleep(PENDED_POLL_SECONDS)
            inquiry, state = build_card_cert_inquiry(self._backend, state)
            result = open_card_cert_response(self._authority.cert_inq(inquiry), state, self._trust)
        if result.status == REQUEST_PENDED:
            self._seal_pending(state)
            log.info("CertReq pended by the Cardholder CA; run register again later")
            return RegisteredCard(result.status, state.pan.masked)
        if not result.complete or result.certificate is None or result.card is None:
            self._card_file.unlink(missing_ok=True)
            name = CERT_STATUS_NAMES.get(result.status, str(result.status))
            raise RegistrationError(f"the Cardholder CA refused: {name}", result.status)
        self._backend.store_certificate(state.key, result.certificate.der)
        write_certificates(self._config.chain, result.chain)
        card = result.card
        seal(
            self._card_file,
            CardSecrets(card.pan, card.expiry, card.card_secret, card.pan_secret),
            self._passphrase,
        )
        log.info(
            "registered card %s: certificate %s",
            card.pan.masked, result.certificate.thumbprint.hex()[:8],
        )  # fmt: skip
        return RegisteredCard(result.status, card.pan.masked, result.certificate.thumbprint)

    # -- the sealed pending state -----------------------------------------------------

    def _seal_pending(self, state: CardRequestState, request: bytes | None = None) -> None:
        """Seal what resuming needs; with ``request``, the CertReq whose answer is awaited."""
        ex = state.exchange
        pending = {
            "lid_ee": _b64(ex.lid_ee),
            "lid_ca": _b64(ex.lid_ca),
            "ca_certificate": _b64(ex.ca.der),
            "request_type": str(state.request_type),
            "key_version": str(state.key.version),
            "back_key": _b64(state.back_key),
        }
        if request is not None:
            pending |= {
                "cert_request": _b64(request),
                "rrpid": _b64(ex.rrpid),
                "chall_ee3": _b64(ex.chall_ee3),
            }
        secrets = CardSecrets(state.pan, state.expiry, state.card_secret, None, pending)
        seal(self._card_file, secrets, self._passphrase)

    def _resume(self, held: CardSecrets) -> RegisteredCard | None:
        """Send the unanswered CertReq again, or ask about a pended one with CertInq.

        None when a CertInq finds no request of this registration: it never arrived.
        """
        pending = held.pending or {}
        request = None
        try:
            ca = self._trust.verify_chain(
                base64.b64decode(pending["ca_certificate"]), (), CARDHOLDER_CA,
                CertificateUsage.SIGNATURE,
            )  # fmt: skip
            rrpid, chall_ee3 = new_id(), new_id()
            if "cert_request" in pending:
                request = registration_pb2.CertRequest.FromString(
                    base64.b64decode(pending["cert_request"])
                )
                rrpid = base64.b64decode(pending["rrpid"])
                chall_ee3 = base64.b64decode(pending["chall_ee3"])
            exchange = Exchange(
                rrpid, chall_ee3, base64.b64decode(pending["lid_ee"]),
                base64.b64decode(pending["lid_ca"]), ca,
            )  # fmt: skip
            key = self._backend.get(self._config.key_label, int(pending["key_version"]))
            state = CardRequestState(
                exchange, int(pending["request_type"]), key, held.pan, held.expiry,
                held.card_secret, base64.b64decode(pending["back_key"]),
            )  # fmt: skip
        except (ValueError, KeyError, KeyNotFound, DecodeError) as exc:
            raise RegistrationError(f"the pended registration cannot be resumed: {exc}") from exc
        try:
            response, state = self._ask(state, request)
        except PeerError as exc:
            if exc.code == NEVER_RECEIVED:
                return None
            raise
        return self._finish(response, state)

    def _ask(
        self, state: CardRequestState, request: registration_pb2.CertRequest | None
    ) -> tuple[CardCertificate, CardRequestState]:
        """The CA's answer about the held request: to the CertReq sent again, else (or when
        that refusal leaves open whether the CA decided it) to a CertInq."""
        masked = state.pan.masked
        if request is not None:
            log.info("sending the certificate request of card %s again", masked)
            try:
                response = self._authority.cert(request)
                return open_card_cert_response(response, state, self._trust), state
            except PeerError as exc:
                if exc.code not in ASK_BEFORE_REGISTERING:
                    raise
                log.info(
                    "the Cardholder CA refused the request of card %s sent again (%s): "
                    "asking with CertInq whether it decided it",
                    masked, exc.code_name,
                )  # fmt: skip
        else:
            log.info("resuming the pended registration of card %s with CertInq", masked)
        # The answer is opened as a CertRes is: an issued certificate must certify the key
        # this state holds and carry the blinded account of its CardSecret.
        inquiry, state = build_card_cert_inquiry(self._backend, state)
        return open_card_cert_response(self._authority.cert_inq(inquiry), state, self._trust), state
