"""Conversation v0: memory, refinements from card buttons, and stale prices."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest
from sqlmodel import Session, select

from catalog.models import CatalogProduct
from checkout.models import Order
from core.money import Money
from core.settings import Settings
from vitrine.runtime import build_runtime, seed_demo


def raise_price(runtime, product_id: str, *, by: int) -> None:
    """The merchant changes a price behind the shopper's back."""
    with Session(runtime.engine) as session:
        row = session.exec(select(CatalogProduct)
                           .where(CatalogProduct.product_id == product_id)).one()
        row.price_amount += by
        session.add(row)
        session.commit()


def _cards(reply):
    return [c for m in reply.messages for c in m.cards]


@contextmanager
def _writes(engine):
    """Every statement but a SELECT sent meanwhile, whitespace folded."""
    from sqlalchemy import event

    writes: list[str] = []

    def seen(conn, cursor, statement, *_):
        if not statement.lstrip().startswith("SELECT"):
            writes.append(" ".join(statement.split()))

    event.listen(engine, "before_cursor_execute", seen)
    try:
        yield writes
    finally:
        event.remove(engine, "before_cursor_execute", seen)


def test_a_turn_writes_back_only_what_it_changed_with_its_events(demo_runtime):
    # The conversation is written by the turn, not flushed by the ORM: a new shopper's
    # inserted, a returning shopper's updated in the columns the turn changed (what a
    # concurrent writer set in others stays); on PostgreSQL with the turn's conversion
    # events in the same statement.
    from bot.models import Conversation

    bot = demo_runtime.assistant
    bot.handle(user_key="web:bia", text="oi", market="BR")  # the market's index is built
    with _writes(demo_runtime.engine) as writes:
        first = _cards(bot.handle(user_key="web:ana", market="BR",
                                  text="um presente de aniversário"))
        written_first, writes[:] = list(writes), []
        more = _cards(bot.handle(user_key="web:ana", action=f"more:{first[0].ref}",
                                 locale="pt-BR"))  # the language it has: not written
    assert first and more
    [insert] = [w for w in written_first if "INSERT INTO conversation " in w]
    [update] = [w for w in writes if "UPDATE conversation SET" in w]
    assert "shown=" in update and "updated_at=" in update
    for untouched in ("awaiting_payer", "language_chosen", "home_market", "conversation_id",
                      "language"):
        assert f"{untouched}=" not in update
    if demo_runtime.engine.dialect.name == "postgresql":
        for statement in (insert, update):
            assert statement.startswith("WITH appended_0 AS (INSERT INTO conversionevent")
        assert (len(written_first), len(writes)) == (1, 1)
    with Session(demo_runtime.engine) as session:
        shown = session.get(Conversation, "web:ana").shown
    assert {c.ref for c in first + more} <= set(shown)


def test_what_a_first_message_teaches_is_written_with_the_conversation(demo_runtime):
    # The facts learned and the shopper's privacy profile (told how memory works) are new
    # rows the turn appends: written with the conversation, on PostgreSQL in its statement.
    from bot.models import MemoryFact, ShopperProfile

    engine = demo_runtime.engine
    bot = demo_runtime.assistant
    bot.handle(user_key="web:bia", text="oi", market="BR")  # the market's index is built
    with _writes(engine) as writes:
        reply = bot.handle(user_key="web:ana", market="BR",
                           text="presente para minha mãe que ama jardinagem")
    assert _cards(reply)
    if engine.dialect.name == "postgresql":
        [statement] = writes
        for table in ("conversionevent", "memoryfact", "shopperprofile"):
            assert f"INSERT INTO {table} " in statement
        assert "INSERT INTO conversation " in statement
    with Session(engine) as session:
        facts = session.exec(select(MemoryFact).where(MemoryFact.user_key == "web:ana")).all()
        profile = session.get(ShopperProfile, "web:ana")
    assert ("mother", "interest", "gardening") in {(f.subject, f.kind, f.value) for f in facts}
    assert all(f.id and f.created_at for f in facts)
    assert profile is not None and profile.memory_notice_at is not None


