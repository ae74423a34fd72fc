"""Showing amounts: totals to the cent (sub-cent ones to 4 significant digits); amounts per
request or per 1M tokens keep at least 3 significant digits below $1."""

from __future__ import annotations

import functools
from collections.abc import Callable
from decimal import ROUND_HALF_EVEN, Context, Decimal, localcontext
from typing import Any, TypeVar, cast

CENT = Decimal("0.01")
WIDE = Context(prec=80)
F = TypeVar("F", bound=Callable[..., str])


def _wide(show: F) -> F:
    """Run a formatter with digits to spare: rounding for display never overflows the context,
    and a plain int or float is taken as the Decimal it stands for."""

    @functools.wraps(show)
    def wrapper(value: Any, *args: Any) -> str:
        with localcontext(WIDE):
            return show(value if isinstance(value, Decimal) else Decimal(str(value)), *args)

    return cast(F, wrapper)


@_wide
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


@_wide
def unit_usd(amount: Decimal) -> str:
    """An amount per request or per 1M tokens: `$0.0175`, `$0.024`, `$0.90`, `$0.00875`, `$12.50`.

    From $1 up, to the cent; from a cent to $1, 3 significant digits (trailing zeros dropped,
    at least two decimals); below a cent, as `usd` shows it."""
    if abs(amount) < CENT or abs(amount) >= 1:
        return usd(amount)
    sign = "-" if amount < 0 else ""
    amount = abs(amount)
    rounded = amount.quantize(Decimal(1).scaleb(amount.adjusted() - 2), ROUND_HALF_EVEN)
    if rounded >= 1:
        return sign + usd(rounded)
    whole, _, fraction = f"{rounded:f}".partition(".")
    return f"{sign}${whole}.{fraction.rstrip('0').ljust(2, '0')}"


@_wide
def per_million(rate: Decimal) -> str:
    """A rate in USD per 1M tokens, e.g. `$0.90/1M`, `$0.088/1M`."""
    return f"{unit_usd(rate)}/1M"


@_wide
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


@_wide
def percent(fraction: Decimal) -> str:
    """0.5 → `50%`, 0.123 → `12.3%`."""
    value = (fraction * 100).quantize(Decimal("0.1"))
    return f"{value.normalize():f}%" if value == value.to_integral_value() else f"{value:f}%"
