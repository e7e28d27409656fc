import copy

import pytest

from bot.intent import Budget, Intent
from bot.refinement import FollowUp, FollowUpKind, merge, read_follow_up
from bot.rules import RuleIntentParser
from core.markets import get_market

PARSER = RuleIntentParser()
CHEAPER, PRICIER, OTHER = FollowUpKind.CHEAPER, FollowUpKind.PRICIER, FollowUpKind.OTHER
MORE, PICK, REFINE = FollowUpKind.MORE, FollowUpKind.PICK, FollowUpKind.REFINE


def parse(text, market="BR"):
    return PARSER.parse(text, market=get_market(market))


@pytest.mark.parametrize("text, kind, rest", [
    # pt-BR
    ("mais barato", CHEAPER, ""), ("algo mais em conta", CHEAPER, ""),
    ("tem mais barato?", CHEAPER, ""), ("muito caro", CHEAPER, ""),
    ("não tem mais barato?", CHEAPER, ""), ("tá caro demais", CHEAPER, ""),
    ("mais caro", PRICIER, ""), ("tem algo melhor?", PRICIER, ""),
    ("outra opção", OTHER, ""), ("outras opções", OTHER, ""), ("não gostei", OTHER, ""),
    ("nenhum desses", OTHER, ""), ("tem outra?", OTHER, ""),
    ("mostrar mais", MORE, ""), ("mais opções", MORE, ""), ("tem mais?", MORE, ""),
    # es
    ("más barato", CHEAPER, ""), ("algo más económico", CHEAPER, ""),
    ("muy caro", CHEAPER, ""), ("más caro", PRICIER, ""), ("algo mejor", PRICIER, ""),
    ("otra cosa", OTHER, ""), ("otra opción", OTHER, ""), ("no me gustó ninguno", OTHER, ""),
    ("ver más", MORE, ""), ("más opciones", MORE, ""),
    # en
    ("cheaper", CHEAPER, ""), ("too expensive", CHEAPER, ""), ("something cheaper", CHEAPER, ""),
    ("that's a bit pricey", CHEAPER, ""), ("more expensive", PRICIER, ""),
    ("something nicer", PRICIER, ""), ("something else", OTHER, ""),
    ("none of these", OTHER, ""), ("other options", OTHER, ""), ("show more", MORE, ""),
    ("more", MORE, ""), ("anything more?", MORE, ""),
    # with a change besides: the change is left for the parser
    ("cheaper, in blue", CHEAPER, "in blue"), ("tem mais barato em azul?", CHEAPER, "em azul"),
    ("algo más barato para mi papá", CHEAPER, "para mi papá"),
    ("outra opção para o meu pai", OTHER, "para o meu pai"),
    ("mostra mais, mas sem roupa", MORE, "sem roupa"),
    ("não gostei, tem mais barato?", CHEAPER, ""),
    ("something nicer for my wife", PRICIER, "for my wife"),
])
def test_follow_ups_are_read_in_three_languages(text, kind, rest):
    assert read_follow_up(text) == FollowUp(kind, rest=rest)


@pytest.mark.parametrize("text, position, buy", [
    ("o segundo", 1, False), ("a segunda", 1, False), ("el segundo", 1, False),
    ("la tercera", 2, False), ("the second one", 1, False), ("the 2nd", 1, False),
    ("número 2", 1, False), ("o 2", 1, False), ("#3", 2, False), ("nº 2", 1, False),
    ("2º", 1, False), ("opción 3", 2, False), ("la dos", 1, False),
    ("the last one", -1, False), ("o último", -1, False), ("el último", -1, False),
    ("quero o segundo", 1, False), ("gostei do primeiro", 0, False),
    ("me gusta la tercera", 2, False), ("e o segundo?", 1, False),
    ("1", 0, False), ("2", 1, False), ("3", 2, False), ("10", 9, False), ("2 por favor", 1, False),
    ("the first one please", 0, False), ("o décimo", 9, False),
    ("quero comprar o segundo", 1, True), ("me llevo el primero", 0, True),
    ("I'll take the third one", 2, True), ("vou levar o 3", 2, True),
    ("fico com a primeira", 0, True), ("add the second to cart", 1, True),
])
def test_a_pick_names_the_card_and_whether_it_buys(text, position, buy):
    assert read_follow_up(text) == FollowUp(PICK, position=position, buy=buy)


