import pytest

from bot.budgets import parse_number
from bot.rules import RuleIntentParser
from catalog.product_types import product_types
from catalog.text import fold
from core.markets import get_market

PARSER = RuleIntentParser()
KINDS = product_types()


def parse(text, market="BR"):
    return PARSER.parse(text, market=get_market(market))

def assert_understood(intent, expected):
    """Each expected field as parsed; a budget is compared as (min, max, currency)."""
    for key, value in expected.items():
        if key == "budget":
            assert intent.budget is not None
            assert (intent.budget.min, intent.budget.max, intent.budget.currency) == value
        else:
            assert getattr(intent, key) == value, key



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
    ("presente pra minha tia que ama jardinagem, até 150", "BR",
     dict(recipient="aunt", gender="female", interests=["gardening"],
          budget=(None, 15000, "BRL"))),
    ("regalo para mi tío que le gusta el asado", "AR",
     dict(recipient="uncle", gender="male", interests=["barbecue"])),
    ("gift for my cousin, around 30 bucks", "US", dict(recipient="cousin")),
    ("dia das mães", "BR", dict(occasion="mothers-day", recipient=None)),
    ("amigo secreto até 50 reais", "BR",
     dict(occasion="secret-santa", recipient=None, budget=(None, 5000, "BRL"))),
])
def test_requests_are_understood_in_three_languages(text, market, expected):
    intent = parse(text, market)
    assert_understood(intent, expected)


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
    ("presente pro meu marido, nada acima de 600", "BR", (None, 60000)),
    ("a gift for my wife, nothing over $80", "US", (None, 8000)),
    ("tengo 20 mil para un regalo", "AR", (None, 2000000)),
    ("algo de mas de 5000 pesos", "AR", (500000, None)),
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


# -- kinds of product, exclusions, brands, gender, attributes --------------------------------

def test_the_issue_examples_are_understood():
    sogra = parse("algo para minha sogra que gosta de cozinhar, uns 150 reais")
    assert (sogra.recipient, sogra.interests, sogra.gender) == ("mother_in_law", ["cooking"],
                                                                 "female")
    assert sogra.budget is not None
    assert (sogra.budget.amount, sogra.budget.currency) == (15000, "BRL")
    assert sogra.product_types == [] and sogra.product_terms == []
    abuela = parse("regalo para mi abuela de 80", "AR")
    assert (abuela.recipient, abuela.age, abuela.gender) == ("grandmother", 80, "female")
    shoes = parse("running shoes for my first 10k", "US")
    assert shoes.product_types == ["sneakers"]
    assert shoes.age is None and shoes.budget is None


@pytest.mark.parametrize("text, market, types", [
    ("tênis de corrida para meu filho", "BR", ["sneakers"]),
    ("tenis pro meu namorado", "BR", ["sneakers"]),
    ("zapatillas para mi hermano", "AR", ["sneakers"]),
    ("trainers for my son", "US", ["sneakers"]),
    ("fone de ouvido bluetooth", "BR", ["headphones"]),
    ("auriculares inalambricos para mi hijo", "AR", ["headphones"]),
    ("a laptop bag for my wife", "US", ["laptop bag"]),
    ("um livro e uma caneca pra minha mae", "BR", ["book", "mug"]),
    ("un mate para mi papa", "AR", ["mate gourd"]),
    ("roupas para minha mãe", "BR", ["clothing"]),  # a group the shopper named as a whole
    ("presente para chá de bebê", "BR", []),  # an occasion, not tea
])
def test_kinds_of_product_are_read_in_three_languages(text, market, types):
    assert parse(text, market).product_types == types


@pytest.mark.parametrize("text, market", [
    ("minha mãe ama vinho e café", "BR"),
    ("le gusta el mate, regalo para mi papá", "AR"),
    ("my dad loves books and coffee", "US"),
    ("my dad is a big fan of football", "US"),
])
def test_a_liking_is_an_interest_not_a_request_for_that_product(text, market):
    intent = parse(text, market)
    assert intent.product_types == [] and intent.interests


