"""Scripted multi-turn dialogues through the chat API (issue 5): the shipped set, the checks,
and `python -m vitrine.dialogues`."""

import asyncio
import json
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from core.errors import InvalidInput
from vitrine.dialogues import (
    CHECKS,
    DialogueReport,
    DialogueState,
    check_turn,
    demo_chat,
    load_dialogues,
    main,
    run_dialogue,
    run_dialogues,
)

DIALOGUES = Path(__file__).resolve().parents[1] / "data" / "dialogues" / "dialogues.jsonl"
MARKET_LANGUAGE = {"BR": "pt", "AR": "es", "US": "en"}
# What issue 5 asks the set to cover, in every language.
FEATURES = {"cheaper", "pricier", "other", "more", "switch_person", "colour", "exclusion",
            "budget_alone", "pick", "cancel", "bought_not_again", "not_for_me",
            "more_like_this", "memory", "memory_command", "forget_person", "forget_all",
            "export", "new_request_resets", "reminders", "link"}

# Dialogues the product fails today, each with why: product bugs, not wrong expectations. A
# dialogue not listed must pass; a listed one that starts passing fails its test until its
# line is removed, so the list stays honest. The pass rate asserted is therefore "every
# dialogue but these" (57 of 58 on 2026-11-29; docs/quality.md).
KNOWN_FAILURES: dict[str, str] = {
    "pt-11": "'um livro de literatura brasileira' shows a Kindle: the demo catalog files it "
             "under Livros, and a title naming another kind is no longer dropped from the "
             "cards, because that hid cookbooks, earbuds and GPS watches asked for as books, "
             "headphones and watches",
}


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DialogueReport]:
    with pytest.MonkeyPatch.context() as patch:
        # As in conftest: no developer's environment (a language-model key) reaches the run.
        for name in [n for n in os.environ if n.startswith("VITRINE_")]:
            patch.delenv(name)
        patch.chdir(tmp_path_factory.mktemp("cwd"))
        chat = demo_chat(tmp_path_factory.mktemp("dialogues"))
        yield asyncio.run(run_dialogues(load_dialogues(DIALOGUES), chat))


# -- the shipped set -----------------------------------------------------------------------

def test_the_set_has_enough_dialogues_in_each_language_covering_every_feature():
    dialogues = load_dialogues(DIALOGUES)
    assert len(dialogues) >= 36
    counts = Counter(d.language for d in dialogues)
    assert set(counts) == {"pt", "es", "en"} and min(counts.values()) >= 12, counts
    for dialogue in dialogues:
        assert MARKET_LANGUAGE[dialogue.market] == dialogue.language, dialogue.id
        assert dialogue.id.startswith(f"{dialogue.language}-"), dialogue.id
    for language in counts:
        covered = {c for d in dialogues if d.language == language for c in d.covers}
        assert FEATURES <= covered, (language, FEATURES - covered)
    assert set(KNOWN_FAILURES) <= {d.id for d in dialogues}


@pytest.mark.parametrize("dialogue_id", [d.id for d in load_dialogues(DIALOGUES)])
def test_every_dialogue_passes_unless_it_is_a_known_failure(report, dialogue_id):
    result = next(r for r in report.results if r.dialogue.id == dialogue_id)
    if dialogue_id in KNOWN_FAILURES:
        assert not result.passed, f"{dialogue_id} passes now: remove it from KNOWN_FAILURES"
    else:
        assert result.passed, "\n".join([f.as_text() for f in result.failures]
                                        + ["transcript:", *result.transcript])


def test_the_pass_rate_is_every_dialogue_but_the_known_failures(report):
    passed, played = report.rate()
    assert passed == played - len(KNOWN_FAILURES)
    assert "overall" in report.as_text() and "pt " in report.as_text()


# -- the checks ----------------------------------------------------------------------------

def card(ref="loja:A", amount=5000, title="Livro Torto Arado", currency="BRL"):
    merchant, _, product = ref.partition(":")
    return {"merchant_id": merchant, "product_id": product, "title": title,
            "price": {"amount": amount, "currency": currency},
            "buttons": [{"label": "Buy", "action": f"buy:{ref}"},
                        {"label": "Not for me", "action": f"skip:{ref}"}]}


def reply(*cards, text="Aqui estão 3 ideias para sua mãe:", buttons=()):
    return {"messages": [{"text": text, "cards": list(cards),
                          "buttons": [{"label": b, "action": b} for b in buttons]}]}


def state(**fields):
    return DialogueState(language="pt", **fields)


