"""Money as integer minor units plus an ISO 4217 currency, and its formatting with Babel."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from babel import Locale
from babel.numbers import format_currency, get_currency_precision, get_currency_symbol

from core.errors import InvalidInput


@dataclass(frozen=True, slots=True)
class Money:
    """An amount in the currency's minor unit (R$ 149,90 is Money(14990, "BRL"))."""

    amount: int
    currency: str

    def __post_init__(self) -> None:
        if isinstance(self.amount, bool) or not isinstance(self.amount, int):
            raise InvalidInput("money amounts are integers in minor units", amount=self.amount)
        if len(self.currency) != 3 or not self.currency.isalpha() or not self.currency.isupper():
            raise InvalidInput(f"not an ISO 4217 currency code: {self.currency!r}")

    @property
    def exponent(self) -> int:
        return currency_exponent(self.currency)

    def to_decimal(self) -> Decimal:
        """The amount in major units, exact."""
        return Decimal(self.amount).scaleb(-self.exponent)

    def __add__(self, other: Money) -> Money:
        if other.currency != self.currency:
            raise InvalidInput(f"cannot add {other.currency} to {self.currency}")
        return Money(self.amount + other.amount, self.currency)

    def as_dict(self) -> dict[str, int | str]:
        return {"amount": self.amount, "currency": self.currency}


def currency_exponent(currency: str) -> int:
    """Digits after the decimal point in ISO 4217 (2 for BRL, 0 for JPY, 3 for KWD)."""
    return int(get_currency_precision(currency))


def money_from_major(value: str | Decimal | int, currency: str) -> Money:
    """Convert a major-unit amount ("49.95", Decimal("49.95")) to Money without floats.

    Raises:
        InvalidInput: the value is not a number, is negative, or has more decimals than
            the currency allows.
    """
    try:
        dec = value if isinstance(value, Decimal) else Decimal(str(value).strip())
    except InvalidOperation:
        raise InvalidInput(f"not an amount: {value!r}") from None
    if not dec.is_finite() or dec < 0:
        raise InvalidInput(f"not a valid amount: {value!r}")
    exp = currency_exponent(currency)
    minor = dec.scaleb(exp)
    if minor != minor.to_integral_value():
        raise InvalidInput(f"{value!r} has more than {exp} decimals for {currency}")
    return Money(int(minor.to_integral_value(rounding=ROUND_HALF_UP)), currency)


def format_money(money: Money, locale: str, *, whole_units: bool = False,
                 symbol: str | None = None) -> str:
    """Format for display in a locale ("R$ 149,90"); whole_units drops zero cents ("$45.000");
    `symbol` replaces the locale's symbol for the currency ("MX$" for "$")."""
    value = money.to_decimal()
    pattern = None
    if whole_units and value == value.to_integral_value():
        pattern = copy.copy(Locale.parse(locale).currency_formats["standard"])
        pattern.frac_prec = (0, 0)
    text = format_currency(value, money.currency, locale=locale, format=pattern,
                           currency_digits=pattern is None)
    if symbol:
        text = text.replace(get_currency_symbol(money.currency, locale=locale), symbol, 1)
    # Chat channels and terminals render a plain space more reliably than U+00A0.
    return text.replace("\xa0", " ")