def test_a_pick_keeps_what_follows_it_as_a_change():
    assert read_follow_up("o segundo, mas em azul") == FollowUp(PICK, position=1, rest="em azul")


@pytest.mark.parametrize("text, rest", [
    ("for dad instead", "for dad"), ("e para o meu pai?", "para o meu pai"),
    ("y para mi papá?", "para mi papá"), ("and for my sister?", "for my sister"),
    ("e pro meu irmão?", "pro meu irmão"), ("y en rojo?", "en rojo"),
    ("and in blue?", "in blue"), ("e nada de perfume", "nada de perfume"),
    ("y sin ropa", "sin ropa"), ("and not clothes", "not clothes"),
    ("em azul em vez disso", "em azul"), ("en rojo en cambio", "en rojo"),
    ("what about for my wife?", "for my wife"), ("mejor para mi abuela", "para mi abuela"),
    ("for my dad instead of my mom", "for my dad not my mom"),
    ("ok, e para a minha avó?", "para a minha avó"),
])
def test_a_change_of_request_needs_a_marker(text, rest):
    assert read_follow_up(text) == FollowUp(REFINE, rest=rest)


@pytest.mark.parametrize("text", [
    # plain changes with no marker are the caller's to read from the parsed intent
    "em azul", "en rojo", "in blue", "sem roupa", "not clothes", "nada de perfume",
    "for dad",
    # new requests, even with a colour or a follow-up word in them
    "quero um tênis azul para correr", "regalo para mi mamá de 60 años",
    "outra caneca igual", "quiero otra igual", "another mug like this one",
    # numbers and ordinals that belong to a budget, an age or an occasion
    "more than 100", "mais de 100", "más de 100 pesos", "cheaper than $50",
    "mais barato que 100 reais", "presente para o segundo aniversário",
    "second birthday gift for my son", "o primeiro livro da série", "2 anos", "quero 2",
    "o 15", "11", "0", "last minute gift", "wait a second", "só um segundo",
    "first, I need a gift for mom", "primero quiero saber el precio", "na segunda",
    "quanto custa o segundo?",
    # "too expensive" ruled out in a request, "anything else" declined
    "presente para minha mãe, nada muito caro", "nothing too expensive for my dad",
    "no muy caro", "I don't need anything else, thanks", "mais nada", "no more",
    # markers with nothing to change, or in the middle of a request
    "e para?", "instead", "el mejor regalo para mi papá", "¿qué tal?", "", "🎁",
    "e o preço?", "and the price?", "y cuánto cuesta?",
    "obrigado, era isso",
])
def test_requests_and_lookalikes_are_not_follow_ups(text):
    assert read_follow_up(text) is None


@pytest.mark.parametrize("text, kind, position", [
    ("MAIS BARATO", CHEAPER, None), ("mais barto", CHEAPER, None), ("cheapr", CHEAPER, None),
    ("cheeper pls", CHEAPER, None), ("+ barato", CHEAPER, None), ("mto caro", CHEAPER, None),
    ("muuuito caro", CHEAPER, None), ("mas economico", CHEAPER, None),
    ("outra opcao", OTHER, None), ("otra opcion", OTHER, None), ("outars opcoes", OTHER, None),
    ("nao gostei", OTHER, None), ("smth else", OTHER, None), ("ver mas", MORE, None),
    ("o segudno", PICK, 1), ("a terceria", PICK, 2), ("o ultmo", PICK, -1),
    ("el ultimo", PICK, -1), ("the secnd one", PICK, 1),
])
def test_no_accents_typos_and_chat_spelling(text, kind, position):
    follow_up = read_follow_up(text)
    assert follow_up is not None
    assert (follow_up.kind, follow_up.position) == (kind, position)


def test_typo_tolerance_leaves_known_words_alone():
    # "mother" is one letter from "other", "quanto" from "quinto".
    assert read_follow_up("my mother") is None
    assert read_follow_up("quanto?") is None