BEFORE = [card("loja:A", 5000), card("loja:B", 8000)]
CONFIRM = reply(text="Confirme seu pedido:\nLivro Tudo é Rio", buttons=["confirm:o1", "cancel:o1"])

# For every check, a reply that breaks it, and one that meets it, after the same dialogue.
CASES = {
    "cards_min": (2, reply(card()), reply(card(), card("loja:B"))),
    "cards_max": (1, reply(card(), card("loja:B")), reply(card())),
    "max_price": (5000, reply(card(amount=5001)), reply(card(amount=5000))),
    "min_price": (5000, reply(card(amount=4999)), reply(card(amount=5000))),
    "currency": ("BRL", reply(card(currency="USD")), reply(card())),
    "all_below_previous_cheapest": (True, reply(card("loja:C", 5000)),
                                    reply(card("loja:C", 4999))),
    "all_above_previous_priciest": (True, reply(card("loja:C", 8000)),
                                    reply(card("loja:C", 8001))),
    "no_repeat": (True, reply(card("loja:B")), reply(card("loja:C"))),
    "reply_contains": (["mae", "jardinagem"], reply(text="Para sua mãe"),
                       reply(text="Para sua mãe: jardinagem")),
    "reply_contains_any": (["azul", "blue"], reply(text="Aqui"), reply(text="Nada em AZUL")),
    "reply_not_contains": (["mãe"], reply(text="para sua MAE"), reply(text="para seu pai")),
    "recipient_in_reply": ("grandfather", reply(text="Ideias para sua avó"),
                           reply(text="Ideias para seu avô")),
    "title_contains_any": (["livro"], reply(card(), card("loja:C", title="Livroteca Kindle")),
                           reply(card(title="Livros de bolso"))),
    "titles_not_contain": (["livro"], reply(card(title="Dois LIVROS")),
                           reply(card(title="Kindle"))),
    "honest_about": (["azul"], reply(card(title="Vaso branco"), text="Ideias:"),
                     reply(card(title="Vaso branco"), text="Nada em azul, mas veja:")),
    "confirmation": (True, reply(card()), CONFIRM),
    "confirms_card": (2, reply(text="Confirme:\nLivro Tudo é Rio", buttons=["confirm:o1"]),
                      reply(text="Confirme:\nCaneca", buttons=["confirm:o1"])),
    "no_skipped": (True, reply(card("loja:S")), reply(card("loja:C"))),
    "no_bought": (True, reply(card("loja:X")), reply(card("loja:C"))),
    "mentions_bought": (True, reply(text="Aqui estão ideias para seu pai"),
                        reply(text="Da última vez você deu a seu pai Caneca Azul")),
    "json_keys": (["facts", "gifts"], reply(text='{"facts": []}'),
                  reply(text='{"facts": [], "gifts": [], "orders": []}')),
}


def dialogue_so_far():
    return state(last_cards=[*BEFORE[:1], card("loja:B", 8000, title="Caneca")],
                 seen={"loja:A", "loja:B"}, skipped={"loja:S"},
                 bought={"loja:X": "Caneca Azul"})


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_every_check_can_fail_and_can_pass(name):
    value, failing, passing = CASES[name]
    assert [n for n, _ in check_turn({name: value}, failing, dialogue_so_far())] == [name]
    assert check_turn({name: value}, passing, dialogue_so_far()) == []


def test_checks_on_cards_hold_without_cards_but_cards_min_does_not():
    empty = reply(text="Não encontrei nada em estoque até R$ 34,90 para isso.")
    expect = {"all_below_previous_cheapest": True, "title_contains_any": ["vaso"],
              "no_repeat": True}
    assert check_turn(expect, empty, dialogue_so_far()) == []
    assert [n for n, _ in check_turn({"cards_min": 1}, empty, dialogue_so_far())] == \
        ["cards_min"]


def write(tmp_path, *dialogues):
    path = tmp_path / "dialogues.jsonl"
    path.write_text("\n".join(json.dumps(d, ensure_ascii=False) for d in dialogues) + "\n",
                    encoding="utf-8")
    return path


def dialogue(turns, id_="pt-01", language="pt", market="BR"):
    return {"id": id_, "language": language, "market": market, "turns": turns}


