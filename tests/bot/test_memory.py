"""Memory: what is learned, what reaches ranking, and the shopper's control over it."""

import json
from datetime import timedelta

import pytest
from sqlalchemy import event
from sqlmodel import Session, select

from bot import erasure, memory
from bot.birthdays import read_birthday
from bot.memory import SHOPPER, FactKind
from bot.models import Conversation, GiftRecord, MemoryFact, ShopperProfile
from bot.privacy import read_command
from bot.rules import RuleIntentParser
from catalog.text import fold
from checkout.models import Order, OrderStatus
from core.db import make_engine, session_scope, utcnow
from core.markets import get_market
from core.outbox import Notification
from ops.events import ConversionEvent
from tests.databases import BOTH_DATABASES, database_of

PARSER = RuleIntentParser()


def _cards(reply):
    return [c for m in reply.messages for c in m.cards]


def _texts(reply):
    return "\n".join(m.text for m in reply.messages)


def _buy_and_confirm(bot, user, card):
    confirmation = bot.handle(user_key=user, action=f"buy:{card.ref}").messages[0]
    bot.handle(user_key=user, action=confirmation.buttons[0].action)


def _personal_rows(engine, user_key):
    with Session(engine) as session:
        return {
            "facts": session.exec(select(MemoryFact).where(
                MemoryFact.user_key == user_key)).all(),
            "gifts": session.exec(select(GiftRecord).where(
                GiftRecord.user_key == user_key)).all(),
            "conversation": session.get(Conversation, user_key),
            "profile": session.get(ShopperProfile, user_key),
            "notifications": session.exec(select(Notification).where(
                Notification.user_key == user_key)).all(),
            "orders": session.exec(select(Order).where(Order.user_key == user_key)).all(),
        }


@pytest.mark.parametrize(("text", "expected"), [
    ("minha mãe faz 60 em março", "03"),
    ("o aniversário dela é dia 15 de março", "03-15"),
    ("mi abuela cumple 80 en mayo", "05"),
    ("my dad turns 70 on March 3rd", "03-03"),
    ("her birthday is 7 July", "07-07"),
    ("she may like gardening", None),  # "may" without a birthday word
    ("presente para minha mãe de 60 anos", None),
    ("birthday gift for mom", None),  # a birthday, but no date
    ("my sister turns 30 and she may like yoga", None),
    ("minha mãe faz yoga, presente pro dia das mães em maio", None),
    ("meu pai faz trilha e vai viajar em julho", None),
    ("minha filha faz aniversário dia 31 de fevereiro", "02"),  # no such day: the month
    ("aniversário dele é 29 de fevereiro", "02-29"),
])
def test_birthdays_are_read_in_three_languages(text, expected):
    assert read_birthday(text) == expected


@pytest.mark.parametrize(("text", "name", "argument"), [
    ("/memory", "memory", ""), ("/memoria", "memory", ""), ("/Memória", "memory", ""),
    ("/forget", "forget", ""), ("/forget mom", "forget", "mom"),
    ("/esquecer minha mãe", "forget", "minha mãe"), ("/olvidar a mi abuela", "forget",
                                                     "a mi abuela"),
    ("/forget@VitrineBot mom", "forget", "mom"), ("/export", "export", ""),
    ("/exportar", "export", ""),
    ("/start", "start", ""), ("/ayuda", "help", ""),
])
def test_memory_commands_are_read_in_any_language(text, name, argument):
    command = read_command(text)
    assert command is not None and (command.name, command.argument) == (name, argument)


@pytest.mark.parametrize("text", ["/nonsense", "forget it", "memory card 64gb", "/"])
def test_other_messages_are_not_memory_commands(text):
    assert read_command(text) is None


