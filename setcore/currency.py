"""ISO 4217 minor units: which numeric codes name a currency, and how many decimal digits
each one's minor unit has.

The issuer ledger keeps every sum as an integer count of its currency's minor unit
(cents for EUR, yen for JPY, fils for BHD), and a CurrencyAmount says which unit its
integer counts by its exponent. An amount whose exponent is not its currency's minor
unit would be booked as another sum than the one signed (1999 at exponent 0 is 1,999
euro, but 1999 euro cents in the ledger), so ``setcore.amount`` refuses it.

The tables follow ISO 4217 list one (current currencies and funds) as it stood in
February 2026, after the amendments that added XCG, ZWG and XAD and withdrew ANG, CUC,
ZWL and BGN, each code with the minor unit the list gives it. A code the list does not
hold is refused: an unassigned one (1, 2, 1000) names no money, and whoever typed it
meant another. ISO amends the list a few times a year: a new currency needs a line in
``_LIST_ONE``, and a withdrawn one moves its line to ``_LIST_THREE``, never deleted.

Two questions, two answers. ``minor_unit`` says whether a currency may be named now (a
new account, the settlement currency, an amount in a message): current codes only, so
no new business starts in a currency ISO has withdrawn. ``minor_unit_on_record`` says
which unit a sum already stored counts: it knows withdrawn codes too, so an account
opened before its currency was withdrawn still reads in its own unit. The ledger reads a
stored account's currency back as a plain number and never asks either; the unit matters
where stored sums are shown with an exponent (``exponent_for``, the bank's admin answers).
"""

from __future__ import annotations

# ISO 4217 numeric codes are three digits; 000 is not assigned.
MIN_CURRENCY = 1
MAX_CURRENCY = 999
# The exponent ``exponent_for`` writes for a code with no minor unit on record: the most
# common one, so that the amount check, not a bad exponent, is what refuses the code.
DEFAULT_MINOR_UNIT = 2

# ISO 4217 list one, by alphabetic code: alphabetic code, numeric code, minor unit. "-" is
# the list's "N.A.": precious metals, special drawing rights, bond-market units, the
# testing and "no currency" codes, which are no money a card account is kept in.
_LIST_ONE = """
    AED 784 2  AFN 971 2  ALL 008 2  AMD 051 2  AOA 973 2  ARS 032 2  AUD 036 2  AWG 533 2
    AZN 944 2  BAM 977 2  BBD 052 2  BDT 050 2  BHD 048 3  BIF 108 0  BMD 060 2  BND 096 2
    BOB 068 2  BOV 984 2  BRL 986 2  BSD 044 2  BTN 064 2  BWP 072 2  BYN 933 2  BZD 084 2
    CAD 124 2  CDF 976 2  CHE 947 2  CHF 756 2  CHW 948 2  CLF 990 4  CLP 152 0  CNY 156 2
    COP 170 2  COU 970 2  CRC 188 2  CUP 192 2  CVE 132 2  CZK 203 2  DJF 262 0  DKK 208 2
    DOP 214 2  DZD 012 2  EGP 818 2  ERN 232 2  ETB 230 2  EUR 978 2  FJD 242 2  FKP 238 2
    GBP 826 2  GEL 981 2  GHS 936 2  GIP 292 2  GMD 270 2  GNF 324 0  GTQ 320 2  GYD 328 2
    HKD 344 2  HNL 340 2  HTG 332 2  HUF 348 2  IDR 360 2  ILS 376 2  INR 356 2  IQD 368 3
    IRR 364 2  ISK 352 0  JMD 388 2  JOD 400 3  JPY 392 0  KES 404 2  KGS 417 2  KHR 116 2
    KMF 174 0  KPW 408 2  KRW 410 0  KWD 414 3  KYD 136 2  KZT 398 2  LAK 418 2  LBP 422 2
    LKR 144 2  LRD 430 2  LSL 426 2  LYD 434 3  MAD 504 2  MDL 498 2  MGA 969 2  MKD 807 2
    MMK 104 2  MNT 496 2  MOP 446 2  MRU 929 2  MUR 480 2  MVR 462 2  MWK 454 2  MXN 484 2
    MXV 979 2  MYR 458 2  MZN 943 2  NAD 516 2  NGN 566 2  NIO 558 2  NOK 578 2  NPR 524 2
    NZD 554 2  OMR 512 3  PAB 590 2  PEN 604 2  PGK 598 2  PHP 608 2  PKR 586 2  PLN 985 2
    PYG 600 0  QAR 634 2  RON 946 2  RSD 941 2  RUB 643 2  RWF 646 0  SAR 682 2  SBD 090 2
    SCR 690 2  SDG 938 2  SEK 752 2  SGD 702 2  SHP 654 2  SLE 925 2  SOS 706 2  SRD 968 2
    SSP 728 2  STN 930 2  SVC 222 2  SYP 760 2  SZL 748 2  THB 764 2  TJS 972 2  TMT 934 2
    TND 788 3  TOP 776 2  TRY 949 2  TTD 780 2  TWD 901 2  TZS 834 2  UAH 980 2  UGX 800 0
    USD 840 2  USN 997 2  UYI 940 0  UYU 858 2  UYW 927 4  UZS 860 2  VED 926 2  VES 928 2
    VND 704 0  VUV 548 0  WST 882 2  XAD 396 2  XAF 950 0  XAG 961 -  XAU 959 -  XBA 955 -
    XBB 956 -  XBC 957 -  XBD 958 -  XCD 951 2  XCG 532 2  XDR 960 -  XOF 952 0  XPD 964 -
    XPF 953 0  XPT 962 -  XSU 994 -  XTS 963 -  XUA 965 -  XXX 999 -  YER 886 2  ZAR 710 2
    ZMW 967 2  ZWG 924 2
"""

