"""Showing amounts: dollars to the cent, sub-cent amounts to 4 significant digits."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

CENT = Decimal("0.01")


def usd(amount: Decimal) -> str:
    """`$12,000.00`, `$0.0069`, `$0.0001235`, `-$3.50`; exact amounts stay in `--json`."""
    sign = "-" if amount < 0 else ""
    amount = abs(amount)
    if amount == 0:
        return "$0.00"
    if amount >= CENT:
        return f"{sign}${amount.quantize(CENT, ROUND_HALF_EVEN):,}"
    exponent = amount.adjusted()  # e.g. -3 for 0.0069
    rounded = amount.quantize(Decimal(1).scaleb(exponent - 3), ROUND_HALF_EVEN)
    text = f"{rounded:f}"
    whole, _, fraction = text.partition(".")
    fraction = fraction.rstrip("0").ljust(4, "0")
    return f"{sign}${whole}.{fraction}"


def per_million(rate: Decimal) -> str:
    """A rate in USD per 1M tokens, e.g. `$0.90/1M`."""
    return f"{usd(rate)}/1M"


def count(value: Decimal | int | float) -> str:
    """A large count readably: 2M, 1.5B, 3,000."""
    number = Decimal(str(value))
    for size, suffix in ((Decimal(10) ** 12, "T"), (Decimal(10) ** 9, "B"), (Decimal(10) ** 6, "M")):
        if abs(number) >= size:
            scaled = (number / size).quantize(Decimal("0.01"))
            return f"{scaled.normalize():f}{suffix}"
    if number == number.to_integral_value():
        return f"{int(number):,}"
    return f"{number.quantize(Decimal('0.1')):,}"


def percent(fraction: Decimal) -> str:
    """0.5 → `50%`, 0.123 → `12.3%`."""
    value = (fraction * 100).quantize(Decimal("0.1"))
    return f"{value.normalize():f}%" if value == value.to_integral_value() else f"{value:f}%"
