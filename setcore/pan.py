"""Card numbers and the secrets that hide them (SET-PROTOCOL.md section 2.5).

A ``PAN`` never shows its digits through ``str``, ``repr`` or ``format``: only its
masked form (``mask_pan``: at most the BIN and the last four, and never fewer than six
digits hidden, so ``411111******1111`` but ``411******1119`` for a 13-digit card). The
ledger stores and prints that same form. The digits come out only through ``reveal()``,
whose callers are the few places that seal a PAN to the gateway or CA, or that blind it.

    PANSecret        = HMAC-SHA-256(CardSecret, "setpay/v1 PANSecret" 0x00 Nonce-CCA)
    blinded account  = HMAC-SHA-256(PANSecret, "setpay/v1 account" 0x00 PAN 0x00 expiry)
    TransStain       = HMAC-SHA-256(CardSecret, "setpay/v1 TransStain" 0x00 XID)

The blinded account rides in the cardholder certificate; the gateway recomputes it from
the PANData it opens, which ties the certified signer to the card (SET-PROTOCOL.md 9.3.8).
Both sides contribute randomness to PANSecret, so neither alone chooses it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

from setcore.errors import ErrorCode, fail

# ISO/IEC 7812 allows 8 to 19 digits, but SET's payment cards are 13 to 19 (a 12-digit
# Maestro number is no SET card): every part of setpay, the issuer ledger included, takes
# these two bounds from here.
MIN_PAN_DIGITS = 13
MAX_PAN_DIGITS = 19
# PCI DSS lets a display show at most the first six and the last four digits.
SHOWN_HEAD_DIGITS = 6
SHOWN_TAIL_DIGITS = 4
# However short the card, at least six digits stay hidden: one of them is fixed by the
# Luhn check, so 10^5 candidates remain. BIN and last four of a 13-digit card would hide
# three digits, about ten candidates once the Luhn check is applied.
MIN_HIDDEN_DIGITS = 6
# Secrets, nonces and challenges are 32 random bytes (DESIGN.md section 3).
SECRET_BYTES = 32

_PAN_SECRET_LABEL = b"setpay/v1 PANSecret\x00"
_ACCOUNT_LABEL = b"setpay/v1 account\x00"
_TRANS_STAIN_LABEL = b"setpay/v1 TransStain\x00"
# ASCII digits only (``\d`` would take any Unicode digit) and matched in full (``$`` would
# also match before a final newline): an expiry enters the blinded account id byte for byte.
_EXPIRY = re.compile(r"[0-9]{4}(0[1-9]|1[0-2])")
# The years a card expiry may name. Cards are issued for a few years at a time, so any
# other year is a typing error or a forgery, never a card; year 0000 names no date at all
# (``setcore.pki.issuance.card_expiry_end`` could not say when such a card ends), and a
# CA that tried to judge one failed inside its deciding transaction instead of refusing it.
MIN_EXPIRY_YEAR = 2000
MAX_EXPIRY_YEAR = 2099
_BIN = re.compile(r"[0-9]{6}")  # the same care: a BIN selects the gateway and the brand


def is_bin(text: str) -> bool:
    """True when ``text`` is a bank identification number: exactly six ASCII digits."""
    return _BIN.fullmatch(text) is not None


def mask_pan(digits: str) -> str:
    """The one displayed form of a card number: at most the BIN and the last four, the rest
    as ``*``, never fewer than ``MIN_HIDDEN_DIGITS`` stars (a short PAN shows less BIN)."""
    tail = min(SHOWN_TAIL_DIGITS, max(0, len(digits) - MIN_HIDDEN_DIGITS))
    head = min(SHOWN_HEAD_DIGITS, max(0, len(digits) - tail - MIN_HIDDEN_DIGITS))
    return digits[:head] + "*" * (len(digits) - head - tail) + digits[len(digits) - tail :]


class InvalidPAN(ValueError):
    """The string is not a valid card number (the message never repeats the digits)."""


def luhn_valid(digits: str) -> bool:
    """True when ``digits`` passes the Luhn check."""
    total = 0
    for i, char in enumerate(reversed(digits)):
        n = ord(char) - 48
        if i % 2:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0


class PAN:
    """A primary account number that does not show its digits."""

    __slots__ = ("_digits",)

    def __init__(self, digits: str) -> None:
        if not digits.isascii() or not digits.isdigit():
            raise InvalidPAN("a PAN is made of digits only")
        if not MIN_PAN_DIGITS <= len(digits) <= MAX_PAN_DIGITS:
            raise InvalidPAN(
                f"a PAN has {MIN_PAN_DIGITS} to {MAX_PAN_DIGITS} digits, not {len(digits)}"
            )
        if not luhn_valid(digits):
            raise InvalidPAN("the PAN fails the Luhn check")
        self._digits = digits

    @property
    def bin(self) -> str:
        """The bank identification number: the first six digits."""
        return self._digits[:6]

    @property
    def last4(self) -> str:
        """The last four digits."""
        return self._digits[-4:]

    @property
    def masked(self) -> str:
        """``mask_pan`` of the digits: the only form ever displayed."""
        return mask_pan(self._digits)

    def reveal(self) -> str:
        """The digits, for sealing to the gateway or CA and for blinding. Never log them."""
        return self._digits

    def __str__(self) -> str:
        return self.masked

    def __repr__(self) -> str:
        return f"PAN({self.masked})"

    def __format__(self, spec: str) -> str:
        return format(self.masked, spec)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PAN):
            return NotImplemented
        return hmac.compare_digest(self._digits, other._digits)

    def __hash__(self) -> int:
        return hash(("PAN", hashlib.sha256(self._digits.encode()).digest()))

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("a PAN is not picklable: it must not leave the process in clear")


def check_expiry(expiry: str) -> str:
    """Validate a YYYYMM card expiry of a year from ``MIN_EXPIRY_YEAR`` to
    ``MAX_EXPIRY_YEAR`` and return it (DECODING_FAILURE otherwise, never naming it).

    Refused here, before anyone looks the card up, an implausible year gets the same
    answer whatever the card: a Cardholder CA that judged it later told a locked card
    (REJECTED_BY_ISSUER) from any other (it failed on the year).
    """
    if not _EXPIRY.fullmatch(expiry):
        raise fail(ErrorCode.ERROR_CODE_DECODING_FAILURE, "card expiry is not YYYYMM")
    if not MIN_EXPIRY_YEAR <= int(expiry[:4]) <= MAX_EXPIRY_YEAR:
        reason = f"card expiry year is not from {MIN_EXPIRY_YEAR} to {MAX_EXPIRY_YEAR}"
        raise fail(ErrorCode.ERROR_CODE_DECODING_FAILURE, reason)
    return expiry


def pan_secret(card_secret: bytes, nonce_cca: bytes) -> bytes:
    """PANSecret from the wallet's CardSecret and the CA's Nonce-CCA."""
    if len(card_secret) != SECRET_BYTES or len(nonce_cca) != SECRET_BYTES:
        raise fail(ErrorCode.ERROR_CODE_DECODING_FAILURE, "CardSecret and Nonce-CCA are 32 bytes")
    return hmac.new(card_secret, _PAN_SECRET_LABEL + nonce_cca, hashlib.sha256).digest()


def blinded_account(secret: bytes, pan: PAN, expiry: str) -> bytes:
    """The account identifier carried in the cardholder certificate."""
    if len(secret) != SECRET_BYTES:
        raise fail(ErrorCode.ERROR_CODE_DECODING_FAILURE, "PANSecret is 32 bytes")
    message = _ACCOUNT_LABEL + pan.reveal().encode() + b"\x00" + check_expiry(expiry).encode()
    return hmac.new(secret, message, hashlib.sha256).digest()


def check_blinded_account(expected: bytes, secret: bytes, pan: PAN, expiry: str) -> None:
    """Raise ACCOUNT_MISMATCH unless the PAN data blinds to the certificate's account id."""
    if not hmac.compare_digest(expected, blinded_account(secret, pan, expiry)):
        raise fail(
            ErrorCode.ERROR_CODE_ACCOUNT_MISMATCH, "PANData does not match the certified account"
        )


def trans_stain(card_secret: bytes, xid: bytes) -> bytes:
    """TransStain: a keyed hash of the XID only the certificate holder (and CA) can make."""
    return hmac.new(card_secret, _TRANS_STAIN_LABEL + xid, hashlib.sha256).digest()


def random_pan(bin_prefix: str, digits: int = 16) -> PAN:
    """A random Luhn-valid PAN of ``digits`` digits under ``bin_prefix`` (test and demo cards)."""
    body = bin_prefix + "".join(
        secrets.choice("0123456789") for _ in range(digits - len(bin_prefix) - 1)
    )
    return PAN(next(body + d for d in "0123456789" if luhn_valid(body + d)))
