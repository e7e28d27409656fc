"""Understanding with a language model: what the request carries, how the answer is merged,
and every way a bad or missing answer leaves the rule parser's reading in place."""

import copy
import logging

import httpx
import pytest

from bot.intent import Budget, Intent, lexicon
from bot.llm_client import ChatCompletions
from bot.llm_intent import LlmIntentParser, understanding_schema
from bot.rules import RuleIntentParser
from core.markets import Market, get_market
from tests.fake_llm_server import API_KEY, BASE_URL, MODEL, FakeLlm, understanding

BR, US, AR = get_market("BR"), get_market("US"), get_market("AR")


class FixedRules:
    """A rule parser that reads every message the same way, so these tests do not depend on
    what the real rules happen to catch."""

    def __init__(self, intent: Intent) -> None:
        self.intent = intent

    def parse(self, text: str, *, market: Market, language: str | None = None) -> Intent:
        read = copy.deepcopy(self.intent)
        read.text = text
        return read


def parser(fake: FakeLlm, rules: Intent | None = None) -> LlmIntentParser:
    chat = ChatCompletions(http=fake.client(), base_url=BASE_URL, model=MODEL, api_key=API_KEY,
                           timeout_s=2.5, max_output_tokens=500)
    return LlmIntentParser(rules=FixedRules(rules) if rules else RuleIntentParser(), chat=chat)


SOGRA = "presente pra minha sogrra que curte cozinhar, uns 150 reais"


def sogra_rules() -> Intent:
    # What a rule parser that misses the typo reads: the budget, and "sogrra" as a product word.
    return Intent(text=SOGRA, language="pt", product_terms=["sogrra"], interests=["cooking"],
                  interest_words=["cozinhar"],
                  budget=Budget(currency="BRL", min=7500, max=17250, amount=15000))


def test_a_good_answer_corrects_and_fills_fields_and_counts_tokens():
    fake = FakeLlm()
    fake.answer(understanding(recipient="mother_in_law", gender="female",
                              interests=["cooking", "baking"], product_types=["Cookbook"],
                              product_words=["livro de receitas"],
                              budget={"currency": "BRL", "min": None, "max": None,
                                      "around": 150}),
                prompt_tokens=812, completion_tokens=57)
    intent = parser(fake, sogra_rules()).parse(SOGRA, market=BR)
    assert intent.recipient == "mother_in_law" and intent.gender == "female"
    assert intent.interests == ["cooking", "baking"]
    assert intent.product_types == ["cookbook"]
    # "sogrra" was the mother-in-law, and "livro de receitas" was never written.
    assert intent.product_terms == []
    # The rules' budget stands.
    assert intent.budget == Budget(currency="BRL", min=7500, max=17250, amount=15000)
    assert (intent.parser, intent.tokens_in, intent.tokens_out) == ("llm", 812, 57)
    assert intent.concept_tags()[0] == \
        "recipient:" + lexicon()["recipient_tags"].get("mother_in_law", "mother_in_law")


def test_the_request_carries_model_key_strict_json_schema_and_the_shoppers_words():
    fake = FakeLlm()
    fake.answer(understanding())
    parser(fake, sogra_rules()).parse(SOGRA, market=BR)
    [request] = fake.requests
    assert request.method == "POST" and str(request.url) == f"{BASE_URL}/chat/completions"
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"
    body = fake.body()
    assert body["model"] == MODEL and body["max_completion_tokens"] == 500
    assert body["messages"][0]["role"] == "system" and "Brasil" in body["messages"][0]["content"]
    assert body["messages"][-1] == {"role": "user", "content": SOGRA}
    response_format = body["response_format"]
    assert response_format["type"] == "json_schema"
    assert response_format["json_schema"]["strict"] is True
    schema = response_format["json_schema"]["schema"]
    assert schema == understanding_schema()
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == set(schema["properties"])
    recipient_enum = schema["properties"]["recipient"]["anyOf"][0]["enum"]
    assert set(recipient_enum) == set(lexicon()["recipients"])
    assert set(schema["properties"]["interests"]["items"]["enum"]) == set(lexicon()["interests"])
    assert set(schema["properties"]["occasion"]["anyOf"][0]["enum"]) == \
        set(lexicon()["occasions"])


