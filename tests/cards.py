"""Test card numbers, made when the tests run.

No file under tests/ spells a card number out: the tree is scanned for runs of 13 to 19
digits that pass the Luhn check (``tests.clients.pan_scan``), and a test number written
out is indistinguishable from a real one to such a scan, or to a reader. The card
brands' published test numbers are built here from their parts instead, and the
bank's own test cards from a test BIN and a serial.
"""

from __future__ import annotations

from setcore.pan import luhn_valid


def luhn_complete(body: str) -> str:
    """``body`` followed by the check digit that makes it pass the Luhn check."""
    return next(body + digit for digit in "0123456789" if luhn_valid(body + digit))


def card(bin_: str, serial: int) -> str:
    """The ``serial``-th 16-digit card number under the test BIN ``bin_``."""
    return luhn_complete(f"{bin_}{serial:0{15 - len(bin_)}d}")


def wrong_check_digit(pan: str) -> str:
    """``pan`` with its last digit changed, so that it fails the Luhn check."""
    return pan[:-1] + str((int(pan[-1]) + 1) % 10)


# The card brands' published test numbers (any expiry, any security code).
VISA = luhn_complete("4" + "1" * 14)  # Visa's best-known: a 4, then ones
VISA_2 = luhn_complete("4012" + "8" * 8 + "188")
VISA_4242 = luhn_complete("42" * 7 + "4")  # 42 repeated
VISA_DEBIT = luhn_complete("400005" + "665566555")
VISA_ZEROS = luhn_complete("4" + "0" * 14)  # a 4, zeros, the check digit
MASTERCARD = luhn_complete("5" * 12 + "444")
AMEX = luhn_complete("378282" + "24631000")  # 15 digits
NINETEEN_DIGITS = luhn_complete("601100" + "099013942452")  # the longest a PAN may be