def test_what_is_learned_keeps_its_source_and_is_shown_in_the_shoppers_language(demo_runtime):
    bot = demo_runtime.assistant
    said = "minha mãe faz 60 anos em março, ama jardinagem e nada de perfume"
    first = bot.handle(user_key="web:ana", text=said, market="BR")
    assert "/memoria" in _texts(first) and "/esquecer" in _texts(first)
    with Session(demo_runtime.engine) as session:
        facts = memory.facts(session=session, user_key="web:ana")
    assert {(f.subject, f.kind, f.value) for f in facts} == {
        ("mother", "age", "60"), ("mother", "birthday", "03"),
        ("mother", "interest", "gardening"), ("mother", "dislike", "perfume")}
    assert all(f.source == said for f in facts)
    shown = _texts(bot.handle(user_key="web:ana", text="/memory"))
    assert "Sua mãe" in shown and "60 anos" in shown and "jardinagem" in shown
    assert "março" in shown and "perfume" in shown
    assert "português" in shown and "Brasil" in shown  # language and market are kept too


def test_the_memory_notice_is_given_once(demo_runtime):
    bot = demo_runtime.assistant
    first = bot.handle(user_key="web:ana", text="minha mãe ama jardinagem", market="BR")
    second = bot.handle(user_key="web:ana", text="meu pai ama churrasco")
    assert "/memoria" in _texts(first)
    assert "/memoria" not in _texts(second)


def test_a_shopper_whose_profile_has_no_notice_yet_is_told_once(demo_runtime):
    # A profile can exist before anything is remembered (wrong link codes make one).
    from sqlmodel import Session

    from bot.models import ShopperProfile

    with Session(demo_runtime.engine) as session:
        session.add(ShopperProfile(user_key="web:ana", link_failures=1))
        session.commit()
    bot = demo_runtime.assistant
    first = bot.handle(user_key="web:ana", text="minha mãe ama jardinagem", market="BR")
    second = bot.handle(user_key="web:ana", text="meu pai ama churrasco")
    assert "/memoria" in _texts(first)
    assert "/memoria" not in _texts(second)
    with Session(demo_runtime.engine) as session:
        profile = session.get(ShopperProfile, "web:ana")
        assert profile is not None and profile.link_failures == 1
        assert profile.memory_notice_at is not None


def test_a_remembered_dislike_rules_products_out_until_the_shopper_asks_for_them(demo_runtime):
    bot = demo_runtime.assistant
    bot.handle(user_key="web:ana", text="nada de sabonete pra minha mãe", market="BR")
    later = _cards(bot.handle(user_key="web:ana", text="um presente para minha mãe"))
    assert later and not any("sabonete" in c.title.lower() for c in later)
    asked = _cards(bot.handle(user_key="web:ana", text="um kit de sabonete para minha mãe"))
    assert asked and all("sabonete" in c.title.lower() for c in asked)


def test_a_gift_bought_for_mom_is_not_suggested_again_and_is_mentioned(demo_runtime):
    # A turn asks for the gifts only when its first statement found some on record.
    bot = demo_runtime.assistant
    first = _cards(bot.handle(user_key="web:ana", text="presente para minha mãe que ama "
                              "jardinagem até R$300", market="BR"))
    _buy_and_confirm(bot, "web:ana", first[0])
    again = bot.handle(user_key="web:ana", text="presente para minha mãe até R$300")
    assert first[0].ref not in {c.ref for c in _cards(again)}
    assert first[0].title in _texts(again)
    # Someone else may still be shown it.
    dad = _cards(bot.handle(user_key="web:ana", text="presente para meu pai que ama "
                            "jardinagem até R$300"))
    assert dad


def test_a_canceled_order_is_no_gift_given(demo_runtime):
    bot = demo_runtime.assistant
    card = _cards(bot.handle(user_key="web:ana", text="presente para minha mãe que ama "
                             "jardinagem", market="BR"))[0]
    confirmation = bot.handle(user_key="web:ana", action=f"buy:{card.ref}").messages[0]
    bot.handle(user_key="web:ana", action=confirmation.buttons[-1].action)  # cancel
    with Session(demo_runtime.engine) as session:
        assert memory.gifts(session=session, user_key="web:ana") == []