@pytest.mark.parametrize("text, market, exclusions", [
    ("presente para minha mãe, nada de perfume", "BR", ["perfume"]),
    ("sem roupa, por favor", "BR", ["clothing"]),
    ("nao quero eletronicos, presente pro meu pai", "BR", ["gadgets"]),
    ("não quero nada de roupa nem perfume", "BR", ["clothing", "perfume"]),
    ("perfume não, roupa também não", "BR", ["perfume", "clothing"]),
    ("regalo para mi hermana, sin ropa", "AR", ["clothing"]),
    ("nada de ropa ni perfume para mi novia", "AR", ["clothing", "perfume"]),
    ("algo de asado, sin cuchillos", "AR", ["knife set"]),
    ("gift for my dad, no gadgets", "US", ["gadgets"]),
    ("no clothes please", "US", ["clothing"]),
    ("not perfume, something for my girlfriend", "US", ["perfume"]),
    ("something for my wife, anything but clothes", "US", ["clothing"]),
    ("gift for my brother except books", "US", ["book"]),
    ("gift for grandpa, nothing electronic", "US", ["gadgets"]),
])
def test_what_the_shopper_rules_out_is_read_in_three_languages(text, market, exclusions):
    intent = parse(text, market)
    assert intent.exclusions == exclusions
    ruled_out = {fold(w) for name in exclusions for t in KINDS.expand(name) or [name]
                 for w in KINDS.words(t)}
    assert not ruled_out & set(intent.product_terms)
    assert not set(exclusions) & set(intent.product_types)


def test_a_comma_after_an_exclusion_starts_a_new_thought():
    intent = parse("I hate Adidas, running shoes for my husband", "US")
    assert intent.exclusions == [] and intent.product_types == ["sneakers"]
    assert intent.avoid_brands == ["Adidas"]


def test_no_in_portuguese_is_in_the_not_a_brand_ruled_out():
    intent = parse("presente no Natal para minha avó")
    assert intent.avoid_brands == [] and intent.occasion == "christmas"


@pytest.mark.parametrize("text, market, brands, avoid", [
    ("panela da Tramontina para minha mãe", "BR", ["Tramontina"], []),
    ("zapatillas de la marca Nike", "AR", ["Nike"], []),
    ("something from Apple for my son", "US", ["Apple"], []),
    ("fone jbl pro meu irmao", "BR", ["JBL"], []),
    ("uma panela da marca Panelux", "BR", ["Panelux"], []),  # unknown, but capitalised
    ("fone de ouvido, nada da Apple", "BR", [], ["Apple"]),
    ("auriculares sin Samsung", "AR", [], ["Samsung"]),
    ("sneakers, no Nike", "US", [], ["Nike"]),
    ("odeio samsung, quero um celular", "BR", [], ["Samsung"]),
    ("I hate Adidas", "US", [], ["Adidas"]),
    ("sin Samsung ni Apple", "AR", [], ["Samsung", "Apple"]),
])
def test_brands_wanted_and_avoided(text, market, brands, avoid):
    intent = parse(text, market)
    assert (intent.brands, intent.avoid_brands) == (brands, avoid)
    assert not {fold(b) for b in avoid} & set(intent.product_terms)
    assert {fold(b) for b in brands} <= set(intent.product_terms)


def test_a_common_word_is_a_brand_only_when_marked():
    assert parse("presente para um garoto de 10 anos").brands == []
    assert parse("um jogo da Estrela para meu filho").brands == ["Estrela"]


@pytest.mark.parametrize("text, market, gender", [
    ("presente para minha mãe", "BR", "female"),
    ("presente pra minha tia", "BR", "female"),
    ("algo para minha madrinha", "BR", "female"),
    ("presente pro meu sogro", "BR", "male"),
    ("relógio masculino", "BR", "male"),
    ("regalo para mi abuelo", "AR", "male"),
    ("perfume para mujer", "AR", "female"),
    ("regalo para mi hija", "AR", "female"),
    ("gift for my girlfriend", "US", "female"),
    ("something for him under $50", "US", "male"),
    ("gift for my husband", "US", "male"),
    ("gift for my friend", "US", None),
    ("my son and his wife", "US", None),  # two people: unknown
    ("amigo secreto até 50 reais", "BR", None),  # an occasion says nothing about anyone
])
def test_gender_is_read_from_the_recipient_or_said_outright(text, market, gender):
    assert parse(text, market).gender == gender


def test_para_mujer_is_a_gender_not_a_wife():
    intent = parse("perfume para mujer", "AR")
    assert intent.recipient is None and intent.product_types == ["perfume"]
    assert parse("regalo para mi mujer", "AR").recipient == "wife"


