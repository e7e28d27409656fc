from decimal import Decimal

import pytest

from core.errors import InvalidInput
from core.markets import get_market
from core.money import Money, format_money, money_from_major


def test_brl_is_formatted_like_brazilian_shops():
    assert format_money(Money(14990, "BRL"), "pt_BR") == "R$ 149,90"


def test_ars_drops_zero_cents_in_whole_unit_markets():
    assert get_market("AR").format_price(Money(4500000, "ARS")) == "$45.000"
    assert get_market("AR").format_price(Money(4500050, "ARS")) == "$45.000,50"


def test_major_units_convert_exactly_without_floats():
    assert money_from_major("49.95", "USD") == Money(4995, "USD")
    assert money_from_major(Decimal("0.10"), "BRL").amount == 10
    assert money_from_major("1500", "JPY") == Money(1500, "JPY")


@pytest.mark.parametrize("value", ["abc", "-1", "1.999", "NaN"])
def test_bad_amounts_are_refused_with_a_reason(value):
    with pytest.raises(InvalidInput):
        money_from_major(value, "USD")


def test_money_refuses_floats_and_mixed_currencies():
    with pytest.raises(InvalidInput):
        Money(1.5, "USD")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        Money(100, "BRL") + Money(100, "USD")


def test_unknown_market_names_the_known_ones():
    with pytest.raises(InvalidInput, match="known markets"):
        get_market("ZZ")
