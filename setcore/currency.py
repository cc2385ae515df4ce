"""ISO 4217 minor units: how many decimal digits each currency's minor unit has.

The issuer ledger keeps every sum as an integer count of its currency's minor unit
(cents for EUR, yen for JPY, fils for BHD), and a CurrencyAmount says which unit its
integer counts by its exponent. An amount whose exponent is not its currency's minor
unit would be booked as another sum than the one signed (1999 at exponent 0 is 1,999
euro, but 1999 euro cents in the ledger), so ``setcore.amount`` refuses it.

The table names the currencies of ISO 4217's list whose minor unit is not two digits,
and the codes the list gives no minor unit (precious metals, special drawing rights,
bond-market units, the testing and "no currency" codes), which no card pays in. Every
other code from 1 to 999 has two digits: that is the list's rule for national
currencies, and a code no currency uses cannot name an account the bank opened.
"""

from __future__ import annotations

# ISO 4217 numeric codes are three digits; 000 is not assigned.
MIN_CURRENCY = 1
MAX_CURRENCY = 999
DEFAULT_MINOR_UNIT = 2

# Minor units other than two digits, by numeric code.
_MINOR_UNITS: dict[int, int] = {
    # No minor unit.
    108: 0,  # BIF, Burundi franc
    152: 0,  # CLP, Chilean peso
    174: 0,  # KMF, Comorian franc
    262: 0,  # DJF, Djibouti franc
    324: 0,  # GNF, Guinean franc
    352: 0,  # ISK, Icelandic krona
    392: 0,  # JPY, yen
    410: 0,  # KRW, won
    548: 0,  # VUV, vatu
    600: 0,  # PYG, guarani
    646: 0,  # RWF, Rwanda franc
    704: 0,  # VND, dong
    800: 0,  # UGX, Uganda shilling
    940: 0,  # UYI, Uruguay peso en unidades indexadas
    950: 0,  # XAF, CFA franc BEAC
    952: 0,  # XOF, CFA franc BCEAO
    953: 0,  # XPF, CFP franc
    # Three digits.
    48: 3,  # BHD, Bahraini dinar
    368: 3,  # IQD, Iraqi dinar
    400: 3,  # JOD, Jordanian dinar
    414: 3,  # KWD, Kuwaiti dinar
    434: 3,  # LYD, Libyan dinar
    512: 3,  # OMR, Rial Omani
    788: 3,  # TND, Tunisian dinar
    # Four digits.
    927: 4,  # UYW, unidad previsional
    990: 4,  # CLF, unidad de fomento
}

# Codes ISO 4217 gives no minor unit: not money a card account is kept in.
_NOT_MONEY = frozenset(
    {
        955,  # XBA, European composite unit
        956,  # XBB, European monetary unit
        957,  # XBC, European unit of account 9
        958,  # XBD, European unit of account 17
        959,  # XAU, gold
        960,  # XDR, special drawing right
        961,  # XAG, silver
        962,  # XPT, platinum
        963,  # XTS, reserved for testing
        964,  # XPD, palladium
        965,  # XUA, ADB unit of account
        994,  # XSU, sucre
        999,  # XXX, no currency
    }
)


def minor_unit(currency: int) -> int | None:
    """The digits of ``currency``'s minor unit; None for a code outside 1-999 or one that
    ISO 4217 gives no minor unit."""
    if not MIN_CURRENCY <= currency <= MAX_CURRENCY or currency in _NOT_MONEY:
        return None
    return _MINOR_UNITS.get(currency, DEFAULT_MINOR_UNIT)


def exponent_for(currency: int) -> int:
    """The exponent an amount in ``currency`` is written with when none is given: its
    minor unit, or two for a code without one (which ``setcore.amount.check_amount``
    then refuses, naming the currency)."""
    digits = minor_unit(currency)
    return DEFAULT_MINOR_UNIT if digits is None else digits
