"""PAN protection: the ledger keys, the sealed PAN, the PAN index and the masked PAN.

The ledger never stores a PAN in the clear. Each card account keeps

- the PAN sealed with AES-256-GCM under the data key, its associated data binding the
  account id (so a sealed PAN copied onto another account's row does not open);
- an HMAC-SHA-256 of the PAN under a separate index key, to find the account by PAN
  without decrypting anything (a keyed hash: without the key, the 10^n PAN space cannot
  be enumerated against it);
- the masked PAN for display: ``setcore.pan.mask_pan``, the one form every part of
  setpay shows a card in.

Nor does a ledger message repeat one: an id the ledger was given (an account, merchant or
hold id) is repeated through ``echoed``, which masks a run of digits as long as a card
number's, so that a card number typed where an id belongs is not shown whole.

Both keys are 32 bytes, chosen by the caller (the bank's key custody), and never appear
in a repr, a log or an exception message.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.ledger.errors import InvalidRequest, PanUnreadable
from setcore.pan import MAX_PAN_DIGITS, MIN_PAN_DIGITS, mask_pan

# AES-256 and HMAC-SHA-256 both want 32-byte keys; anything else is a configuration error.
KEY_BYTES = 32
# AES-GCM's standard 96-bit nonce; random per seal, so one data key may seal ~2^32 PANs
# before nonce collisions become a concern (far beyond one issuer's card base).
NONCE_BYTES = 12

# Domain separation (DESIGN.md section 3): fixed content-type prefixes for the AEAD
# associated data and the index MAC, so neither can be confused with any other use of
# the same key.
_SEAL_CONTEXT = b"setpay.v1.ledger.pan-seal\x00"
_INDEX_CONTEXT = b"setpay.v1.ledger.pan-index\x00"
# The card's name in the CA's count of refused registrations (ca.db): a keyed hash of its
# own, so that the CA's rows cannot be joined with the ledger's by value.
_CARD_REFUSALS_CONTEXT = b"setpay.v1.ca.card-refusals\x00"
# A card's enrolment code as the ledger keeps it: a keyed hash with a label of its own.
_ENROLMENT_CONTEXT = b"setpay.v1.ledger.enrolment-code\x00"
# AES-GCM's tag: a sealed PAN shorter than a nonce and a tag is damaged, not a PAN.
TAG_BYTES = 16
# A run of digits as long as a card number's, or longer (a card number with more typed
# beside it holds one all the same). Any decimal digit, as ``str.isdigit`` takes them.
# A card number as an operator may type it: digits, at most one space, hyphen or no-break
# space between two of them ("4111 1111 ..."), ``MIN_PAN_DIGITS`` digits or more in all.
_CARD_LENGTH_RUN = re.compile(rf"\d(?:[ \-\u00a0]?\d){{{MIN_PAN_DIGITS - 1},}}")


@dataclass(frozen=True, repr=False)
class LedgerKeys:
    """The two 32-byte keys that protect PANs at rest: one seals, one indexes."""

    data_key: bytes = field(repr=False)
    index_key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        """Refuse keys of the wrong size, or one key used for both purposes."""
        if len(self.data_key) != KEY_BYTES or len(self.index_key) != KEY_BYTES:
            raise InvalidRequest(f"ledger keys must be {KEY_BYTES} bytes each")
        if hmac.compare_digest(self.data_key, self.index_key):
            raise InvalidRequest("the data key and the index key must differ")

    def __repr__(self) -> str:
        """Say what this is without showing either key."""
        return "LedgerKeys(data_key=<redacted>, index_key=<redacted>)"

    @classmethod
    def generate(cls) -> LedgerKeys:
        """Two fresh random keys (for tests and the embedded demo)."""
        return cls(data_key=os.urandom(KEY_BYTES), index_key=os.urandom(KEY_BYTES))


def validate_pan(pan: str) -> None:
    """Raise InvalidRequest unless ``pan`` is a string of ``MIN_PAN_DIGITS`` to
    ``MAX_PAN_DIGITS`` ASCII digits, the bounds of a SET card (the PAN is not echoed)."""
    if (
        not isinstance(pan, str)
        or not MIN_PAN_DIGITS <= len(pan) <= MAX_PAN_DIGITS
        or not (pan.isascii() and pan.isdigit())
    ):
        raise InvalidRequest(f"pan must be a string of {MIN_PAN_DIGITS} to {MAX_PAN_DIGITS} digits")


def echoed(given: str) -> str:
    """``given`` as a ledger message may repeat it: each run of ``MIN_PAN_DIGITS`` digits
    or more masked as ``mask_pan`` masks a card (its length kept, at most its first six
    and last four digits shown). An id the ledger was given is not checked for being a
    card number, and may be one typed by mistake (``setpay bank show-merchant`` with a
    card number), which the error would otherwise show whole. A shorter id, all digits
    or not, is repeated as given: a merchant ID may be a number. Digits typed in groups
    are masked as one number, their separators kept."""
    return _CARD_LENGTH_RUN.sub(_masked_run, given)


def _masked_run(run: re.Match[str]) -> str:
    """A run of ``_CARD_LENGTH_RUN`` with its digits masked as one card number's."""
    text = run.group()
    masked = iter(mask_pan("".join(char for char in text if char.isdigit())))
    return "".join(next(masked) if char.isdigit() else char for char in text)


