import json
from pathlib import Path

import pytest

from bot.gift_knowledge import (
    GIFTS_DIR,
    MAX_TYPES,
    GiftKnowledge,
    InvalidGiftKnowledge,
    gift_knowledge,
)
from bot.intent import Intent
from bot.rules import RuleIntentParser
from catalog.product_types import product_types
from core.markets import all_markets, get_market

PARSER = RuleIntentParser()
KNOWLEDGE = gift_knowledge()


def suggest(text, market="BR"):
    m = get_market(market)
    return KNOWLEDGE.suggest(PARSER.parse(text, market=m), m.locale)


def write_gifts(folder: Path, **files: object) -> Path:
    for locale, content in files.items():
        (folder / f"{locale}.json").write_text(json.dumps(content), "utf-8")
    return folder


BASE = {"rules": [{"when": {"recipient": "mother"}, "suggest": {"types": ["candle"]}}]}


def test_every_shipped_file_is_valid_and_every_market_has_knowledge():
    loaded = GiftKnowledge.load(GIFTS_DIR)
    assert {"en", "pt_BR", "es", "es_AR"} <= set(loaded.locales)
    for market in all_markets().values():
        assert loaded.chain(market.locale)[-1] == "en", market.code


def test_lookup_goes_from_the_locale_to_its_language_to_english():
    assert KNOWLEDGE.chain("es_AR") == ["es_AR", "es", "en"]
    assert KNOWLEDGE.chain("es_MX") == ["es", "en"]
    assert KNOWLEDGE.chain("pt_BR") == ["pt_BR", "en"]
    assert KNOWLEDGE.chain("en_US") == ["en"]


def test_a_cook_mother_in_law_gets_kitchen_ideas_first():
    hint = suggest("algo para minha sogra que gosta de cozinhar, uns 150 reais")
    assert hint.types[:3] == ["cookware", "cutting board", "knife set"]
    assert len(hint.types) <= MAX_TYPES and len(set(hint.types)) == len(hint.types)


def test_aunts_uncles_and_cousins_are_people_with_ideas_of_their_own():
    assert suggest("um presente pra minha tia").types[:2] == ["candle", "body care"]
    assert suggest("regalo para mi tío", "AR").types[0] == "wallet"
    assert suggest("a gift for my cousin", "US").types[0] == "board game"


def test_more_specific_rules_rank_first():
    # grandmother + gardening (two conditions) before gardening alone or grandmother alone.
    hint = suggest("presente para minha avó que ama jardinagem")
    assert hint.types[:2] == ["plant", "seeds"]


def test_the_local_file_ranks_before_the_base_at_the_same_specificity():
    assert suggest("un regalo para mi papá", "AR").types[0] == "mate set"
    assert suggest("a gift for my dad", "US").types[0] == "wallet"


@pytest.mark.parametrize("text, market", [
    ("regalo para mi abuela de 80", "AR"),
    ("presente para minha tia", "BR"),  # no recipient concept, but a gender
    ("gift for my 10 year old nephew", "US"),
    ("dia das mães", "BR"),
])
def test_open_requests_get_suggestions_in_every_language(text, market):
    hint = suggest(text, market)
    assert hint.types and all(product_types().is_type(t) for t in hint.types)


@pytest.mark.parametrize("text, market", [
    ("running shoes for my first 10k", "US"),
    ("um livro para minha mãe", "BR"),
    ("fone bluetooth para meu filho", "BR"),
    ("algo da Nike para mi hermano", "AR"),
])
def test_a_request_that_names_a_product_gets_no_suggestion(text, market):
    hint = suggest(text, market)
    assert hint.types == [] and hint.tags == []


@pytest.mark.parametrize("text, market, ruled_out", [
    ("presente para minha mãe, nada de perfume", "BR", {"perfume"}),
    ("regalo para mi papá, sin ropa", "AR", set(product_types().expand("clothing"))),
    ("gift for my teenage son, no gadgets", "US", set(product_types().expand("gadgets"))),
])
def test_a_ruled_out_kind_is_never_suggested(text, market, ruled_out):
    hint = suggest(text, market)
    assert hint.types and not ruled_out & set(hint.types)


