"""Rewording a reply's intro: kept only when it adds no number, price, product or name."""

import httpx
import pytest

from bot.llm_client import ChatCompletions
from bot.llm_replies import ReplyPhraser, why_not
from tests.fake_llm_server import BASE_URL, MODEL, FakeLlm

INTRO = "Aqui estão 3 ideias para sua mãe, até R$ 200,00:"
TITLES = ["Kit Jardinagem Florescer", "Regador Tramontina 5L"]


def phraser(fake: FakeLlm) -> ReplyPhraser:
    return ReplyPhraser(chat=ChatCompletions(http=fake.client(), base_url=BASE_URL, model=MODEL))


def test_a_warmer_intro_is_used_and_its_tokens_counted():
    fake = FakeLlm()
    fake.answer({"intro": "Separei 3 ideias com carinho para sua mãe, até R$ 200,00:"},
                prompt_tokens=90, completion_tokens=20)
    phrased = phraser(fake).phrase_intro(INTRO, language="pt", product_names=TITLES)
    assert phrased.reworded and phrased.text.startswith("Separei 3 ideias")
    assert (phrased.tokens_in, phrased.tokens_out) == (90, 20)
    body = fake.body()
    assert body["messages"][-1]["content"] == INTRO
    assert "Brazilian Portuguese" in body["messages"][0]["content"]
    assert body["response_format"]["json_schema"]["strict"] is True


@pytest.mark.parametrize(("candidate", "reason"), [
    ("Separei 4 ideias para sua mãe:", "number"),
    ("Ideias para sua mãe, até R$ 250,00:", "number"),
    ("Ideias para sua mãe, até US$ 200,00:", "currency"),
    ("Ideias para sua mãe, como o Regador Tramontina 5L:", "number"),
    ("Ideias para sua mãe, como o kit jardinagem florescer:", "product"),
    ("Ideias para sua mãe, da Natura e do Boticário:", "name"),
    ("Ideias " + "muito " * 40 + "boas:", "longer"),
    ("   ", "empty"),
])
def test_an_intro_that_adds_facts_is_refused(candidate, reason):
    assert reason in why_not(candidate, INTRO, product_names=TITLES)


def test_an_intro_that_only_changes_the_tone_is_accepted():
    assert why_not("Olha só: 3 ideias para sua mãe, até R$ 200,00:", INTRO,
                   product_names=TITLES) is None


def test_a_refused_or_failed_rewording_keeps_the_original():
    fake = FakeLlm()
    fake.answer({"intro": "Compre o Kit Jardinagem Florescer por R$ 99:"})
    fake.answer("not json at all")
    fake.answer({"text": "wrong field"})
    fake.fail(httpx.ReadTimeout("slow"))
    fake.status(429)
    p = phraser(fake)
    for _ in range(5):
        phrased = p.phrase_intro(INTRO, language="pt", product_names=TITLES)
        assert phrased.text == INTRO and not phrased.reworded