def test_forget_one_person_keeps_the_others(demo_runtime):
    bot = demo_runtime.assistant
    bot.handle(user_key="web:ana", text="minha mãe ama jardinagem", market="BR")
    bot.handle(user_key="web:ana", text="meu pai ama churrasco")
    reply = _texts(bot.handle(user_key="web:ana", text="/esquecer minha mãe"))
    assert "sua mãe" in reply
    with Session(demo_runtime.engine) as session:
        left = {f.subject for f in memory.facts(session=session, user_key="web:ana")}
    assert left == {"father"}
    unknown = _texts(bot.handle(user_key="web:ana", text="/forget minha avó"))
    assert "seu pai" in unknown.lower()


def test_forget_leaves_no_personal_rows_and_events_keep_no_text(demo_runtime):
    bot = demo_runtime.assistant
    user = "web:ana"
    cards = _cards(bot.handle(user_key=user, text="presente para minha mãe que ama jardinagem, "
                              "sem Tramontina", market="BR"))
    _buy_and_confirm(bot, user, cards[0])
    bot.handle(user_key=user, action=f"skip:{cards[1].ref}")
    assert any(_personal_rows(demo_runtime.engine, user).values())
    bot.handle(user_key=user, text="/forget")
    rows = _personal_rows(demo_runtime.engine, user)
    assert not any(rows.values()), rows
    with Session(demo_runtime.engine) as session:
        kept = session.exec(select(Order)).all()
        events = session.exec(select(ConversionEvent)).all()
    # The order stays for the merchant's accounts, under an id nobody can trace back.
    assert kept and all(o.user_key.startswith("forgotten:") for o in kept)
    assert not {o.user_key.partition(":")[2] for o in kept} & {e.user_hash for e in events}
    dumped = json.dumps([e.model_dump(mode="json") for e in events])
    assert "ana" not in dumped and "jardinagem" not in dumped


@pytest.fixture(params=BOTH_DATABASES)
def both_url(request, tmp_path):
    with database_of(request, tmp_path, empty=False) as url:
        yield url


def test_forget_reads_only_the_shoppers_events_that_kept_words(both_url):
    """The event table is the largest: erasing one shopper's words must not read it all."""
    engine = make_engine(both_url)
    updates = []

    @event.listens_for(engine, "before_cursor_execute")
    def _keep(_conn, _cursor, statement, parameters, _context, _many):
        if statement.lstrip().upper().startswith("UPDATE CONVERSIONEVENT"):
            updates.append((statement, parameters))

    try:
        with session_scope(engine) as session:
            erasure.forget(session=session, user_key="web:ana")
        [(statement, parameters)] = updates
        with engine.connect() as conn:
            cursor = conn.connection.dbapi_connection.cursor()
            if engine.dialect.name == "postgresql":
                cursor.execute("SET enable_seqscan = off")  # the table is empty here
                cursor.execute("EXPLAIN " + statement, parameters)
            else:
                cursor.execute("EXPLAIN QUERY PLAN " + statement, parameters)
            plan = " ".join(str(row) for row in cursor.fetchall())
    finally:
        engine.dispose()
    assert "ix_conversionevent_erasable" in plan, plan


def test_a_first_message_of_forget_writes_nothing(demo_runtime):
    demo_runtime.assistant.handle(user_key="web:new", text="/forget", market="BR")
    assert not any(_personal_rows(demo_runtime.engine, "web:new").values())


def test_export_returns_every_fact_gift_and_order_as_json(demo_runtime):
    bot = demo_runtime.assistant
    card = _cards(bot.handle(user_key="web:ana", text="presente para minha mãe que ama "
                             "jardinagem", market="BR"))[0]
    _buy_and_confirm(bot, "web:ana", card)
    reply = bot.handle(user_key="web:ana", text="/export")
    data = json.loads(reply.messages[-1].text)
    assert any(f["about"] == "mother" and f["value"] == "gardening" and
               f["learned_from"].startswith("presente para minha mãe") for f in data["facts"])
    assert data["gifts"][0]["title"] == card.title
    assert data["orders"][0]["title"] == card.title
    assert data["conversations"][0]["market"] == "BR"
    assert data["linked_accounts"] == ["web:ana"]