# Codes ISO 4217 withdrew (its list three) since the 2018 redenominations, with the minor
# unit they had: an account opened in one before it went must still read in its unit, but
# none is opened, and no amount is taken, in it any more. Older withdrawals are left out:
# their currencies were gone before this ledger could have opened an account in them.
# ANG's 532 is not here: ISO gave the number to XCG, its successor, with the same unit.
_LIST_THREE = """
    BGN 975 2  CUC 931 2  HRK 191 2  MRO 478 2  SLL 694 2  STD 678 2  VEF 937 2  ZWL 932 2
"""


def _read(table: str) -> dict[int, tuple[str, int | None]]:
    """A table's rows by numeric code: the alphabetic code and the minor unit (None for
    "-"). A number given twice fails the import rather than let one line hide another."""
    words = table.split()
    rows = {
        int(number): (alpha, None if digits == "-" else int(digits))
        for alpha, number, digits in zip(words[::3], words[1::3], words[2::3], strict=True)
    }
    if 3 * len(rows) != len(words):
        raise ValueError("an ISO 4217 numeric code is listed twice")
    return rows


_CURRENT = _read(_LIST_ONE)
_WITHDRAWN = _read(_LIST_THREE)


def minor_unit(currency: int) -> int | None:
    """The digits of ``currency``'s minor unit if ISO 4217 lists it now with one; None for
    an unassigned code, a withdrawn one, or one the list gives no minor unit."""
    row = _CURRENT.get(currency)
    return None if row is None else row[1]


def minor_unit_on_record(currency: int) -> int | None:
    """The digits of the minor unit a stored sum in ``currency`` counts: ``minor_unit``,
    or the unit a withdrawn code had; None for a code no account could be opened in."""
    row = _CURRENT.get(currency, _WITHDRAWN.get(currency))
    return None if row is None else row[1]


def why_refused(currency: int) -> str | None:
    """Why ``minor_unit`` gives ``currency`` no unit, in words that name the code; None
    when it gives one.

    A code outside 1-999 is not repeated: a mistyped value there could be a card number.
    """
    if not MIN_CURRENCY <= currency <= MAX_CURRENCY:
        return f"currency must be an ISO 4217 number, {MIN_CURRENCY} to {MAX_CURRENCY}"
    if currency in _CURRENT:
        alpha, digits = _CURRENT[currency]
        if digits is None:
            return f"currency {currency} ({alpha}) has no ISO 4217 minor unit: no card pays in it"
        return None
    if currency in _WITHDRAWN:
        alpha, _ = _WITHDRAWN[currency]
        return f"currency {currency} ({alpha}) was withdrawn from ISO 4217: no new business in it"
    return f"currency {currency} is not assigned in ISO 4217"


def exponent_for(currency: int) -> int:
    """The exponent an amount in ``currency`` is written with when none is given: its
    minor unit on record, or two for a code without one (which
    ``setcore.amount.check_amount`` then refuses, naming the currency)."""
    digits = minor_unit_on_record(currency)
    return DEFAULT_MINOR_UNIT if digits is None else digits
