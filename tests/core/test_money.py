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


@pytest.mark.parametrize(("market", "amount", "local", "visitor"), [
    ("AR", 4_500_000, "$45.000", "AR$45.000"),
    ("CO", 12_000_000, "$12.000.000", "COL$12.000.000"),
    ("MX", 129_900, "$1,299.00", "MX$1,299.00"),
    ("US", 4_999, "$49.99", "US$49.99"),
])
def test_a_dollar_sign_is_spelled_out_for_shoppers_who_could_read_it_as_another(
        market, amount, local, visitor):
    m = get_market(market)
    price = Money(amount, m.currency)
    assert m.read_by(m.language).format_price(price) == local
    other_language = "pt" if m.language != "pt" else "en"
    assert m.read_by(other_language).format_price(price) == visitor
    # Same language, but the shopper started in another market (moved with /market).
    home = "MX" if market != "MX" else "AR"
    assert m.read_by(m.language, home).format_price(price) == visitor


def test_symbols_nobody_confuses_stay_as_they_are():
    brazil = get_market("BR").read_by("es", "AR")
    assert brazil.format_price(Money(14_990, "BRL")) == "R$ 149,90"
    # Another currency than the market's already carries its own prefix.
    argentina = get_market("AR").read_by("es")
    assert argentina.format_price(Money(4_999, "USD")) == "US$49,99"


def test_the_european_union_market_pays_by_sepa_transfer_in_euros():
    eu = get_market("EU")
    assert eu.rails == ("sepa_qr", "stripe") and eu.withdrawal_days == 14
    assert eu.format_price(Money(123_450, "EUR")) == "€1,234.50"
