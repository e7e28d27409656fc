"""Markets: the locale, currency and payment rails of each country Vitrine sells in.

The table lives in `markets.json` beside this module so that adding a market or reordering
its rails is a data change, not a code change.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

from core.errors import UnknownMarket
from core.i18n import language_of
from core.money import Money, format_money


@dataclass(frozen=True)
class Market:
    """One country: how prices are written there and which rails its shoppers pay with."""

    code: str
    name: str
    locale: str
    language: str
    currency: str
    rails: tuple[str, ...]
    whole_units: bool = False
    cod_fee: int = 0
    # The consumer's right to withdraw from a distance sale: days after delivery (calendar
    # days, or business days where the law counts those), 0 where the law gives none.
    withdrawal_days: int = 0
    withdrawal_business_days: bool = False
    withdrawal_to_working_day: bool = False  # EU: a window ending on a day off runs on
    timezone: str = "UTC"  # where the market's days begin and end (legal deadlines)
    # The currency's symbol where a bare one could be read as another currency: "$" is the
    # peso in Argentina, Colombia and Mexico and the dollar in the United States.
    unambiguous_symbol: str | None = None
    # Set on the market as one shopper reads it (`read_by`): prices carry that symbol.
    spell_out_symbol: bool = False

    def read_by(self, language: str, home: str | None = None) -> Market:
        """The market as one shopper reads it. Someone who speaks another language than the
        market's, or who started in another market, may take a bare "$" for their own
        currency: they see the unambiguous symbol ("MX$ 1,299.00")."""
        foreign = language_of(language) != self.language or (home or self.code) != self.code
        return self.for_visitor() if foreign else self

    def for_visitor(self) -> Market:
        """The market as a visitor reads it: its currency's symbol spelled out."""
        return replace(self, spell_out_symbol=True) if self.unambiguous_symbol else self

    def format_price(self, money: Money) -> str:
        """Format an amount the way shops in this market write it."""
        symbol = self.unambiguous_symbol \
            if self.spell_out_symbol and money.currency == self.currency else None
        return format_money(money, self.locale, whole_units=self.whole_units, symbol=symbol)


@lru_cache
def all_markets() -> dict[str, Market]:
    """Every configured market, keyed by ISO 3166 country code."""
    raw = json.loads((Path(__file__).with_name("markets.json")).read_text("utf-8"))
    return {
        code: Market(code=code, **{**spec, "rails": tuple(spec["rails"])})
        for code, spec in raw.items()
    }


def get_market(code: str | None) -> Market:
    """Look up a market by code (case-insensitive).

    Raises:
        UnknownMarket: no market has that code.
    """
    key = (code or "").strip().upper()
    market = all_markets().get(key)
    if market is None:
        known = ", ".join(sorted(all_markets()))
        raise UnknownMarket(f"unknown market {code!r}; known markets: {known}", market=code)
    return market