def test_the_summary_budget_holds_with_500_facts(runtime):
    with Session(runtime.engine) as session:
        for i in range(250):
            session.add(MemoryFact(user_key="web:ana", subject="mother", kind="interest",
                                   value=f"interest number {i}"))
            session.add(MemoryFact(user_key="web:ana", subject=SHOPPER,
                                   kind="turned_down", value=f"shop:product-{i}"))
        session.add(MemoryFact(user_key="web:ana", subject="mother", kind="dislike",
                               value="perfume", created_at=utcnow() - timedelta(days=300)))
        session.commit()
        summary = memory.summarize(session=session, user_key="web:ana", subject="mother")
    assert len(summary.facts) <= memory.MAX_SUMMARY_FACTS
    assert summary.tokens <= memory.MAX_SUMMARY_TOKENS
    # What rules products out is kept first, however old.
    assert ("mother", "dislike", "perfume") in {(f.subject, f.kind, f.value)
                                                for f in summary.facts}


def test_liked_and_avoided_brands_are_one_or_the_other(runtime):
    with Session(runtime.engine) as session:
        memory.remember(session=session, user_key="web:ana", subject=SHOPPER,
                        kind=FactKind.AVOIDS_BRAND, value="apple")
        memory.remember(session=session, user_key="web:ana", subject=SHOPPER,
                        kind=FactKind.LIKES_BRAND, value="apple")
        kinds = [f.kind for f in memory.facts(session=session, user_key="web:ana")]
    assert kinds == ["likes_brand"]


def test_purge_deletes_what_is_older_than_the_retention(runtime):
    old = utcnow() - timedelta(days=400)
    with Session(runtime.engine) as session:
        session.add(MemoryFact(user_key="web:ana", subject="mother", kind="age", value="60",
                               created_at=old))
        session.add(MemoryFact(user_key="web:ana", subject="father", kind="age", value="62"))
        session.commit()
        assert erasure.purge(session=session, retention_days=365) == 1
        session.commit()
        left = [f.subject for f in memory.facts(session=session, user_key="web:ana")]
    assert left == ["father"]


def test_memory_survives_a_restart(demo_runtime, settings):
    from vitrine.runtime import build_runtime

    demo_runtime.assistant.handle(user_key="web:ana", text="minha mãe ama jardinagem",
                                  market="BR")
    demo_runtime.close()
    again = build_runtime(settings)
    try:
        reply = again.assistant.handle(user_key="web:ana", text="presente para minha mãe")
        assert "jardinagem" in _texts(reply).lower()
    finally:
        again.close()


def test_avoiding_a_brand_without_a_person_is_the_shoppers_preference(runtime):
    intent = PARSER.parse("fone de ouvido, nada da Apple", market=get_market("BR"))
    with Session(runtime.engine) as session:
        new = memory.learn(session=session, user_key="web:ana", intent=intent)
    assert [(f.subject, f.kind, f.value) for f in new] == [(SHOPPER, "avoids_brand", "apple")]


def test_the_usual_budget_is_aimed_at_when_a_request_names_none(runtime):
    market = get_market("BR")
    with Session(runtime.engine) as session:
        memory.learn(session=session, user_key="web:ana",
                     intent=PARSER.parse("caneca até R$80", market=market))
        memory.learn(session=session, user_key="web:ana",
                     intent=PARSER.parse("fone até R$150", market=market))
        assert [f.value for f in memory.facts(session=session, user_key="web:ana")] == \
            ["15000 BRL"]
        intent = PARSER.parse("uma caneca", market=market)
        summary = memory.recall(session=session, user_key="web:ana", intent=intent)
    request = runtime.assistant.search_request(intent, market)
    memory.apply(summary, intent, request)
    assert request.budget_target == 15000 and request.budget_max is None