def test_every_object_in_the_schema_is_closed_and_fully_required():
    def objects(node):
        if isinstance(node, dict):
            if node.get("type") == "object":
                yield node
            for value in node.values():
                yield from objects(value)
        elif isinstance(node, list):
            for value in node:
                yield from objects(value)

    found = list(objects(understanding_schema()))
    assert len(found) == 2
    for node in found:
        assert node["additionalProperties"] is False
        assert node["required"] == list(node["properties"])


def test_no_api_key_sends_no_authorization_header():
    fake = FakeLlm()
    fake.answer(understanding())
    chat = ChatCompletions(http=fake.client(), base_url=BASE_URL + "/", model=MODEL)
    LlmIntentParser(rules=FixedRules(sogra_rules()), chat=chat).parse(SOGRA, market=BR)
    assert "Authorization" not in fake.requests[0].headers
    assert str(fake.requests[0].url) == f"{BASE_URL}/chat/completions"


def rule_reading_is_kept(intent: Intent, tokens: tuple[int, int] = (0, 0)) -> None:
    expected = sogra_rules()
    assert intent.parser == "rules"
    assert (intent.tokens_in, intent.tokens_out) == tokens
    assert (intent.recipient, intent.product_terms, intent.interests, intent.budget) == \
        (expected.recipient, expected.product_terms, expected.interests, expected.budget)


def test_a_timeout_falls_back_to_the_rules(caplog):
    fake = FakeLlm()
    fake.fail(httpx.ReadTimeout("read timed out"))
    with caplog.at_level(logging.WARNING, logger="vitrine.bot.llm_intent"):
        intent = parser(fake, sogra_rules()).parse(SOGRA, market=BR)
    rule_reading_is_kept(intent)
    assert "timeout" in caplog.text and "Traceback" not in caplog.text


def test_a_connection_error_falls_back_to_the_rules(caplog):
    fake = FakeLlm()
    fake.fail(httpx.ConnectError("connection refused"))
    with caplog.at_level(logging.WARNING, logger="vitrine.bot.llm_intent"):
        rule_reading_is_kept(parser(fake, sogra_rules()).parse(SOGRA, market=BR))
    assert "ConnectError" in caplog.text


def test_a_server_error_falls_back_to_the_rules(caplog):
    fake = FakeLlm()
    fake.status(500)
    with caplog.at_level(logging.WARNING, logger="vitrine.bot.llm_intent"):
        rule_reading_is_kept(parser(fake, sogra_rules()).parse(SOGRA, market=BR))
    assert "HTTP 500" in caplog.text


def test_a_body_that_is_not_json_falls_back_to_the_rules():
    fake = FakeLlm()
    fake.raw(200, b"<html>gateway</html>")
    rule_reading_is_kept(parser(fake, sogra_rules()).parse(SOGRA, market=BR))


def test_an_answer_that_is_not_json_falls_back_but_its_tokens_count(caplog):
    fake = FakeLlm()
    fake.answer("Sure! The recipient is the mother-in-law.", prompt_tokens=700,
                completion_tokens=12)
    with caplog.at_level(logging.WARNING, logger="vitrine.bot.llm_intent"):
        intent = parser(fake, sogra_rules()).parse(SOGRA, market=BR)
    rule_reading_is_kept(intent, tokens=(700, 12))
    assert "not used" in caplog.text


@pytest.mark.parametrize("answer", [
    understanding(recipient="neighbour"),  # not a canonical recipient
    understanding(interests=["cooking", "skydiving"]),
    understanding(occasion="halloween"),
    understanding(gender="other"),
    {**understanding(), "mood": "happy"},  # a field the schema does not have
    {k: v for k, v in understanding().items() if k != "budget"},  # a required field missing
    understanding(brands=["x" * 500]),
    understanding(budget={"currency": "reais", "min": None, "max": 150, "around": None}),
    understanding(budget={"currency": "BRL", "min": None, "max": -5, "around": None}),
    [understanding()],
])
def test_an_answer_outside_the_schema_falls_back_but_its_tokens_count(answer):
    fake = FakeLlm()
    fake.answer(answer, prompt_tokens=640, completion_tokens=30)
    rule_reading_is_kept(parser(fake, sogra_rules()).parse(SOGRA, market=BR), tokens=(640, 30))


