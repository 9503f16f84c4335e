from decimal import Decimal

import pytest

from errors import MoneyError
from sessions.money import format_amount, minor_units, parse_amount, to_minor


@pytest.mark.parametrize(
    ("text", "currency", "expected"),
    [
        ("123.00", "EUR", Decimal("123.00")),
        ("0.01", "USD", Decimal("0.01")),
        ("1500", "JPY", Decimal("1500")),
        ("1.234", "KWD", Decimal("1.234")),
        ("10.5", "CAD", Decimal("10.5")),
    ],
)
def test_accepts_amounts_within_the_currency_minor_units(
    text: str, currency: str, expected: Decimal
) -> None:
    assert parse_amount(text, currency) == expected


@pytest.mark.parametrize(
    ("text", "currency", "reason"),
    [
        ("10.001", "EUR", "2 decimal places"),
        ("10.5", "JPY", "0 decimal places"),
        ("1.2345", "KWD", "3 decimal places"),
        ("0", "EUR", "greater than zero"),
        ("0.00", "EUR", "greater than zero"),
        ("-1.00", "EUR", "decimal amount"),
        ("1e3", "EUR", "decimal amount"),
        ("1,00", "EUR", "decimal amount"),
        (" 1.00", "EUR", "decimal amount"),
        ("NaN", "EUR", "decimal amount"),
        ("10.00", "XYZ", "ISO 4217"),
        ("1000000000000.00", "EUR", "largest"),
        ("100000000000000", "JPY", "largest"),
        ("10000000000.0000", "CLF", "largest"),
    ],
)
def test_refuses_what_a_psp_would_have_to_round_or_guess(
    text: str, currency: str, reason: str
) -> None:
    with pytest.raises(MoneyError, match=reason):
        parse_amount(text, currency)


def test_minor_unit_conversion_is_exact_per_currency() -> None:
    assert minor_units("JPY") == 0
    assert to_minor(Decimal("10.51"), "EUR") == 1051
    assert to_minor(Decimal("1051"), "JPY") == 1051
    assert to_minor(Decimal("1.005"), "KWD") == 1005
    with pytest.raises(MoneyError):
        to_minor(Decimal("1.005"), "EUR")


def test_formats_with_exactly_the_currency_decimals() -> None:
    assert format_amount(Decimal("40"), "EUR") == "40.00"
    assert format_amount(Decimal("40.0"), "JPY") == "40"
    assert format_amount(Decimal("1.5"), "KWD") == "1.500"