def test_a_person_with_many_facts_leaves_room_for_the_shoppers_preferences(runtime):
    with Session(runtime.engine) as session:
        for i in range(300):
            session.add(MemoryFact(user_key="web:ana", subject="mother", kind="interest",
                                   value=f"interest {i}"))
        session.add(MemoryFact(user_key="web:ana", subject=SHOPPER, kind="avoids_brand",
                               value="apple"))
        session.add(MemoryFact(user_key="web:ana", subject=SHOPPER, kind="turned_down",
                               value="shop:p1"))
        session.commit()
        summary = memory.summarize(session=session, user_key="web:ana", subject="mother")
    assert summary.values(FactKind.AVOIDS_BRAND, SHOPPER) == ["apple"]
    assert summary.values(FactKind.TURNED_DOWN, SHOPPER) == ["shop:p1"]
    assert len(summary.values(FactKind.INTEREST, "mother")) == memory.KIND_CAPS[
        FactKind.INTEREST]


@pytest.mark.parametrize(("text", "name"), [
    ("minha mãe se chama Inês e ama jardinagem", "Inês"),
    ("mi mamá se llama Rosa", "Rosa"),  # a name, not the colour pink
    ("a gift for my mom, her name is Linda", "Linda"),
])
def test_a_persons_name_is_read_and_is_no_product_word(text, name):
    intent = PARSER.parse(text, market=get_market("BR"))
    assert intent.name == name and intent.recipient == "mother"
    assert fold(name) not in intent.product_terms and intent.attributes == []


def test_a_remembered_name_stands_for_its_person(demo_runtime):
    bot = demo_runtime.assistant
    bot.handle(user_key="web:ana", text="minha mãe se chama Inês e ama jardinagem",
               market="BR")
    reply = bot.handle(user_key="web:ana", text="presente para a Inês")
    assert "sua mãe" in _texts(reply) and "jardinagem" in _texts(reply).lower()
    assert "Sua mãe (Inês)" in _texts(bot.handle(user_key="web:ana", text="/memory"))
    bot.handle(user_key="web:ana", text="/forget Inês")
    with Session(demo_runtime.engine) as session:
        assert memory.facts(session=session, user_key="web:ana") == []


def test_an_impossible_birthday_is_kept_as_its_month_and_shown(demo_runtime):
    bot = demo_runtime.assistant
    bot.handle(user_key="web:ana", text="minha filha faz aniversário dia 31 de fevereiro, "
               "ela ama livros", market="BR")
    assert "fevereiro" in _texts(bot.handle(user_key="web:ana", text="/memory"))


def test_a_follow_up_for_another_person_does_not_copy_the_first_persons_facts(demo_runtime):
    bot = demo_runtime.assistant
    bot.handle(user_key="web:ana", text="presente para minha mãe, ela faz 60 em março, usa "
               "tamanho M, nada de perfume", market="BR")
    bot.handle(user_key="web:ana", text="e para o meu pai?")
    with Session(demo_runtime.engine) as session:
        about_dad = [f for f in memory.facts(session=session, user_key="web:ana")
                     if f.subject == "father"]
    assert about_dad == []


def test_forgetting_a_person_is_not_undone_by_the_next_follow_up(demo_runtime):
    bot = demo_runtime.assistant
    bot.handle(user_key="web:ana", text="minha mãe faz 60 em março e ama jardinagem",
               market="BR")
    bot.handle(user_key="web:ana", text="/forget mãe")
    bot.handle(user_key="web:ana", text="mais barato")
    with Session(demo_runtime.engine) as session:
        assert [f for f in memory.facts(session=session, user_key="web:ana")
                if f.subject == "mother"] == []


@pytest.mark.parametrize("action", ["forget", "forget:", "say:/forget", "say:/esquecer"])
def test_forget_from_a_button_deletes_everything_without_an_error(demo_runtime, action):
    bot = demo_runtime.assistant
    bot.handle(user_key="web:ana", text="minha mãe ama jardinagem", market="BR")
    reply = bot.handle(user_key="web:ana", action=action)
    assert reply.messages
    assert not any(_personal_rows(demo_runtime.engine, "web:ana").values())


