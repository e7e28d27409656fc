"""Multi-turn refinement: follow-ups change the active request instead of starting over."""

from datetime import timedelta

from sqlmodel import Session

from bot import memory
from bot.follow_ups import ActiveRequest, plan
from bot.models import Conversation
from bot.rules import RuleIntentParser
from core.markets import get_market

PARSER = RuleIntentParser()
BR = get_market("BR")


def _parse(text):
    return PARSER.parse(text, market=BR)


def _active(text, cards=("loja:A", "loja:B", "loja:C"), prices=(5000, 8000, 12000)):
    return ActiveRequest(intent=_parse(text), cards=list(cards), prices=list(prices),
                         seen=["loja:OLD", *cards])


def _cards(reply):
    return [c for m in reply.messages for c in m.cards]


def _text(reply):
    return "\n".join(m.text for m in reply.messages)


def test_without_an_active_request_every_message_is_a_new_request():
    step = plan("mais barato", None, _parse, currency="BRL")
    assert not step.refines and step.intent is not None


def test_cheaper_searches_below_the_cheapest_card_without_the_cards_shown():
    step = plan("tem mais barato?", _active("presente para minha mãe até R$200"), _parse,
                currency="BRL")
    assert step.refines and step.intent.recipient == "mother"
    # Strictly cheaper: the cheapest card shown is over the new ceiling.
    assert step.intent.budget.max == 4999 and step.lowered_to == 5000
    assert step.exclude == {"loja:A", "loja:B", "loja:C"}


def test_pricier_searches_above_the_dearest_card():
    step = plan("algo mais caro", _active("presente para minha mãe"), _parse, currency="BRL")
    assert step.intent.budget.min == 12001 and step.intent.budget.max is None


def test_other_option_leaves_out_everything_seen_and_more_too():
    active = _active("presente para minha mãe")
    for text in ("outra opção", "show more"):
        step = plan(text, active, _parse, currency="BRL")
        assert step.exclude == set(active.seen)


def test_a_new_person_keeps_the_budget_and_drops_the_old_persons_interests():
    active = _active("presente para minha mãe que ama jardinagem até R$200")
    step = plan("e para o meu pai em vez disso?", active, _parse, currency="BRL")
    assert step.intent.recipient == "father" and step.intent.interests == []
    assert step.intent.budget.max == 20000


def test_a_colour_or_an_exclusion_alone_refines_the_request():
    active = _active("bolsa para minha esposa")
    blue = plan("em azul", active, _parse, currency="BRL")
    assert blue.refines and "color:blue" in blue.intent.attributes
    assert blue.intent.recipient == "wife" and blue.intent.product_types == ["bag"]
    cheaper = plan("até 100 reais", active, _parse, currency="BRL")
    assert cheaper.refines and cheaper.intent.budget.max == 10000


def test_a_request_of_its_own_starts_over():
    step = plan("quero um livro para o meu avô", _active("presente para minha mãe"), _parse,
                currency="BRL")
    assert not step.refines and step.intent.recipient == "grandfather"


def test_the_second_one_picks_the_second_card_and_a_missing_card_is_said():
    active = _active("presente para minha mãe")
    assert plan("o segundo", active, _parse, currency="BRL").pick == "loja:B"
    assert plan("the last one", active, _parse, currency="BRL").pick == "loja:C"
    assert plan("o quinto", active, _parse, currency="BRL").no_card


def test_the_active_request_survives_saving_and_loading():
    active = _active("presente para minha mãe até R$200")
    again = ActiveRequest.from_state(active.to_state())
    assert again.intent.budget == active.intent.budget and again.cards == active.cards
    assert ActiveRequest.from_state({"text": "an old conversation"}) is None


def test_cheaper_in_a_conversation_shows_only_cheaper_new_cards(demo_runtime):
    bot = demo_runtime.assistant
    first = _cards(bot.handle(user_key="web:ana", text="presente para minha mãe que ama "
                              "jardinagem até R$200", market="BR"))
    cheaper = _cards(bot.handle(user_key="web:ana", text="mais barato"))
    assert cheaper and max(c.price.amount for c in cheaper) <= min(
        c.price.amount for c in first)
    assert not {c.ref for c in cheaper} & {c.ref for c in first}
    # "Too expensive" is remembered as what the shopper wants to spend.
    with Session(demo_runtime.engine) as session:
        budget = [f.value for f in memory.facts(session=session, user_key="web:ana")
                  if f.kind == "budget"]
    assert budget == [f"{min(c.price.amount for c in first)} BRL"]