def test_a_turn_whose_conversation_was_deleted_meanwhile_runs_again(demo_runtime):
    # The shopper's /forget on another worker deleted the conversation after the turn read
    # it: its write-back changes no row, so nothing of it is kept and it runs again, for a
    # shopper with no conversation.
    from sqlalchemy import event, text

    from bot.models import Conversation

    engine = demo_runtime.engine
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite: a transaction that read before another's commit cannot write")
    bot = demo_runtime.assistant
    bot.handle(user_key="web:ana", text="presente para minha mãe", market="BR")
    with Session(engine) as session:
        before = session.get(Conversation, "web:ana").conversation_id
    deleted: list[int] = []

    def forget_meanwhile(conn, cursor, statement, *_):
        if statement.startswith("WITH appended_0") and "UPDATE conversation" in \
                statement and not deleted:
            with engine.connect() as other:
                deleted.append(other.execute(text(
                    "DELETE FROM conversation WHERE user_key = 'web:ana'")).rowcount)
                other.commit()

    event.listen(engine, "before_cursor_execute", forget_meanwhile)
    try:
        reply = bot.handle(user_key="web:ana", text="agora um fone de ouvido")
    finally:
        event.remove(engine, "before_cursor_execute", forget_meanwhile)
    assert deleted == [1] and _cards(reply)
    with Session(engine) as session:
        assert session.get(Conversation, "web:ana").conversation_id != before


def test_what_the_shopper_says_about_mom_is_used_later(demo_runtime):
    bot = demo_runtime.assistant
    first = bot.handle(user_key="web:ana", text="minha mãe tem 60 anos e adora jardinagem",
                       market="BR")
    assert any("jardinagem" in m.text for m in first.messages)
    later = bot.handle(user_key="web:ana", text="um presente para minha mãe")
    cards = _cards(later)
    assert cards and all("jardinagem" in c.reason.lower() for c in cards)
    assert any("Lembrei" in m.text for m in later.messages)
    # Memory is per shopper.
    stranger = bot.handle(user_key="web:bia", text="um presente para minha mãe", market="BR")
    assert not any("jardinagem" in c.reason.lower() for c in _cards(stranger))


def test_forget_erases_what_was_remembered(demo_runtime):
    bot = demo_runtime.assistant
    bot.handle(user_key="web:ana", text="minha mãe tem 60 anos e adora jardinagem", market="BR")
    bot.handle(user_key="web:ana", action="forget")
    later = bot.handle(user_key="web:ana", text="um presente para minha mãe")
    assert not any("Lembrei" in m.text for m in later.messages)


def test_not_for_me_replaces_the_card_and_never_shows_it_again(demo_runtime):
    bot = demo_runtime.assistant
    first = _cards(bot.handle(user_key="web:ana", text="presente para minha mãe até R$200",
                              market="BR"))
    rejected = first[0]
    again = _cards(bot.handle(user_key="web:ana", action=f"skip:{rejected.ref}"))
    assert again and rejected.ref not in {c.ref for c in again}
    later = _cards(bot.handle(user_key="web:ana", text="presente para minha mãe até R$200"))
    assert rejected.ref not in {c.ref for c in later}


def test_more_like_this_shows_similar_new_products(demo_runtime):
    bot = demo_runtime.assistant
    first = _cards(bot.handle(user_key="web:joe", text="gift for my mom who loves gardening",
                              market="US"))
    more = _cards(bot.handle(user_key="web:joe", action=f"more:{first[0].ref}"))
    assert more and not ({c.ref for c in more} & {c.ref for c in first})


def test_a_price_change_before_confirm_asks_again_and_is_never_charged_stale(demo_runtime):
    bot = demo_runtime.assistant
    card = _cards(bot.handle(user_key="web:ana", text="presente para minha mãe até R$200",
                             market="BR"))[0]
    confirmation = bot.handle(user_key="web:ana", action=f"buy:{card.ref}").messages[0]
    raise_price(demo_runtime, card.product_id, by=1000)
    confirm = confirmation.buttons[0].action
    asked_again = bot.handle(user_key="web:ana", action=confirm).messages[0]
    assert "000201" not in asked_again.text and asked_again.buttons
    paid = bot.handle(user_key="web:ana", action=asked_again.buttons[0].action).messages[0]
    cents = card.price.amount + 1000
    assert f"54{len(f'{cents // 100}.{cents % 100:02d}'):02d}{cents // 100}.{cents % 100:02d}" \
        in paid.text


def test_conversation_state_survives_a_restart(demo_runtime, settings):
    from vitrine.runtime import build_runtime

    bot = demo_runtime.assistant
    card = _cards(bot.handle(user_key="web:ana", text="presente para minha mãe", market="BR"))[0]
    restarted = build_runtime(settings).assistant
    confirmation = restarted.handle(user_key="web:ana", action=f"buy:{card.ref}").messages[0]
    assert card.title in confirmation.text


