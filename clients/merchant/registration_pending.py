"""The merchant's certificate request kept in ``registration.json`` until the CA decides it.

It is written (0600, atomically) before the CertReq leaves, with the request's exact bytes:
an answer lost after the CA issued (a deadline, a dropped connection, the process gone)
would otherwise leave a merchant whose ID holds live certificates it cannot collect, and
whose next initial request the CA refuses (REJECTED_BY_AGENT). The next ``register`` or
``renew`` sends those bytes again, which the CA answers from its store (a repeated RRPID
with the same request digest), or asks with CertInq. The bytes are dropped once the CA
answers that it has not decided the request (pended, or in progress: only CertInq asks
about it then); the record goes once a final answer is verified and stored.

It also names the merchant ID, name, brand and CA target the request was made with, and
whether a form or an account went with it: a resume compares them with merchant.toml, and
a new request made in place of one the CA never received needs that form and account
again.

Nothing in it is secret: the keys stay in the backend, and the CertReq (with the
settlement account, if any) is sealed to the CA. The keys a request asks to certify live
as long as its record: made just before it, destroyed when it is dropped uncertified
(``new_keys``, ``discard_keys``), or when writing it fails before its rename: a write can
fail after it (the directory's fsync, a Ctrl-C), so the record is read back
(``unrecorded``). A record whose keys are gone anyway (destroyed by an earlier release,
or by hand) can never be finished (``missing_keys``): it is dropped.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from google.protobuf.message import DecodeError

from clients.errors import RegistrationError
from clients.identity import discard_uncertified, write_atomically
from clients.merchant.config import MerchantConfig
from clients.pending_request import resumed_exchange
from hsm.base import KeyBackend, KeyHandle, KeyUsage
from hsm.errors import KeyNotFound
from setcore.errors import SetcoreError, quoted
from setcore.pki.roles import MERCHANT_CA
from setcore.pki.truststore import TrustStore
from setcore.profiles import Profile
from setcore.registration import request_kind
from setcore.registration_merchant import MerchantIdentity, MerchantRequestState
from setpay.v1 import registration_pb2

PENDING_FILE = "registration.json"
# Owner only, like every private file of the merchant's directory: it names the keys and
# the registration an inquiry is signed for.
PENDING_MODE = 0o600
SIGNATURE_LABEL = "merchant-sig"
KEY_EXCHANGE_LABEL = "merchant-kex"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# What a request is made of that merchant.toml also says, by record key and by where
# merchant.toml says it. The recorded request is sent again, or its certificates
# collected, exactly as it was made: a value changed since would be certified under the
# old value while the merchant (and the operator) believe the new one.
CA_TARGET = "[ca] target"
COMPARED = (
    ("merchant_id", "[merchant] id"),
    ("merchant_name", "[merchant] name"),
    ("brand_id", "[merchant] brand"),
    ("ca_target", CA_TARGET),
)


def _config_values(config: MerchantConfig) -> dict[str, str]:
    return {
        "merchant_id": config.merchant_id,
        "merchant_name": config.name or config.merchant_id,
        "brand_id": config.brand_id,
        "ca_target": config.ca.target,
    }


def save_pending(
    path: Path,
    state: MerchantRequestState,
    config: MerchantConfig,
    request: bytes | None,
    made_with: frozenset[str] = frozenset(),
) -> None:
    """Record what resuming needs; with ``request``, the CertReq whose answer is awaited.
    ``made_with`` names what the request was made with beyond merchant.toml (``form``,
    ``account``): a new request made in its place needs them again."""
    ex = state.exchange
    record: dict[str, Any] = {
        "lid_ee": _b64(ex.lid_ee),
        "lid_ca": _b64(ex.lid_ca),
        "ca_certificate": _b64(ex.ca.der),
        "request_type": state.request_type,
        **_config_values(config),
        "made_with": sorted(made_with),
        "signature_version": state.signature_key.version,
        "key_exchange_version": state.key_exchange_key.version,
    }
    if request is not None:
        record |= {"cert_request": _b64(request), "rrpid": _b64(ex.rrpid)}
        record["chall_ee3"] = _b64(ex.chall_ee3)
    write_atomically(path, json.dumps(record, indent=1).encode(), PENDING_MODE)


def read_pending(path: Path) -> dict[str, Any]:
    """The record at ``path``; RegistrationError when it cannot be read."""
    try:
        record = json.loads(path.read_text())
        request_kind(int(record["request_type"]))
    except (OSError, ValueError, KeyError, TypeError, SetcoreError) as exc:
        raise RegistrationError(f"{path} cannot be resumed: {exc}") from exc
    if not isinstance(record, dict):
        raise RegistrationError(f"{path} cannot be resumed: not a record")
    return record


def config_changes(record: dict[str, Any], config: MerchantConfig) -> list[tuple[str, str, str]]:
    """Where merchant.toml now differs from what the recorded request was made with:
    (where merchant.toml says it, the recorded value, merchant.toml's value)."""
    now = _config_values(config)
    # A record written before the brand and the CA target were recorded is compared on
    # what it holds.
    return [
        (where, str(record[key]), now[key])
        for key, where in COMPARED
        if key in record and str(record[key]) != now[key]
    ]


def changed_config_refusal(path: Path, changes: list[tuple[str, str, str]]) -> str:
    """Why a resume under a changed merchant.toml is refused, and the way out."""
    differ = "; ".join(
        f"{where} {quoted(recorded)} then, {quoted(now)} now" for where, recorded, now in changes
    )
    return (
        f"merchant.toml changed since the unfinished {path.name} was made ({differ}), and "
        "the Merchant CA it went to holds that request or cannot say: put the recorded "
        "values back in merchant.toml and run this command again to finish it under them; "
        f"or remove {path.name} and run it again to register "
        "under merchant.toml's values, after which the CA's operator revokes any "
        "certificates issued to the recorded ones"
    )


def made_with_of(record: dict[str, Any]) -> frozenset[str]:
    """What the recorded request was made with beyond merchant.toml (``form``, ``account``)."""
    given = record.get("made_with", [])
    return frozenset(str(name) for name in given) if isinstance(given, list) else frozenset()


def is_renewal(record: dict[str, Any]) -> bool:
    """True when the recorded request renews the merchant's certificates."""
    return request_kind(int(record["request_type"])).renewal


def new_keys(
    backend: KeyBackend, profile: Profile, log: logging.Logger
) -> tuple[KeyHandle, KeyHandle]:
    """New versions of the signature and key-exchange keys, for a request about to be made;
    a certified earlier version (a renewal's, a merchant's registering again) is kept. The
    new signature key goes again if the key-exchange one cannot be made (a full token)."""
    signature = backend.generate(SIGNATURE_LABEL, KeyUsage.SIGNATURE, profile.signature_key)
    try:
        kex = backend.generate(KEY_EXCHANGE_LABEL, KeyUsage.KEY_EXCHANGE, profile.key_exchange_key)
    except BaseException:
        discard_keys(backend, (signature,), log)
        raise
    return signature, kex


def discard_keys(backend: KeyBackend, keys: Iterable[KeyHandle], log: logging.Logger) -> None:
    """Destroy the keys of a request no CA will certify: never sent, refused, or dropped
    as one the CA holds nothing of. A version holding a certificate is kept: it may sign
    already, and an answer sealed to it may still come."""
    for key in keys:
        if backend.certificate(key) is None:
            discard_uncertified(backend, key, log)


def _named_versions(record: dict[str, Any]) -> list[tuple[str, int]]:
    """The (label, version) of each key the recorded request asks to certify."""
    named = []
    versions = (SIGNATURE_LABEL, "signature_version"), (KEY_EXCHANGE_LABEL, "key_exchange_version")
    for label, name in versions:
        try:
            named.append((label, int(record[name])))
        except (KeyError, ValueError, TypeError):
            continue
    return named


def pending_keys(record: dict[str, Any], backend: KeyBackend) -> list[KeyHandle]:
    """The key versions the recorded request asks to certify (those still in the backend)."""
    keys = []
    for label, version in _named_versions(record):
        try:
            keys.append(backend.get(label, version))
        except KeyNotFound:
            continue
    return keys


def missing_keys(record: dict[str, Any], backend: KeyBackend) -> list[str]:
    """The key versions the recorded request asks to certify that the backend no longer
    holds, as ``label vN``: with one gone, no run can send it or ask about it again, and
    a certificate issued to it would certify a key no one holds."""
    held = {(key.label, key.version) for key in pending_keys(record, backend)}
    return [
        f"{label} v{version}"
        for label, version in _named_versions(record)
        if (label, version) not in held
    ]


def unrecorded(path: Path, keys: Iterable[KeyHandle]) -> list[KeyHandle]:
    """Those of ``keys`` the record at ``path`` does not name, read back after writing it
    failed: ``write_atomically`` fsyncs the directory after its rename, and a Ctrl-C lands
    anywhere, so the disk says whether the record was written, not where it failed. A
    record that cannot be read names them all, in doubt: keys kept cost a slot each, keys
    destroyed under their record would strand it."""
    if not path.exists():
        return list(keys)
    try:
        named = set(_named_versions(read_pending(path)))
    except RegistrationError:
        return []
    return [key for key in keys if (key.label, key.version) not in named]


def dropped_refusal(path: Path, record: dict[str, Any], missing: list[str]) -> str:
    """Why the record at ``path`` is dropped (its keys are gone), and what to run next:
    the same command again, with what the request was made with beyond merchant.toml."""
    command = "renew" if is_renewal(record) else "register"
    needed = made_with_of(record)
    with_them = f", with the {' and '.join(sorted(needed))} it was made with" if needed else ""
    return (
        f"{path.name} is dropped: the key versions its request asks to certify "
        f"({', '.join(missing)}) are gone from the key backend, so no run could finish it; "
        f"run `setpay merchant {command}` again{with_them}"
    )


def resumed_state(
    path: Path, record: dict[str, Any], backend: KeyBackend, trust: TrustStore
) -> tuple[MerchantRequestState, registration_pb2.CertRequest | None]:
    """The recorded request's state, and the CertReq to send again if still unanswered."""
    try:
        exchange, request = resumed_exchange(record, trust, MERCHANT_CA)
        state = MerchantRequestState(
            exchange, int(record["request_type"]),
            MerchantIdentity(record["merchant_id"], record["merchant_name"]),
            backend.get(SIGNATURE_LABEL, int(record["signature_version"])),
            backend.get(KEY_EXCHANGE_LABEL, int(record["key_exchange_version"])),
        )  # fmt: skip
    except (ValueError, KeyError, TypeError, KeyNotFound, DecodeError) as exc:
        raise RegistrationError(f"{path} cannot be resumed: {exc}") from exc
    return state, request