def test_something_else_never_repeats_a_card_of_the_request(demo_runtime):
    bot = demo_runtime.assistant
    seen = {c.ref for c in _cards(bot.handle(user_key="web:joe", text="gift for my mom who "
                                             "loves gardening", market="US"))}
    for text in ("something else", "show more"):
        cards = _cards(bot.handle(user_key="web:joe", text=text))
        assert cards and not {c.ref for c in cards} & seen
        seen |= {c.ref for c in cards}


def test_for_dad_instead_changes_the_person_and_keeps_the_budget(demo_runtime):
    bot = demo_runtime.assistant
    bot.handle(user_key="web:sofi", text="regalo para mi mamá, hasta 40 mil pesos",
               market="AR")
    reply = bot.handle(user_key="web:sofi", text="y para mi papá?")
    assert "tu papá" in _text(reply) and "40.000" in _text(reply)
    assert all(c.price.amount <= 40_000_00 for c in _cards(reply))


def test_the_second_one_asks_to_confirm_buying_the_second_card(demo_runtime):
    bot = demo_runtime.assistant
    cards = _cards(bot.handle(user_key="web:ana", text="presente para minha mãe",
                              market="BR"))
    confirmation = bot.handle(user_key="web:ana", text="quero o segundo").messages[0]
    assert cards[1].title in confirmation.text and confirmation.buttons
    missing = bot.handle(user_key="web:ana", text="o décimo").messages[0]
    assert "3 opções" in missing.text


def test_the_active_request_survives_a_restart_and_expires_when_idle(demo_runtime, settings):
    from vitrine.runtime import build_runtime

    demo_runtime.assistant.handle(user_key="web:ana", text="presente para minha mãe até "
                                  "R$200", market="BR")
    demo_runtime.close()
    again = build_runtime(settings)
    try:
        reply = again.assistant.handle(user_key="web:ana", text="mais barato")
        assert "sua mãe" in _text(reply)
        with Session(again.engine) as session:
            conv = session.get(Conversation, "web:ana")
            conv.updated_at -= timedelta(minutes=settings.conversation_idle_minutes + 1)
            session.add(conv)
            session.commit()
        stale = again.assistant.handle(user_key="web:ana", text="outra opção")
        assert "sua mãe" not in _text(stale)
    finally:
        again.close()


def test_a_pronoun_continues_the_person_but_a_name_is_someone_else(demo_runtime):
    bot = demo_runtime.assistant
    bot.handle(user_key="web:ana", text="presente pra minha avó", market="BR")
    continued = _text(bot.handle(user_key="web:ana", text="ela adora yoga, o que eu dou pra ela?"))
    assert "sua avó" in continued
    with Session(demo_runtime.engine) as session:
        facts = {(f.subject, f.value) for f in memory.facts(session=session, user_key="web:ana")}
    assert ("grandmother", "yoga") in facts
    other = _text(bot.handle(user_key="web:ana", text="e o que dou pra Ana? ela ama café"))
    assert "sua avó" not in other


def test_show_more_that_runs_out_says_so_and_cheaper_after_nothing_does_not_keep_lowering(
        demo_runtime):
    bot = demo_runtime.assistant
    bot.handle(user_key="web:ana", text="fone de ouvido bluetooth", market="BR")
    for _ in range(3):
        last = bot.handle(user_key="web:ana", text="mais opções")
    assert not _cards(last) and "todas as opções" in _text(last)
    bot.handle(user_key="web:ana", text="fone de ouvido até 300 reais")
    bot.handle(user_key="web:ana", text="mais barato")
    first_empty = bot.handle(user_key="web:ana", text="mais barato")
    again = bot.handle(user_key="web:ana", text="mais barato")
    assert not _cards(again) and "todas as opções" in _text(again)
    assert _text(first_empty) != "" and "R$ 119" not in _text(again)