@pytest.mark.parametrize("turns", [
    [{"say": "oi", "expect": {"card_min": 1}}],  # a misspelt check
    [{"say": "oi", "expect": {"no_repeat": "yes"}}],
    [{"say": "oi", "expect": {"no_repeat": False}}],  # would check nothing
    [{"say": "oi", "expect": {"reply_contains": "mãe"}}],  # a text where a list belongs
    [{"say": "oi", "expect": {"recipient_in_reply": "mae"}}],
    [{"say": "oi", "expect": {"confirms_card": 0}}],
    [{"press": {"card": 1, "button": "buy"}}],  # a dialogue opens with words
    [{"say": "oi", "press": {"message_button": 0}}],
    [{"say": "oi"}, {"press": {"card": 1}}],
])
def test_a_malformed_dialogue_is_refused_with_its_line(tmp_path, turns):
    with pytest.raises(InvalidInput, match="line 1"):
        load_dialogues(write(tmp_path, dialogue(turns)))


def test_repeated_ids_are_refused(tmp_path):
    with pytest.raises(InvalidInput, match="repeated"):
        load_dialogues(write(tmp_path, dialogue([{"say": "oi"}]), dialogue([{"say": "oi"}])))


@pytest.mark.anyio
async def test_a_press_on_a_button_that_is_not_there_fails_and_ends_the_dialogue(tmp_path):
    sent = []

    def chat_api(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        return httpx.Response(200, json=reply(card("loja:A"), card("loja:B")))

    [loaded] = load_dialogues(write(tmp_path, dialogue([
        {"say": "presente pra minha mãe", "expect": {"cards_min": 2}},
        {"press": {"card": 3, "button": "buy"}},
        {"say": "mais barato"}])))
    async with httpx.AsyncClient(transport=httpx.MockTransport(chat_api),
                                 base_url="http://chat") as client:
        result = await run_dialogue(client, loaded)
    assert [(f.turn, f.check) for f in result.failures] == [(2, "press")]
    assert [b["text"] for b in sent] == ["presente pra minha mãe"]
    assert sent[0]["market"] == "BR" and sent[0]["user"] == "dialogue-pt-01"


@pytest.mark.anyio
async def test_an_answer_other_than_200_fails_and_ends_the_dialogue(tmp_path):
    def chat_api(request: httpx.Request) -> httpx.Response:
        return httpx.Response(500, json={"error": "internal_error"})

    [loaded] = load_dialogues(write(tmp_path, dialogue([{"say": "oi"}, {"say": "mais"}])))
    async with httpx.AsyncClient(transport=httpx.MockTransport(chat_api),
                                 base_url="http://chat") as client:
        result = await run_dialogue(client, loaded)
    assert [(f.turn, f.check) for f in result.failures] == [(1, "http")]
    assert "500" in result.failures[0].seen


@pytest.mark.anyio
async def test_a_confirmed_purchase_is_what_no_bought_and_mentions_bought_look_for(tmp_path):
    replies = iter([
        reply(card("loja:A", title="Caneca Azul"), card("loja:B", title="Vaso")),
        reply(text="Confirme seu pedido:\nCaneca Azul", buttons=["confirm:o1", "cancel:o1"]),
        reply(text="Pedido o1 reservado."),
        reply(card("loja:A", title="Caneca Azul"), text="Ideias para seu pai:"),
    ])

    def chat_api(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=next(replies))

    [loaded] = load_dialogues(write(tmp_path, dialogue([
        {"say": "presente pro meu pai"},
        {"press": {"card": 1, "button": "buy"}, "expect": {"confirms_card": 1}},
        {"press": {"message_button": "confirm"}},
        {"say": "outro presente pro meu pai", "new_request": True,
         "expect": {"no_bought": True, "mentions_bought": True, "no_repeat": True}}])))
    async with httpx.AsyncClient(transport=httpx.MockTransport(chat_api),
                                 base_url="http://chat") as client:
        result = await run_dialogue(client, loaded)
    assert [(f.turn, f.check) for f in result.failures] == [(4, "no_bought"),
                                                            (4, "mentions_bought")]
    assert "Caneca Azul" in result.failures[0].seen


def test_the_command_prints_pass_rates_per_language(tmp_path, capsys):
    path = write(tmp_path,
                 dialogue([{"say": "presente pra minha mãe até 200 reais",
                            "expect": {"cards_min": 3, "max_price": 20000}}]),
                 dialogue([{"say": "gift for my mom", "expect": {"cards_max": 0}}],
                          id_="en-01", language="en", market="US"))
    assert main([str(path)]) == 0
    out = capsys.readouterr().out
    assert "overall    1/2" in out and "pt         1/1" in out and "en         0/1" in out
    assert "en-01: turn 1, cards_max=0" in out
    assert main([str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["rates"]["overall"] == {"passed": 1, "played": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dialogues.jsonl"]