def test_a_gift_is_the_person_s_whose_card_was_bought_not_who_is_asked_about_later(
        demo_runtime):
    bot = demo_runtime.assistant
    card = _cards(bot.handle(user_key="web:ana", text="presente para minha mãe que ama "
                             "jardinagem", market="BR"))[0]
    confirmation = bot.handle(user_key="web:ana", action=f"buy:{card.ref}").messages[0]
    bot.handle(user_key="web:ana", text="e para o meu pai?")
    bot.handle(user_key="web:ana", action=confirmation.buttons[0].action)
    with Session(demo_runtime.engine) as session:
        given = memory.gifts(session=session, user_key="web:ana")
    assert [(g.subject, g.title) for g in given] == [("mother", card.title)]


def test_a_name_that_is_also_a_colour_does_not_take_over_a_request(demo_runtime):
    bot = demo_runtime.assistant
    bot.handle(user_key="web:ana", text="minha sogra se chama Rosa e ama jardinagem",
               market="BR")
    mug = _texts(bot.handle(user_key="web:ana", text="uma caneca rosa"))
    assert "sogra" not in mug
    assert "sua sogra" in _texts(bot.handle(user_key="web:ana", text="presente para a Rosa"))


def test_purge_leaves_no_personal_row_past_the_retention(demo_runtime):
    from bot import linking
    from bot.models import LinkCode, ShopperLink
    from core.outbox import notify

    bot = demo_runtime.assistant
    bot.handle(user_key="web:ana", text="minha mãe ama jardinagem", market="BR")
    with Session(demo_runtime.engine) as session:
        linking.redeem_code(session, "web:bia", linking.issue_code(session, "web:ana"))
        linking.issue_code(session, "web:ana")
        notify(session, user_key="web:ana", text="Seu pedido foi pago")
        session.commit()
        later = utcnow() + timedelta(days=400)
        erasure.purge(session=session, retention_days=365, now=later)
        session.commit()
        left = {model.__name__: session.exec(select(model)).all()
                for model in (MemoryFact, Conversation, ShopperProfile, ShopperLink, LinkCode,
                              Notification, GiftRecord)}
    assert not any(left.values()), left



def _stored(engine, user_key):
    """Facts as another connection sees them: what was written, not what a session holds."""
    with Session(engine) as other:
        return sorted((f.subject, f.kind, f.value) for f in other.exec(
            select(MemoryFact).where(MemoryFact.user_key == user_key)))


def test_what_a_turn_learns_is_seen_by_it_and_written_only_at_its_commit(runtime):
    # A flush mid-turn would take SQLite's write lock through the search that follows.
    with Session(runtime.engine) as session, session.no_autoflush:
        memory.read(session=session, user_key="web:ana", subjects=["mother"])
        learned = memory.learn(session=session, user_key="web:ana", intent=PARSER.parse(
            "presente para minha mãe de 60 anos que ama jardinagem", market=get_market("BR")))
        assert {(f.kind, f.value) for f in learned} == {("age", "60"),
                                                         ("interest", "gardening")}
        assert _stored(runtime.engine, "web:ana") == []
        summary = memory.summarize(session=session, user_key="web:ana", subject="mother")
        assert summary.values(FactKind.AGE, "mother") == ["60"]
        session.commit()
    assert _stored(runtime.engine, "web:ana") == [("mother", "age", "60"),
                                                  ("mother", "interest", "gardening")]


def test_a_fact_replaced_and_stated_again_in_one_turn_stays_once(runtime):
    with Session(runtime.engine) as session:
        memory.remember(session=session, user_key="web:ana", subject="mother",
                        kind=FactKind.AGE, value="60")
        session.commit()
    with Session(runtime.engine) as session, session.no_autoflush:
        for age in ("61", "60"):
            memory.remember(session=session, user_key="web:ana", subject="mother",
                            kind=FactKind.AGE, value=age)
        assert memory.summarize(session=session, user_key="web:ana",
                                subject="mother").values(FactKind.AGE) == ["60"]
        session.commit()
    assert _stored(runtime.engine, "web:ana") == [("mother", "age", "60")]


