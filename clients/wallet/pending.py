"""The state of a certificate request held in the sealed card file until the CA decides it.

Registration and renewal seal it there before their CertReq leaves (with the request's
exact bytes, dropped once the CA pends it or says it is in progress) and the next
``register`` or ``renew`` rebuilds from it what sends the request again or asks about it
with CertInq. All of it is
JSON-able text; the card file is sealed (``clients.wallet.vault``), so the back key and a
renewal's new CardSecret are never on disk in clear.
"""

from __future__ import annotations

import base64

from google.protobuf.message import DecodeError

from clients.errors import RegistrationError
from clients.pending_request import resumed_exchange
from clients.wallet.vault import CardSecrets
from hsm.base import KeyBackend
from hsm.errors import KeyNotFound
from setcore.errors import ProtocolError
from setcore.pki.roles import CARDHOLDER_CA
from setcore.pki.truststore import TrustStore
from setcore.registration import request_kind
from setcore.registration_cardholder import CardRequestState
from setpay.v1 import registration_pb2

# The key of a renewal's new CardSecret: a registration's is the card file's own, but a
# renewal keeps the card's current one (and PANSecret) there until it is done.
RENEWAL_CARD_SECRET = "card_secret"  # noqa: S105 - a field name, not a secret


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def request_unanswered(held: CardSecrets) -> bool:
    """True while the held CertReq has no answer from the CA this release could read
    (sent, or about to be; or answered with a CertStatus it does not know): its bytes are
    kept until then, and dropped once the CA pends it or says it is in progress."""
    return held.pending is not None and "cert_request" in held.pending


def renewal_pending(held: CardSecrets) -> bool:
    """True while the held request is a renewal of the card's certificate."""
    if held.pending is None:
        return False
    try:
        return request_kind(int(held.pending["request_type"])).renewal
    except (KeyError, ValueError, ProtocolError) as exc:
        raise RegistrationError(f"the pending request cannot be resumed: {exc}") from exc


def pending_record(
    state: CardRequestState, request: bytes | None, *, renewal: bool
) -> dict[str, str]:
    """What resuming needs; with ``request``, the CertReq whose answer is awaited."""
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
    if renewal:
        pending[RENEWAL_CARD_SECRET] = _b64(state.card_secret)
    return pending


def pending_version(held: CardSecrets) -> int | None:
    """The key version the held request asks to certify, if it names one."""
    try:
        return int((held.pending or {})["key_version"])
    except (KeyError, ValueError):
        return None


def resumed_state(
    held: CardSecrets, backend: KeyBackend, label: str, trust: TrustStore
) -> tuple[CardRequestState, registration_pb2.CertRequest | None]:
    """The held request's state, and the CertReq to send again if it is still unanswered."""
    pending = held.pending or {}
    try:
        exchange, request = resumed_exchange(pending, trust, CARDHOLDER_CA)
        key = backend.get(label, int(pending["key_version"]))
        card_secret = held.card_secret
        if renewal_pending(held):
            card_secret = base64.b64decode(pending[RENEWAL_CARD_SECRET])
        state = CardRequestState(
            exchange, int(pending["request_type"]), key, held.pan, held.expiry,
            card_secret, base64.b64decode(pending["back_key"]),
        )  # fmt: skip
    except (ValueError, KeyError, KeyNotFound, DecodeError) as exc:
        raise RegistrationError(f"the pended registration cannot be resumed: {exc}") from exc
    return state, request
