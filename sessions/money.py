"""Money: decimal amounts checked against ISO 4217 minor units.

Amounts arrive as strings with a `.` separator whatever the locale. They are parsed
with `Decimal` (never float) and rejected when they carry more fraction digits than the
currency has minor units, so "10.001 EUR" never reaches a PSP as a silently rounded 10.00,
or more minor units than the ledger keeps exact (`MAX_MINOR_UNITS`).
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from errors import MoneyError

# ISO 4217 active codes and their minor units (exponent). Currencies not listed here are
# refused: a payments back end must not guess how many decimals a currency has.
_ZERO = "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF"
_THREE = "BHD IQD JOD KWD LYD OMR TND"
_FOUR = "CLF UYW"
_TWO = """
AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BOV BRL BSD BTN BWP BYN BZD
CAD CDF CHE CHF CHW CNY COP COU CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS
GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS KHR KPW KYD KZT LAK LBP LKR LRD LSL
MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD PAB PEN PGK
PHP PKR PLN QAR RON RSD RUB SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS
TMT TOP TRY TTD TWD TZS UAH USD USN UZS VED VES WST XCD XCG YER ZAR ZMW ZWG
"""
_MINOR_UNITS: dict[str, int] = {
    **dict.fromkeys(_ZERO.split(), 0),
    **dict.fromkeys(_TWO.split(), 2),
    **dict.fromkeys(_THREE.split(), 3),
    **dict.fromkeys(_FOUR.split(), 4),
}

# The ledger's Lua script holds amounts in minor units as doubles and prints them with 14
# significant digits (`op:amount` reservation entries); 10^14 would print as `1e+14`. Every
# amount below this bound stays exact there, whatever the currency.
MAX_MINOR_UNITS = 10**14 - 1

CURRENCIES = frozenset(_MINOR_UNITS)

_AMOUNT = re.compile(r"^(0|[1-9][0-9]{0,14})(\.[0-9]{1,4})?$")


def minor_units(currency: str) -> int:
    """Number of fraction digits of an ISO 4217 currency."""
    try:
        return _MINOR_UNITS[currency]
    except KeyError:
        raise MoneyError(f"{currency!r} is not an ISO 4217 currency code") from None


def is_currency(code: str) -> bool:
    return code in _MINOR_UNITS


def parse_amount(text: str, currency: str) -> Decimal:
    """Parse a positive decimal amount string for `currency`.

    Raises `MoneyError` for anything that is not a plain positive decimal with at most the
    currency's minor units: exponents, signs, spaces, commas and zero are all refused.
    """
    units = minor_units(currency)
    if not _AMOUNT.fullmatch(text):
        raise MoneyError(f"{_shown(text)} is not a decimal amount such as '123.00'")
    try:
        amount = Decimal(text)
    except InvalidOperation:  # pragma: no cover - the pattern above already rules this out
        raise MoneyError(f"{_shown(text)} is not a decimal amount") from None
    exponent = amount.as_tuple().exponent
    assert isinstance(exponent, int)
    if -exponent > units:
        raise MoneyError(f"{currency} allows {units} decimal places, {text!r} has {-exponent}")
    if amount <= 0:
        raise MoneyError("amount must be greater than zero")
    if to_minor(amount, currency) > MAX_MINOR_UNITS:
        largest = format_amount(Decimal(MAX_MINOR_UNITS).scaleb(-units), currency)
        raise MoneyError(f"amount is above the largest payhook can hold, {largest} {currency}")
    return amount


def _shown(text: str) -> str:
    # An error quotes what was sent, but never more than an amount could be.
    return repr(text) if len(text) <= 24 else repr(text[:20]) + "…"


def to_minor(amount: Decimal, currency: str) -> int:
    """Integer minor units (cents) for connectors whose API speaks them."""
    scaled = amount.scaleb(minor_units(currency))
    if scaled != scaled.to_integral_value():
        raise MoneyError(f"{amount} has more decimals than {currency} allows")
    return int(scaled)


def format_amount(amount: Decimal, currency: str) -> str:
    """Render with exactly the currency's minor units: `Decimal('40') EUR` → '40.00'."""
    return f"{amount:.{minor_units(currency)}f}"