@pytest.mark.parametrize("text, market, attributes", [
    ("camiseta azul tamanho M para meu filho", "BR", ["size:m", "color:blue"]),
    ("tenis preto tam 40", "BR", ["size:40", "color:black"]),
    ("zapatillas negras talla 38", "AR", ["size:38", "color:black"]),
    ("remera talle G", "AR", ["size:l"]),
    ("a red scarf, size L", "US", ["size:l", "color:red"]),
    ("caneca grande", "BR", ["size:large"]),
    ("colar de prata", "BR", ["material:silver"]),
    ("billetera de cuero", "AR", ["material:leather"]),
    ("vinho branco para minha sogra", "BR", []),  # a kind of wine, not a colour
    ("a small gift for my boss", "US", []),  # the gesture is small, not the product
])
def test_colours_materials_and_sizes_become_canonical_attributes(text, market, attributes):
    assert parse(text, market).attributes == attributes


def test_a_colour_alone_does_not_name_a_product_but_qualifies_one():
    alone = parse("algo azul para minha mãe")
    assert alone.attributes == ["color:blue"] and alone.product_terms == []
    assert not alone.names_a_product() and not alone.is_empty()
    mug = parse("caneca preta")
    assert mug.product_terms == ["caneca", "preta"] and mug.product_types == ["mug"]


@pytest.mark.parametrize("text, market, expected", [
    ("regalo para mi abuela de 80, le gusta el mate", "AR", dict(age=80)),
    ("q le regalo a mi novio? le gusta el futbol y tiene 25", "AR", dict(age=25)),
    ("something for my dad, 65, coffee snob, no more than $50", "US", dict(age=65)),
    ("xmas gift for my grandma, shes 88", "US", dict(age=88)),
    ("for my mom, she's turning seventy", "US", dict(age=70, occasion="birthday")),
    ("mi abuelo cumple 90", "AR", dict(age=90, occasion="birthday")),
    ("my teenage daughter wants a camera", "US", dict(recipient="child", age_band="13-17")),
    ("auriculares para mi hijo, que no pasen de 80 mil", "AR",
     dict(budget=(None, 8000000, "ARS"))),
    ("something for my girlfriend, like 130 max", "US", dict(budget=(None, 13000, "USD"))),
    ("kitchen stuff for my sister's new apartment", "US", dict(occasion="housewarming")),
    ("valentines for my bf", "US", dict(recipient="partner", gender="male")),
    ("ela tem 2 filhos", "BR", dict(age=None)),
])
def test_ages_occasions_and_budgets_written_loosely(text, market, expected):
    intent = parse(text, market)
    assert_understood(intent, expected)


def test_the_intent_json_carries_the_contract_fields():
    data = parse("presente pra minha mae de 60 anos, ate 200 reais, nada de perfume").as_dict()
    assert data["budget"]["amount"] == 20000 and data["budget"]["currency"] == "BRL"
    assert data["exclusions"] == ["perfume"] and data["product_types"] == []
    for key in ("recipient", "age", "occasion", "interests", "language", "gender",
                "attributes", "brands", "avoid_brands"):
        assert key in data


def test_filler_is_judged_in_the_messages_own_language():
    # Spanish "fan" and Portuguese "pro" are filler there, product words in English.
    assert parse("usb fan", "US").product_terms == ["usb", "fan"]
    assert parse("ps4 pro", "US").product_terms == ["ps4", "pro"]
    assert "pro" not in parse("um presente pro meu pai, uma caneca").product_terms


@pytest.mark.parametrize("text, market", [
    ("oi, tudo bem?", "BR"), ("bom dia!", "BR"), ("hola, como estas?", "AR"),
    ("buenas tardes", "AR"), ("hi, how are you?", "US"), ("hello there", "US"),
])
def test_a_greeting_asks_for_nothing(text, market):
    assert parse(text, market).is_empty()


@pytest.mark.parametrize(("text", "terms"), [
    ("d battery", ["d", "battery"]),  # the letter is the battery's size, not noise
    ("c batteries", ["c", "batteries"]),
    ("presente p minha mae", []),  # a lone letter outside a kind's name is chat shorthand
    ("iphone 7", ["iphone", "7"]),  # after a product word, it is the model
    ("iphone x", ["iphone", "x"]),
    ("quero 2 canecas", ["canecas"]),  # before it, a count
])
def test_a_single_letter_or_digit_stays_only_as_part_of_a_name_or_model(text, terms):
    assert parse(text).product_terms == terms
