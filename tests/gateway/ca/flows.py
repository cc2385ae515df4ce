"""Registration flows driven through the real gRPC stub, with hooks to forge single fields.

The normal flows use the setcore builders exactly as a wallet or merchant would. The
``*_request`` helpers rebuild a CertReq by hand so that a negative test can change one
thing (the key that signs, Chall-CA, RRPID, a missing renewal signature) and nothing else.
"""

from __future__ import annotations

import itertools
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from google.protobuf.message import Message

from gateway.bank_pki import open_ca_store
from hsm.base import KeyAlgorithm, KeyHandle, KeyUsage
from hsm.software import SoftwareBackend
from setcore.credentials import Credentials
from setcore.encoding import digest
from setcore.envelope import seal
from setcore.error_message import request_digest
from setcore.freshness import new_id, now_ms
from setcore.pan import PAN
from setcore.pki.issuance import kem_for
from setcore.pki.truststore import TrustStore
from setcore.purchase import header
from setcore.registration import RegistrationForm, key_thumbprint, spki_of
from setcore.registration_cardholder import (
    PAN_DATA0_CT,
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
from setcore.registration_certreq import CERT_REQ_CT, Exchange
from setcore.registration_merchant import (
    ACCT_DATA_CT,
    Identity,
    MeAqCInitState,
    MerchantCertificates,
    MerchantRegistration,
    MerchantRequestState,
    build_me_aq_c_init_request,
    build_merchant_cert_request,
    id_data_of,
    open_me_aq_c_init_response,
    open_merchant_cert_response,
)
from setcore.signed import countersign, sign
from setpay.v1 import registration_pb2

from .conftest import Bank

CARD_INITIAL = registration_pb2.REQUEST_TYPE_CARD_INITIAL_SIG
CARD_RENEWAL = registration_pb2.REQUEST_TYPE_CARD_RENEWAL_SIG
MER_INITIAL = registration_pb2.REQUEST_TYPE_MER_INITIAL_BOTH
MER_RENEWAL = registration_pb2.REQUEST_TYPE_MER_RENEWAL_BOTH
PGWY_INITIAL = registration_pb2.REQUEST_TYPE_PGWY_INITIAL_BOTH

# The requesters' own keys (wallets, merchants): one ephemeral software backend.
REQUESTERS = SoftwareBackend.ephemeral()
_labels = itertools.count()


def new_key(bank: Bank, usage: KeyUsage) -> KeyHandle:
    """A fresh requester key of the bank's profile."""
    algorithm = KeyAlgorithm.EC_P256 if bank.profile == "ec" else KeyAlgorithm.RSA_2048
    return REQUESTERS.generate(f"requester-{next(_labels)}", usage, algorithm)


def new_trust(bank: Bank) -> TrustStore:
    """A requester's trust store: only the pinned root (the CA staples the BCI)."""
    return TrustStore(bank.pki.root_der)


# The field a request frame carries its SET message in; a frame without one (CardCInit,
# Me-AqCInit) is the message itself.
_SET_FIELDS = ("reg_form_req", "cert_req", "cert_inq_req")


# The state of a CertReq or CertInqReq, a cardholder's or a merchant's.
Requested = TypeVar("Requested", CardRequestState, MerchantRequestState)


def sent_as(state: Requested, request: Message) -> Requested:
    """``state`` for ``request`` as it is sent now: a test that changes a request after
    building it plays the wallet that sent those bytes, which the CA's Error names."""
    return replace(state, exchange=replace(state.exchange, request_digest=sent_digest(request)))


def sent_digest(request: Message) -> bytes:
    """The digest a CA's Error names ``request`` by, as its requester sent it."""
    fields = request.DESCRIPTOR.fields_by_name
    sent = next((getattr(request, f) for f in _SET_FIELDS if f in fields), None)
    return request_digest(
        request.DESCRIPTOR.full_name, request.SerializeToString() if sent is None else sent
    )


# --- cardholder ------------------------------------------------------------------------


@dataclass(frozen=True)
class CardSession:
    """A cardholder registration after CardCInit and RegForm."""

    trust: TrustStore
    registration: RegFormState
    form: RegistrationForm
    lid_ee: bytes


def start_cardholder(
    bank: Bank, pan: str, *, request_type: int = CARD_INITIAL, trust: TrustStore | None = None
) -> CardSession:
    """CardCInit and RegForm through the stub."""
    trust = trust or new_trust(bank)
    lid_ee = os.urandom(8)
    request, state = build_card_c_init_request(bank.brand_id, lid_ee)
    contact = open_card_c_init_response(bank.stub.CardCInit(request), state, trust)
    request, registration = build_reg_form_request(
        contact, PAN(pan), lid_ee, request_type=request_type
    )
    form = open_reg_form_response(bank.stub.RegForm(request), registration, trust)
    return CardSession(trust, registration, form, lid_ee)


def filled_form(fields: Sequence[str]) -> list[tuple[str, str]]:
    """Every field of a cardholder's form, filled in."""
    return [(name, "A. Tester" if name == "cardholder-name" else "X1 1XX") for name in fields]


def register_cardholder(
    bank: Bank,
    pan: str,
    expiry: str,
    *,
    key: KeyHandle | None = None,
    session: CardSession | None = None,
    renewing: Credentials | None = None,
) -> tuple[CardCertificate, CardRequestState, KeyHandle, CardSession]:
    """The whole cardholder registration; returns the outcome (whatever its status)."""
    session = session or start_cardholder(bank, pan)
    key = key or new_key(bank, KeyUsage.SIGNATURE)
    request, state = build_card_cert_request(
        REQUESTERS, key, session.form, session.registration, PAN(pan), expiry, renewing=renewing,
        filled=filled_form(session.form.fields),
    )  # fmt: skip
    outcome = open_card_cert_response(bank.stub.Cert(request), state, session.trust)
    return outcome, state, key, session


def card_request(
    session: CardSession,
    key: KeyHandle,
    pan: str,
    expiry: str,
    *,
    sign_with: KeyHandle | None = None,
    chall_ca: bytes | None = None,
    rrpid: bytes | None = None,
    renewing: Credentials | None = None,
    renewal_signature: bool = True,
    request_date: int | None = None,
    brand_id: str | None = None,
    reg_form_id: str | None = None,
    filled: Sequence[tuple[str, str]] | None = None,
) -> tuple[registration_pb2.CertRequest, CardRequestState]:
    """A cardholder CertReq built by hand, with one thing changed on request (``filled``:
    by default every field of the form, filled in)."""
    ca, form = session.registration.ca, session.form
    filled = filled_form(form.fields) if filled is None else filled
    rrpid = rrpid or new_id()
    chall, card_secret, back_key = new_id(), new_id(), os.urandom(32)
    pan_data0 = registration_pb2.PANData0(
        content_type=PAN_DATA0_CT, pan=pan, card_expiry=expiry, card_secret=card_secret,
        ex_nonce=new_id(),
    ).SerializeToString()  # fmt: skip
    spki = spki_of(key.public_key)
    data = registration_pb2.CertReqData(
        content_type=CERT_REQ_CT, rrpid=rrpid, lid_ee=session.lid_ee, chall_ee3=chall,
        lid_ca=ca.lid_ca, chall_ca=form.chall_ca if chall_ca is None else chall_ca,
        request_type=form.request_type,  # type: ignore[arg-type]
        request_date_unix_ms=now_ms() if request_date is None else request_date,
        reg_form_id=form.form_id if reg_form_id is None else reg_form_id,
        reg_form=[registration_pb2.RegField(name=n, value=v) for n, v in filled],
        back_key=back_key, public_key_sig=spki,
        ee_thumb=renewing.signature_thumb if renewing else b"",
        brand_id=ca.signer.brand_id if brand_id is None else brand_id,
        dd_extra=digest(PAN_DATA0_CT, pan_data0),
    )  # fmt: skip
    tbs = data.SerializeToString()
    signer = sign_with or key
    bundle = renewing.bundle() if renewing else None
    signed = sign(REQUESTERS, signer, key_thumbprint(spki), CERT_REQ_CT, tbs, bundle)
    if renewing is not None and renewal_signature:
        countersign(renewing.backend, renewing.signature_key, renewing.signature_thumb, signed)
    sealed = seal(
        CERT_REQ_CT, signed.SerializeToString(), ca.recipient(), rrpid=rrpid,
        extra=(PAN_DATA0_CT, pan_data0),
    )  # fmt: skip
    request = registration_pb2.CertRequest(
        header=header(rrpid=rrpid), cert_req=sealed.SerializeToString()
    )
    sent = sent_digest(request)
    exchange = Exchange(rrpid, chall, session.lid_ee, ca.lid_ca, ca.signer, request_digest=sent)
    state = CardRequestState(
        exchange, form.request_type, key, PAN(pan), expiry, card_secret, back_key
    )
    return request, state


# --- merchant and gateway --------------------------------------------------------------


@dataclass(frozen=True)
class MerchantSession:
    """A merchant or gateway registration after Me-AqCInit."""

    trust: TrustStore
    state: MeAqCInitState
    registration: MerchantRegistration


def start_merchant(
    bank: Bank, identity: Identity, *, request_type: int = MER_INITIAL
) -> MerchantSession:
    """Me-AqCInit through the stub."""
    trust = new_trust(bank)
    request, state = build_me_aq_c_init_request(
        request_type, identity, bank.brand_id, os.urandom(8)
    )
    registration = open_me_aq_c_init_response(bank.stub.MeAqCInit(request), state, trust)
    return MerchantSession(trust, state, registration)


def register_merchant(
    bank: Bank,
    identity: Identity,
    *,
    session: MerchantSession | None = None,
    keys: tuple[KeyHandle, KeyHandle] | None = None,
    account: str | None = None,
    renewing: Credentials | None = None,
) -> tuple[MerchantCertificates, MerchantRequestState, MerchantSession]:
    """The whole merchant (or gateway) registration; the outcome whatever its status."""
    session = session or start_merchant(bank, identity)
    sig, kex = keys or (new_key(bank, KeyUsage.SIGNATURE), new_key(bank, KeyUsage.KEY_EXCHANGE))
    request, state = build_merchant_cert_request(
        REQUESTERS, sig, kex, session.registration, session.state, account=account,
        renewing=renewing,
        filled=[(name, "Corner Shop Ltd") for name in session.registration.form.fields],
    )  # fmt: skip
    outcome = open_merchant_cert_response(bank.stub.Cert(request), state, session.trust)
    return outcome, state, session


def merchant_request(
    session: MerchantSession,
    sig: KeyHandle,
    kex: KeyHandle,
    *,
    sign_with: KeyHandle | None = None,
    chall_ca: bytes | None = None,
    account: str | None = None,
    brand_id: str | None = None,
    reg_form_id: str | None = None,
    filled: Sequence[tuple[str, str]] = (),
    public_key_enc: bytes | None = None,
    kem: str | None = None,
    request_date: int | None = None,
    rrpid: bytes | None = None,
) -> tuple[registration_pb2.CertRequest, MerchantRequestState]:
    """A merchant CertReq built by hand, with one thing changed on request."""
    ca, form, state = session.registration.ca, session.registration.form, session.state
    rrpid, chall = rrpid or new_id(), new_id()
    extra = None
    if account is not None:
        extra = (
            ACCT_DATA_CT,
            registration_pb2.AcctData(
                content_type=ACCT_DATA_CT, acct_identification=account, ex_nonce=new_id()
            ).SerializeToString(),
        )
    spki = spki_of(sig.public_key)
    data = registration_pb2.CertReqData(
        content_type=CERT_REQ_CT, rrpid=rrpid, lid_ee=state.lid_ee, chall_ee3=chall,
        lid_ca=ca.lid_ca, chall_ca=form.chall_ca if chall_ca is None else chall_ca,
        request_type=state.request_type,  # type: ignore[arg-type]
        request_date_unix_ms=now_ms() if request_date is None else request_date,
        id_data=id_data_of(state.identity),
        reg_form_id=form.form_id if reg_form_id is None else reg_form_id,
        reg_form=[registration_pb2.RegField(name=n, value=v) for n, v in filled],
        public_key_sig=spki,
        public_key_enc=spki_of(kex.public_key) if public_key_enc is None else public_key_enc,
        public_key_enc_kem=kem_for(kex).value if kem is None else kem,
        brand_id=ca.signer.brand_id if brand_id is None else brand_id,
        dd_extra=digest(extra[0], extra[1]) if extra else b"",
    )  # fmt: skip
    signed = sign(
        REQUESTERS, sign_with or sig, key_thumbprint(spki), CERT_REQ_CT, data.SerializeToString()
    )
    sealed = seal(CERT_REQ_CT, signed.SerializeToString(), ca.recipient(), rrpid=rrpid, extra=extra)
    request = registration_pb2.CertRequest(
        header=header(rrpid=rrpid), cert_req=sealed.SerializeToString()
    )
    sent = sent_digest(request)
    exchange = Exchange(rrpid, chall, state.lid_ee, ca.lid_ca, ca.signer, request_digest=sent)
    return request, MerchantRequestState(exchange, state.request_type, state.identity, sig, kex)


def purge_answers(bank: Bank) -> None:
    """Forget every answer stored so far, as the CA's housekeeping does once they are
    older than ``CaPolicy.response_retention_ms`` (decided requests are kept)."""
    store = open_ca_store(bank.config)
    try:
        with store.write() as tx:
            tx.purge(0, now_ms() + 1)
    finally:
        store.close()


def certificates_naming(bank: Bank, subject: str) -> list[tuple[bytes, int]]:
    """(thumbprint, notAfter in ms) of every certificate ca.db holds for ``subject``."""
    path = bank.config.path(bank.config.ca_db)
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = db.execute(
            "SELECT thumb, not_after_ms FROM certificates WHERE subject = ? ORDER BY issued_ms",
            (subject,),
        ).fetchall()
    finally:
        db.close()
    return [(bytes(thumb), not_after) for thumb, not_after in rows]


# --- openssl ---------------------------------------------------------------------------


def openssl() -> str:
    """The openssl binary; a missing tool fails the test loudly."""
    found = shutil.which("openssl")
    if found is None:
        pytest.fail("openssl is required for these tests (Debian package: openssl)")
    return found


def write_pem(path: Path, ders: Sequence[bytes]) -> Path:
    """DER certificates as one PEM file."""
    pems = [
        x509.load_der_x509_certificate(d).public_bytes(serialization.Encoding.PEM) for d in ders
    ]
    path.write_bytes(b"".join(pems))
    return path


def openssl_verify(tmp: Path, root: bytes, chain: Sequence[bytes], leaf: bytes) -> str:
    """``openssl verify -x509_strict`` of ``leaf`` against ``root`` with ``chain``."""
    tmp.mkdir(parents=True, exist_ok=True)
    args = [
        openssl(),
        "verify",
        "-x509_strict",
        "-CAfile",
        str(write_pem(tmp / "root.pem", [root])),
    ]
    if chain:
        args += ["-untrusted", str(write_pem(tmp / "chain.pem", chain))]
    args.append(str(write_pem(tmp / "leaf.pem", [leaf])))
    result = subprocess.run(args, capture_output=True, text=True, check=False, timeout=60)
    return result.stdout + result.stderr