def test_a_refusal_or_a_truncated_answer_falls_back():
    fake = FakeLlm()
    fake.answer(None, refusal="I can't help with that.")
    fake.answer('{"recipient": "moth', finish_reason="length", completion_tokens=500)
    p = parser(fake, sogra_rules())
    rule_reading_is_kept(p.parse(SOGRA, market=BR), tokens=(120, 40))
    rule_reading_is_kept(p.parse(SOGRA, market=BR), tokens=(120, 500))


def test_a_response_without_usage_counts_no_tokens():
    fake = FakeLlm()
    body = {"choices": [{"message": {"content": '{"x": 1}'}, "finish_reason": "stop"}]}
    fake.then(lambda request: httpx.Response(200, json=body))
    rule_reading_is_kept(parser(fake, sogra_rules()).parse(SOGRA, market=BR))


def test_a_read_timeout_in_the_middle_of_the_body_falls_back():
    def trickle():
        yield b'{"choices": ['
        raise httpx.ReadTimeout("stalled")

    fake = FakeLlm()
    fake.then(lambda request: httpx.Response(200, content=trickle()))
    rule_reading_is_kept(parser(fake, sogra_rules()).parse(SOGRA, market=BR))


# -- budgets and ages are never invented -----------------------------------------------------

DAD = "something for my dad, 80 max"


def dad_rules() -> Intent:
    return Intent(text=DAD, language="en", recipient="father", product_terms=["80"])


def test_a_budget_the_rules_missed_is_taken_when_its_number_is_in_the_message():
    fake = FakeLlm()
    fake.answer(understanding(recipient="father", gender="male",
                              budget={"currency": None, "min": None, "max": 80, "around": None}))
    intent = parser(fake, dad_rules()).parse(DAD, market=US)
    assert intent.budget == Budget(currency="USD", max=8000)
    assert intent.parser == "llm"


def test_an_invented_budget_is_ignored_and_the_rest_of_the_answer_used(caplog):
    fake = FakeLlm()
    fake.answer(understanding(recipient="father", occasion="fathers-day",
                              budget={"currency": "USD", "min": None, "max": 100,
                                      "around": None}))
    with caplog.at_level(logging.INFO, logger="vitrine.bot.llm_intent"):
        intent = parser(fake, dad_rules()).parse(DAD, market=US)
    assert intent.budget is None
    assert intent.occasion == "fathers-day" and intent.parser == "llm"
    assert "budget 100 is not in the message" in caplog.text


def test_a_currency_is_taken_from_the_model_only_when_the_message_names_it():
    text = "presente para meu pai, no maximo 80"
    rules = Intent(text=text, language="pt", recipient="father")
    usd = {"currency": "USD", "min": None, "max": 80, "around": None}
    fake = FakeLlm()
    fake.answer(understanding(budget=usd))
    assert parser(fake, rules).parse(text, market=BR).budget == Budget(currency="BRL", max=8000)
    fake.answer(understanding(budget=usd))
    named = "presente para meu pai, no maximo 80 dolares"
    assert parser(fake, rules).parse(named, market=BR).budget == Budget(currency="USD", max=8000)


def test_around_and_thousands_are_read_like_the_rules_read_them():
    text = "regalo para mi papa, unos 30 mil"
    rules = Intent(text=text, language="es", recipient="father")
    fake = FakeLlm()
    fake.answer(understanding(budget={"currency": "ARS", "min": None, "max": None,
                                      "around": 30000}))
    budget = parser(fake, rules).parse(text, market=AR).budget
    assert budget == Budget(currency="ARS", min=1500000, max=3450000, amount=3000000)