def test_thanks_gets_a_reply_not_the_greeting(demo_runtime):
    reply = demo_runtime.assistant.handle(user_key="web:ana", text="obrigada!", market="BR")
    [message] = reply.messages
    assert message.text.startswith("Por nada") and not message.buttons


def test_an_idle_conversation_starts_afresh_but_memory_stays(demo_runtime):
    from datetime import timedelta

    from bot.models import Conversation

    bot = demo_runtime.assistant
    card = _cards(bot.handle(user_key="web:ana", text="minha mãe tem 60 anos e adora jardinagem",
                             market="BR"))[0]
    with Session(demo_runtime.engine) as session:
        conv = session.get(Conversation, "web:ana")
        old_id = conv.conversation_id
        conv.updated_at = conv.updated_at - timedelta(
            minutes=demo_runtime.settings.conversation_idle_minutes + 1)
        session.add(conv)
        session.commit()
    stale = bot.handle(user_key="web:ana", action=f"buy:{card.ref}").messages[0]
    assert not stale.buttons  # the old cards' buttons no longer act
    later = bot.handle(user_key="web:ana", text="presente para minha mãe")
    assert any("Lembrei" in m.text for m in later.messages)
    with Session(demo_runtime.engine) as session:
        assert session.get(Conversation, "web:ana").conversation_id != old_id