def test_suggested_tags_add_to_what_the_request_already_says():
    hint = suggest("gift for my mom who loves gardening", "US")
    assert "interest:gardening" not in hint.tags  # already a tag of the request
    assert all(tag.split(":")[0] in ("recipient", "age", "interest", "occasion")
               for tag in hint.tags)


def test_an_unknown_condition_type_or_tag_is_refused_with_the_file_and_rule(tmp_path):
    cases = [
        ({"when": {"star_sign": "leo"}, "suggest": {"types": ["candle"]}}, "unknown condition"),
        ({"when": {"recipient": "martian"}, "suggest": {"types": ["candle"]}},
         "unknown recipient"),
        ({"when": {"age_band": "70-80"}, "suggest": {"types": ["candle"]}},
         "unknown age_band"),
        ({"when": {"interest": "cooking"}, "suggest": {"types": ["spaceship"]}},
         "unknown product types"),
        ({"when": {"interest": "cooking"}, "suggest": {"types": ["clothing"]}},
         "unknown product types"),  # a group is not a type
        ({"when": {"interest": "cooking"}, "suggest": {"tags": ["mood:happy"]}},
         "unknown tags"),
        ({"when": {}, "suggest": {"types": ["candle"]}}, "at least one condition"),
        ({"when": {"gender": "female"}, "suggest": {}}, "needs a list"),
    ]
    for index, (rule, reason) in enumerate(cases):
        folder = tmp_path / str(index)
        folder.mkdir()
        write_gifts(folder, en={"rules": [BASE["rules"][0], rule]})
        with pytest.raises(InvalidGiftKnowledge, match=f"en.json rule 2: .*{reason}"):
            GiftKnowledge.load(folder)


def test_a_broken_or_misnamed_file_or_a_missing_base_is_refused(tmp_path):
    (tmp_path / "en.json").write_text("{not json", "utf-8")
    with pytest.raises(InvalidGiftKnowledge, match="en.json"):
        GiftKnowledge.load(tmp_path)
    write_gifts(tmp_path, en=BASE, brazil=BASE)
    with pytest.raises(InvalidGiftKnowledge, match="must be a locale"):
        GiftKnowledge.load(tmp_path)
    (tmp_path / "brazil.json").unlink()
    (tmp_path / "en.json").unlink()
    write_gifts(tmp_path, pt_BR=BASE)
    with pytest.raises(InvalidGiftKnowledge, match="en.json, the base"):
        GiftKnowledge.load(tmp_path)


def test_rules_of_one_rank_take_turns(tmp_path):
    write_gifts(tmp_path, en={"rules": [
        {"when": {"recipient": "mother"}, "suggest": {"types": ["candle", "mug"]}},
        {"when": {"occasion": "birthday"}, "suggest": {"types": ["book", "plant"]}},
    ]})
    knowledge = GiftKnowledge.load(tmp_path)
    intent = Intent(text="", language="en", recipient="mother", occasion="birthday")
    assert knowledge.suggest(intent, "en_US").types == ["candle", "book", "mug", "plant"]


def test_the_search_request_carries_types_suggestions_and_exclusions(runtime):
    market = get_market("BR")
    request = runtime.assistant.search_request(
        PARSER.parse("presente para minha mãe, nada de roupa, sem Samsung", market=market),
        market)
    assert request.suggested_types and request.product_types == []
    assert {"camiseta", "t-shirt", "remera"} <= set(request.excluded_terms)
    assert request.avoid_brands == ["Samsung"]

    request = runtime.assistant.search_request(
        PARSER.parse("tênis preto da Nike para meu filho", market=market), market)
    assert request.product_types == ["sneakers"]
    assert request.suggested_types == [] and request.suggested_tags == []
    assert request.brands == ["Nike"] and {"preto", "black", "negro"} <= set(request.attributes)

    request = runtime.assistant.search_request(
        PARSER.parse("roupas para minha mãe", market=market), market)
    assert set(request.product_types) == set(product_types().expand("clothing"))