def test_forget_in_the_turn_that_learned_reaches_what_was_not_written_yet(runtime):
    with Session(runtime.engine) as session, session.no_autoflush:
        memory.remember(session=session, user_key="web:ana", subject="mother",
                        kind=FactKind.INTEREST, value="gardening")
        erasure.forget(session=session, user_key="web:ana")
        assert memory.summarize(session=session, user_key="web:ana",
                                subject="mother").facts == []
        session.commit()
    assert _stored(runtime.engine, "web:ana") == []


def test_a_fact_known_past_the_first_facts_read_is_not_stored_twice(runtime):
    with Session(runtime.engine) as session:
        old = utcnow() - timedelta(days=30)
        session.add(MemoryFact(user_key="web:ana", subject="mother", kind="interest",
                               value="gardening", created_at=old))
        for i in range(memory.MAX_FACTS_READ + 5):
            session.add(MemoryFact(user_key="web:ana", subject="mother", kind="dislike",
                                   value=f"thing {i}"))
        session.commit()
    with Session(runtime.engine) as session, session.no_autoflush:
        assert memory.remember(session=session, user_key="web:ana", subject="mother",
                               kind=FactKind.INTEREST, value="gardening") is None
        assert memory.remember(session=session, user_key="web:ana", subject="mother",
                               kind=FactKind.INTEREST, value="cooking") is not None
        assert memory.remember(session=session, user_key="web:ana", subject="mother",
                               kind=FactKind.INTEREST, value="cooking") is None
        session.commit()
    interests = [v for s, k, v in _stored(runtime.engine, "web:ana") if k == "interest"]
    assert interests == ["cooking", "gardening"]


def test_a_gift_recorded_after_none_was_known_is_found_in_the_same_transaction(runtime):
    with Session(runtime.engine) as session:
        memory.knew_at_start(session, "web:ana", has_gifts=False, has_facts=True,
                             notice=None)
        assert memory.gifts(session=session, user_key="web:ana") == []
        order = Order(id="ord_1", user_key="web:ana", conversation_id="c", market="BR",
                      language="pt", merchant_slug="m", merchant_name="M", product_id="p",
                      title="Regador", amount=10, total=10, currency="BRL", rail="pix",
                      status=OrderStatus.AWAITING_PAYMENT)
        session.add(order)
        memory.record_gift(session=session, user_key="web:ana", subject="mother",
                           order_id="ord_1")
        assert [g.title for g in memory.gifts(session=session, user_key="web:ana")] == \
            ["Regador"]


def test_memory_is_read_newest_first_by_priority_with_every_name(runtime):
    # What a turn reads of memory: for each subject asked, its facts in the order summaries
    # take them (priority, then newest first), at most MAX_FACTS_READ; and the names the
    # shopper gave, whoever they are about.
    now = utcnow()
    rows = [("mother", FactKind.INTEREST, "jardinagem", 3), ("mother", FactKind.INTEREST,
                                                            "leitura", 1),
            ("mother", FactKind.DISLIKE, "perfume", 5), ("mother", FactKind.AGE, "60", 2),
            ("sister", FactKind.NAME, "Inês", 4), ("sister", FactKind.INTEREST, "yoga", 1)]
    with session_scope(runtime.engine) as session:
        session.add_all([MemoryFact(user_key="web:ana", subject=subject, kind=kind,
                                    value=value, created_at=now - timedelta(days=days_ago))
                         for subject, kind, value, days_ago in rows])
        session.add(MemoryFact(user_key="web:bia", subject="mother", kind=FactKind.INTEREST,
                               value="golfe", created_at=now))
    with Session(runtime.engine) as session:
        known = memory.read(session=session, user_key="web:ana", subjects=["mother"])
        assert [f.value for f in known.of("mother")] == ["perfume", "60", "leitura",
                                                         "jardinagem"]
        assert [(f.subject, f.value) for f in known.name_facts] == [("sister", "Inês")]
        assert all(f.id and f.created_at.tzinfo for f in known.of("mother"))
        # The objects are the session's: read again through it, the same ones.
        again = session.get(MemoryFact, known.of("mother")[0].id)
        assert again is known.of("mother")[0]