def test_a_budget_range_upside_down_is_ignored():
    text = "gift for my dad between 50 and 80"
    fake = FakeLlm()
    fake.answer(understanding(budget={"currency": None, "min": 80, "max": 50, "around": None}))
    intent = parser(fake, Intent(text=text, language="en")).parse(text, market=US)
    assert intent.budget is None and intent.parser == "llm"


def test_the_rules_budget_and_age_stand_against_the_models():
    text = "presente para minha mae de 60 anos ate 200 reais"
    rules = Intent(text=text, language="pt", recipient="mother", age=60,
                   budget=Budget(currency="BRL", max=20000))
    fake = FakeLlm()
    fake.answer(understanding(recipient="mother", age=200,
                              budget={"currency": "BRL", "min": None, "max": 60,
                                      "around": None}))
    intent = parser(fake, rules).parse(text, market=BR)
    assert intent.age == 60 and intent.budget == Budget(currency="BRL", max=20000)


def test_an_age_in_words_the_rules_missed_is_taken_but_an_invented_one_is_not():
    text = "regalo para mi abuela de ochenta"
    rules = Intent(text=text, language="es", recipient="grandmother", product_terms=["ochenta"])
    fake = FakeLlm()
    fake.answer(understanding(recipient="grandmother", age=80))
    assert parser(fake, rules).parse(text, market=AR).age == 80
    fake.answer(understanding(recipient="grandmother", age=75))
    assert parser(fake, rules).parse(text, market=AR).age is None


# -- merging the rest ------------------------------------------------------------------------


def test_product_words_come_only_from_the_message():
    text = "tenis de corrida pro meu irmao"
    rules = Intent(text=text, language="pt", recipient="brother", product_terms=["tenis"],
                   interests=["running"])
    fake = FakeLlm()
    fake.answer(understanding(recipient="brother", interests=["running"],
                              product_words=["tênis de corrida", "Nike Pegasus"],
                              product_types=["running shoes"]))
    intent = parser(fake, rules).parse(text, market=BR)
    # "de" is filler; "nike" and "pegasus" were never written.
    assert intent.product_terms == ["tenis", "corrida"]
    assert intent.product_types == ["running shoes"]


def test_refusals_add_up_and_a_refused_brand_is_never_also_wanted():
    text = "algo para minha sogra, nada de perfume, nem Natura nem Boticario"
    rules = Intent(text=text, language="pt", recipient="mother_in_law",
                   exclusions=["perfume"], avoid_brands=["Natura"])
    fake = FakeLlm()
    fake.answer(understanding(recipient="mother_in_law", exclusions=["Perfume", "maquiagem"],
                              avoid_brands=["Boticário"], brands=["natura", "Tramontina"]))
    intent = parser(fake, rules).parse(text, market=BR)
    assert intent.exclusions == ["perfume", "maquiagem"]
    assert intent.avoid_brands == ["Natura", "Boticário"]
    assert intent.brands == ["Tramontina"]


def test_an_empty_answer_keeps_everything_the_rules_found():
    fake = FakeLlm()
    fake.answer(understanding())
    intent = parser(fake, sogra_rules()).parse(SOGRA, market=BR)
    expected = sogra_rules()
    assert intent.parser == "llm"
    assert (intent.product_terms, intent.interests, intent.budget) == \
        (expected.product_terms, expected.interests, expected.budget)


def test_with_the_real_rules_a_typo_in_the_recipient_is_understood():
    fake = FakeLlm()
    fake.answer(understanding(recipient="mother_in_law", interests=["cooking"]))
    intent = parser(fake).parse(SOGRA, market=BR)
    assert intent.recipient == "mother_in_law" and intent.parser == "llm"
    assert intent.budget is not None and intent.budget.amount == 15000


def test_json_nested_too_deep_falls_back_instead_of_crashing():
    fake = FakeLlm()
    fake.answer("[" * 100_000 + "]" * 100_000)
    fake.raw(200, b"[" * 100_000 + b"]" * 100_000)
    p = parser(fake, sogra_rules())
    rule_reading_is_kept(p.parse(SOGRA, market=BR), tokens=(120, 40))
    rule_reading_is_kept(p.parse(SOGRA, market=BR))
