import pytest

from bot.intent import RuleIntentParser, parse_number
from core.markets import get_market

PARSER = RuleIntentParser()


def parse(text, market="BR"):
    return PARSER.parse(text, market=get_market(market))


@pytest.mark.parametrize("text, market, expected", [
    ("presente para minha mãe de 60 anos até R$200", "BR",
     dict(language="pt", recipient="mother", age=60, budget=(None, 20000, "BRL"))),
    ("presente pra minha mae de sessenta anos ate 200 reais", "BR",
     dict(language="pt", recipient="mother", age=60, budget=(None, 20000, "BRL"))),
    ("no máximo R$150 pro meu avô", "BR",
     dict(recipient="grandfather", budget=(None, 15000, "BRL"))),
    ("algo pra minha avó, entre 100 e 200", "BR",
     dict(recipient="grandmother", budget=(10000, 20000, "BRL"))),
    ("regalo para mi mamá de sesenta años, menos de 50.000 pesos", "AR",
     dict(language="es", recipient="mother", age=60, budget=(None, 5000000, "ARS"))),
    ("regalo para mi abuela de 80", "AR", dict(recipient="grandmother", age=80)),
    ("menos de 30 mil pesos para mi papá", "AR",
     dict(recipient="father", budget=(None, 3000000, "ARS"))),
    ("30 lucas para mi viejo", "AR", dict(recipient="father", budget=(None, 3000000, "ARS"))),
    ("I need a birthday gift for my 60-year-old mom", "US",
     dict(language="en", recipient="mother", age=60, occasion="birthday")),
    ("something for my nephew under $50", "US",
     dict(recipient="child", budget=(None, 5000, "USD"))),
    ("cumpleaños de mi hermana", "AR", dict(recipient="sister", occasion="birthday")),
    ("dia das mães", "BR", dict(occasion="mothers-day", recipient=None)),
    ("amigo secreto até 50 reais", "BR",
     dict(occasion="secret-santa", recipient=None, budget=(None, 5000, "BRL"))),
])
def test_requests_are_understood_in_three_languages(text, market, expected):
    intent = parse(text, market)
    for key, value in expected.items():
        if key == "budget":
            assert intent.budget is not None
            assert (intent.budget.min, intent.budget.max, intent.budget.currency) == value
        else:
            assert getattr(intent, key) == value, key


def test_product_words_are_what_is_left_after_the_gift_talk():
    intent = parse("fone de ouvido bluetooth até R$300 para minha filha")
    assert intent.product_terms == ["fone", "ouvido", "bluetooth"]
    assert intent.recipient == "child"


def test_interests_become_tags_and_ages_become_bands():
    intent = parse("minha mãe tem 60 anos e adora jardinagem")
    assert intent.concept_tags() == ["recipient:mother", "age:senior", "interest:gardening"]
    assert parse("toy for my 10 year old son", "US").age_band == "9-12"
    assert parse("regalo para mi abuelo", "AR").age_band == "senior"


def test_a_distance_or_a_count_is_not_a_budget():
    assert parse("running gear for my first 10k", "US").budget is None
    assert parse("kit com 3 peças").budget is None


@pytest.mark.parametrize("text, value", [
    ("50.000", "50000"), ("1,299.90", "1299.90"), ("149,90", "149.90"), ("49.95", "49.95"),
    ("1.500", "1500"), ("50,000", "50000"), ("200", "200"),
])
def test_numbers_are_read_the_way_each_market_writes_them(text, value):
    assert str(parse_number(text)) == value


def test_emoji_and_empty_text_have_no_intent():
    assert parse("🎁🎁🎁").is_empty()
    assert parse("").is_empty()


def test_budget_words_never_become_product_words():
    assert parse("presente até R\\$200 para minha mãe").product_terms == []
    assert parse("something under about $50", "US").product_terms == []


def test_thanks_is_recognised_in_each_language():
    assert parse("obrigado!").thanks and parse("muchas gracias", "AR").thanks
    assert parse("thanks a lot", "US").thanks and not parse("presente para mãe").thanks


@pytest.mark.parametrize("text, market, budget", [
    ("gift for dad $50-$100", "US", (5000, 10000)),
    ("presente R$100-R$200", "BR", (10000, 20000)),
    ("presente para minha esposa, orçamento 300", "BR", (None, 30000)),
    ("algo con un presupuesto de 30000", "AR", (None, 3000000)),
    ("gift for my mom under fifty dollars", "US", (None, 5000)),
    ("presente de cem reais", "BR", (None, 10000)),
])
def test_more_ways_of_writing_a_budget(text, market, budget):
    intent = parse(text, market)
    assert intent.budget and (intent.budget.min, intent.budget.max) == budget
    assert intent.product_terms == []


def test_absurdly_long_amounts_are_not_budgets():
    assert parse("presente até R$ 99999999999999999999999999999").budget is None


def test_teenage_and_shes_16_give_an_age_band():
    assert parse("gift ideas for my teenage son", "US").age_band == "13-17"
    assert parse("gift ideas for my teenage son", "US").product_terms == []
    assert parse("something for my niece, she's 16", "US").age == 16


def test_the_conversation_language_holds_unless_the_text_clearly_changes_it():
    assert PARSER.parse("no máximo R$150", market=get_market("BR"), language="pt").language \
        == "pt"
    assert PARSER.parse("regalo para mi abuela", market=get_market("BR"),
                        language="pt").language == "es"
    assert PARSER.parse("gift for my mom", market=get_market("BR"), language="pt").language \
        == "en"