def test_the_rest_reads_as_the_change():
    rest = read_follow_up("cheaper, in blue").rest
    assert PARSER.parse(rest, market=get_market("US")).attributes == ["color:blue"]
    refine = read_follow_up("e para o meu pai?")
    assert parse(refine.rest).recipient == "father"
    assert parse(read_follow_up("for dad instead").rest, "US").product_terms == []


# -- merge ---------------------------------------------------------------------------------

MOTHER = "presente para minha mãe de 60 anos que gosta de jardinagem, até R$200"


@pytest.mark.parametrize("active, change, expected", [
    (MOTHER, "até 100", dict(recipient="mother", age=60, interests=["gardening"],
                             budget=Budget("BRL", max=10000))),
    (MOTHER, "para o natal", dict(occasion="christmas", recipient="mother", age=60)),
    (MOTHER, "para o meu pai", dict(recipient="father", age=None, gender="male", interests=[],
                                    interest_words=[], budget=Budget("BRL", max=20000))),
    (MOTHER, "para minha mãe de 70", dict(recipient="mother", age=70,
                                          interests=["gardening"], gender="female")),
    ("camiseta vermelha tamanho M", "em azul",
     dict(attributes=["size:m", "color:blue"], product_types=["t-shirt"])),
    ("camiseta tamanho M", "de madeira",
     dict(attributes=["size:m", "material:wood"])),
    ("camiseta azul", "um livro", dict(product_types=["book"], product_terms=[])),
    ("roupa para o meu pai", "sem roupa",
     dict(product_types=[], product_terms=[], exclusions=["clothing"], recipient="father")),
    ("presente para minha mãe, nada de perfume", "sem roupa",
     dict(exclusions=["perfume", "clothing"])),
    ("presente para minha mãe, nada de perfume", "sem perfume", dict(exclusions=["perfume"])),
    ("presente para minha mãe, nada de perfume", "um perfume",
     dict(exclusions=[], product_types=["perfume"])),
    ("tênis da Nike", "da Adidas",
     dict(brands=["Adidas"], product_types=["sneakers"], product_terms=["tenis", "adidas"])),
    ("tênis da Nike", "sem Nike", dict(brands=[], avoid_brands=["Nike"],
                                        product_terms=["tenis"])),
    ("fone bluetooth, odeio Samsung", "sem Apple", dict(avoid_brands=["Samsung", "Apple"])),
    ("fone bluetooth, odeio Samsung", "sem samsung", dict(avoid_brands=["Samsung"])),
])
def test_a_change_is_merged_into_the_active_request(active, change, expected):
    merged = merge(parse(active), parse(change))
    for key, value in expected.items():
        assert getattr(merged, key) == value, key


def test_merge_carries_the_changes_language_text_and_cost():
    active = parse(MOTHER)
    change = Intent(text="y para mi papá", language="es", recipient="father", parser="llm",
                    tokens_in=120, tokens_out=30)
    merged = merge(active, change)
    assert merged.text == MOTHER + " · y para mi papá"
    assert (merged.language, merged.parser, merged.tokens_in, merged.tokens_out) == \
        ("es", "llm", 120, 30)
    assert merged.gender is None  # the mother's, not the father's: the change named none
    assert merged.budget == active.budget and merged.budget is not active.budget


def test_merge_keeps_what_belonged_to_the_same_person():
    active = Intent(text="a", language="pt", recipient="mother", gender="female",
                    age_hint="senior", remembered=["ama orquídeas"])
    merged = merge(active, Intent(text="b", language="pt", recipient="mother"))
    assert (merged.gender, merged.age_hint, merged.remembered) == \
        ("female", "senior", ["ama orquídeas"])
    merged = merge(active, Intent(text="b", language="pt", recipient="father"))
    assert (merged.gender, merged.age_hint, merged.remembered) == (None, None, [])


def test_merge_never_changes_its_inputs():
    active, change = parse(MOTHER), parse("para o meu pai, em azul, sem roupa, até 100")
    before = copy.deepcopy((active, change))
    merged = merge(active, change)
    merged.exclusions.append("perfume")
    merged.attributes.append("size:m")
    assert (active, change) == before