def test_a_new_shoppers_simultaneous_first_messages_all_get_answers(demo_runtime):
    import threading

    bot = demo_runtime.assistant
    barrier = threading.Barrier(5)
    results: list[object] = []

    def first_message() -> None:
        barrier.wait(timeout=10)
        try:
            results.append(bot.handle(user_key="web:double-tap", text="presente para minha mãe",
                                      market="BR"))
        except Exception as exc:
            results.append(exc)

    threads = [threading.Thread(target=first_message) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(results) == 5
    assert all(not isinstance(r, Exception) for r in results), results


def test_a_price_change_before_buy_is_pointed_out(demo_runtime):
    bot = demo_runtime.assistant
    card = _cards(bot.handle(user_key="web:ana", text="presente para minha mãe até R$200",
                             market="BR"))[0]
    raise_price(demo_runtime, card.product_id, by=500)
    confirmation = bot.handle(user_key="web:ana", action=f"buy:{card.ref}").messages[0]
    assert card.price_text in confirmation.text and "mudou" in confirmation.text


def test_tapping_buy_twice_reopens_one_order(demo_runtime):
    from checkout.models import Order

    bot = demo_runtime.assistant
    card = _cards(bot.handle(user_key="web:ana", text="presente para minha mãe", market="BR"))[0]
    first = bot.handle(user_key="web:ana", action=f"buy:{card.ref}").messages[0]
    second = bot.handle(user_key="web:ana", action=f"buy:{card.ref}").messages[0]
    assert first.buttons[0].action == second.buttons[0].action
    with Session(demo_runtime.engine) as session:
        assert len(session.exec(select(Order)).all()) == 1


def test_a_budget_in_another_currency_is_explained_not_silently_dropped(demo_runtime):
    reply = demo_runtime.assistant.handle(user_key="web:joe", market="US",
                                          text="gift for mom under 50 euros")
    assert any("USD" in m.text and "50" in m.text for m in reply.messages)


def test_a_zero_budget_is_still_a_budget(demo_runtime):
    reply = demo_runtime.assistant.handle(user_key="web:ana", market="BR",
                                          text="presente para minha mãe até R$ 0")
    assert not _cards(reply) and "R$ 0,00" in reply.messages[-1].text


@pytest.mark.parametrize(("market", "text", "expected"), [
    ("BR", "livro de culinária", "Rita Lobo"),  # a cookbook is a book
    ("AR", "un libro de cocina para mi mamá", "Petrona"),
    ("US", "headphones for my son", "AirPods"),  # earbuds are headphones
])
def test_a_narrower_kind_in_the_title_still_answers_the_kind_asked_for(demo_runtime, market,
                                                                        text, expected):
    cards = _cards(demo_runtime.assistant.handle(user_key="web:ana", text=text, market=market))
    assert any(expected in c.title for c in cards), [c.title for c in cards]


def test_when_no_card_is_of_the_kind_asked_the_note_names_the_kind_as_asked(demo_runtime):
    reply = demo_runtime.assistant.handle(user_key="web:ana", text="roupa pra minha avó",
                                          market="BR")
    text = "\n".join(m.text for m in reply.messages)
    assert "Não encontrei roupa" in text and "camiseta" not in text


def test_a_shopper_who_moves_to_another_dollar_market_sees_its_symbol_spelled_out(
        demo_runtime):
    bot = demo_runtime.assistant
    local = bot.handle(user_key="web:sofi", text="regalo para mi mamá", market="AR")
    assert local.messages[-1].cards[0].price_text.startswith("$")
    bot.handle(user_key="web:jo", text="hi", market="US")
    bot.handle(user_key="web:jo", text="/market AR")
    visiting = bot.handle(user_key="web:jo", text="regalo para mi mamá")
    cards = visiting.messages[-1].cards
    assert all(c.price_text.startswith("AR$") for c in cards)
    # The order keeps it: its confirmation, the orders list and any news about it.
    [confirmation] = bot.handle(user_key="web:jo", action=cards[0].buttons[0].action).messages
    assert "AR$" in confirmation.text
    bot.handle(user_key="web:jo", action=next(b.action for b in confirmation.buttons
                                              if b.action.startswith("confirm:")))
    [listed] = bot.handle(user_key="web:jo", text="/orders").messages
    assert "AR$" in listed.text
    with Session(demo_runtime.engine) as session:
        order = session.exec(select(Order).where(Order.user_key == "web:jo")).one()
    assert order.shopper_market().format_price(Money(100, "ARS")).startswith("AR$")


@pytest.mark.parametrize(("setting", "database", "expected"), [
    (None, "sqlite:///x.db", 1), (None, "postgresql+psycopg://h/db", 4), (3, "sqlite://", 3)])
def test_turns_at_once_default_by_database(setting, database, expected):
    assert Settings(env="test", database_url=database,
                    turn_concurrency=setting).turns_at_once == expected


def test_a_process_runs_no_more_turns_at_once_than_its_setting(settings):
    runtime = build_runtime(settings.model_copy(update={"turn_concurrency": 2}))
    try:
        seed_demo(runtime)
        search = runtime.assistant.search.search
        inside, most, lock = [0], [0], threading.Lock()

        def slow_search(*args, **kwargs):
            with lock:
                inside[0] += 1
                most[0] = max(most[0], inside[0])
            time.sleep(0.05)  # long enough for every thread to have arrived
            try:
                return search(*args, **kwargs)
            finally:
                with lock:
                    inside[0] -= 1

        runtime.assistant.search.search = slow_search
        with ThreadPoolExecutor(6) as pool:
            replies = list(pool.map(lambda i: runtime.assistant.handle(
                user_key=f"web:turn-{i}", text="fone de ouvido bluetooth", market="BR"),
                range(6)))
        assert all(m.cards for r in replies for m in r.messages[-1:])
        assert most[0] == 2
    finally:
        runtime.close()


@pytest.mark.parametrize("returning", [False, True])
def test_a_turn_reads_what_it_starts_from_in_its_first_statement(demo_runtime, returning):
    # The conversation, the linked account, the queue, whether there are gifts or facts on
    # record, the memory notice and the catalog's revision come in one round trip, for a new
    # shopper as for one coming back.
    from sqlalchemy import event

    bot = demo_runtime.assistant
    # The first search after start builds the market's index, reading on its own.
    bot.handle(user_key="web:bia" if not returning else "web:ana",
               text="presente para minha mãe que ama jardinagem", market="BR")
    statements: list[str] = []

    def seen(conn, cursor, statement, *_):
        statements.append(" ".join(statement.split()))

    event.listen(demo_runtime.engine, "before_cursor_execute", seen)
    try:
        reply = bot.handle(user_key="web:ana", text="um presente para o meu pai que ama "
                           "churrasco", market="BR")
    finally:
        event.remove(demo_runtime.engine, "before_cursor_execute", seen)
    assert _cards(reply)
    first, *rest = [s for s in statements if s.startswith("SELECT")]
    # A fact learned: the notice is given now, or was given in the shopper's last turn.
    assert ("/memoria" in " ".join(m.text for m in reply.messages)) != returning
    for table in ("FROM shopperlink", "FROM notification", "FROM giftrecord",
                  "FROM shopperprofile", "count(merchant.id)"):
        assert table in first
        assert not [s for s in rest if table in s]
    # Memory is read only when there is some: a new shopper's is not.
    assert "FROM memoryfact" in first
    assert bool([s for s in rest if "FROM memoryfact" in s]) == returning