def pan_index(keys: LedgerKeys, pan: str) -> bytes:
    """The keyed hash under which the account is found by PAN."""
    return hmac.new(keys.index_key, _INDEX_CONTEXT + pan.encode("ascii"), hashlib.sha256).digest()


def card_refusals_key(keys: LedgerKeys, pan: str) -> bytes:
    """The keyed hash under which the CA counts a card's refused registrations: under the
    index key, with a label of its own, never equal to ``pan_index``."""
    return hmac.new(
        keys.index_key, _CARD_REFUSALS_CONTEXT + pan.encode("ascii"), hashlib.sha256
    ).digest()


def enrolment_code_hash(keys: LedgerKeys, account_id: str, code: str) -> bytes:
    """The keyed hash a card account keeps of its enrolment code (canonical form,
    ``enrolment.normalize_enrolment_code``): under the index key with a label of its own,
    and bound to the account, so a hash copied onto another card's row matches nothing.
    Keyed, so the ledger's file alone does not let anyone try the codes against it."""
    message = _ENROLMENT_CONTEXT + account_id.encode("utf-8") + b"\x00" + code.encode("ascii")
    return hmac.new(keys.index_key, message, hashlib.sha256).digest()


def _associated_data(account_id: str) -> bytes:
    return _SEAL_CONTEXT + account_id.encode("utf-8")


def seal_pan(keys: LedgerKeys, account_id: str, pan: str) -> bytes:
    """Encrypt the PAN for storage on ``account_id``'s row: nonce followed by ciphertext."""
    nonce = os.urandom(NONCE_BYTES)
    sealed = AESGCM(keys.data_key).encrypt(nonce, pan.encode("ascii"), _associated_data(account_id))
    return nonce + sealed


def open_pan(keys: LedgerKeys, account_id: str, sealed: bytes) -> str:
    """Decrypt a PAN sealed for ``account_id``; raise PanUnreadable if it does not authenticate."""
    if len(sealed) < NONCE_BYTES + TAG_BYTES:
        raise PanUnreadable(f"the stored PAN of account {echoed(account_id)} is too short to open")
    nonce, ciphertext = sealed[:NONCE_BYTES], sealed[NONCE_BYTES:]
    try:
        plain = AESGCM(keys.data_key).decrypt(nonce, ciphertext, _associated_data(account_id))
    except InvalidTag as exc:
        raise PanUnreadable(
            f"the stored PAN of account {echoed(account_id)} does not open"
        ) from exc
    return plain.decode("ascii")


# ``mask_pan`` is setcore's, so that a card shows one way in the ledger and everywhere else.
__all__ = [
    "KEY_BYTES",
    "MAX_PAN_DIGITS",
    "MIN_PAN_DIGITS",
    "NONCE_BYTES",
    "TAG_BYTES",
    "LedgerKeys",
    "card_refusals_key",
    "echoed",
    "enrolment_code_hash",
    "mask_pan",
    "open_pan",
    "pan_index",
    "seal_pan",
    "validate_pan",
]
