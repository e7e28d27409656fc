"""Linking channels: one shopper on two apps shares one memory."""

import re
from datetime import timedelta

from sqlmodel import Session, select

from bot import linking, memory
from bot.models import Conversation, MemoryFact, ShopperLink
from core.db import utcnow

TELEGRAM, WHATSAPP = "telegram:111", "whatsapp:5511999990000"


def _texts(reply):
    return "\n".join(m.text for m in reply.messages)


def _code(reply) -> str:
    return re.search(r"/(?:link|vincular) ([0-9A-Z]{4}-[0-9A-Z]{4})", _texts(reply)).group(1)


def test_a_code_from_one_app_links_the_other_and_they_share_memory(demo_runtime):
    bot = demo_runtime.assistant
    bot.handle(user_key=TELEGRAM, text="minha mãe ama jardinagem", market="BR")
    bot.handle(user_key=WHATSAPP, text="meu pai ama churrasco", market="BR")
    code = _code(bot.handle(user_key=TELEGRAM, text="/link"))
    assert "Vinculado" in _texts(bot.handle(user_key=WHATSAPP, text=f"/link {code}"))
    # What either app was told is now known on both, and what is learned later too.
    for account in (TELEGRAM, WHATSAPP):
        shown = _texts(bot.handle(user_key=account, text="/memory"))
        assert "Sua mãe" in shown and "Seu pai" in shown
    bot.handle(user_key=WHATSAPP, text="minha avó faz 80 anos em maio")
    assert "Sua avó" in _texts(bot.handle(user_key=TELEGRAM, text="/memory"))
    assert "jardinagem" in _texts(bot.handle(user_key=WHATSAPP,
                                             text="presente para minha mãe")).lower()
    # A code works once.
    again = _texts(bot.handle(user_key="web:other", text=f"/link {code}", market="BR"))
    assert "não é válido" in again


def test_linking_twice_or_to_yourself_changes_nothing(demo_runtime):
    bot = demo_runtime.assistant
    own = _code(bot.handle(user_key=TELEGRAM, text="/link", market="BR"))
    assert "não é válido" in _texts(bot.handle(user_key=TELEGRAM, text=f"/link {own}"))
    bot.handle(user_key=WHATSAPP, text=f"/link {own}", market="BR")
    again = _code(bot.handle(user_key=WHATSAPP, text="/link"))
    assert "já estão vinculados" in _texts(bot.handle(user_key=TELEGRAM, text=f"/link {again}"))


def test_the_same_fact_told_on_both_apps_is_kept_once(runtime):
    with Session(runtime.engine) as session:
        for account in (TELEGRAM, WHATSAPP):
            memory.remember(session=session, user_key=account, subject="mother",
                            kind=memory.FactKind.INTEREST, value="gardening")
        code = linking.issue_code(session, TELEGRAM)
        assert linking.redeem_code(session, WHATSAPP, code).outcome == "linked"
        session.commit()
        facts = session.exec(select(MemoryFact)).all()
    assert [(f.user_key, f.value) for f in facts] == [(TELEGRAM, "gardening")]


def test_a_code_expires(runtime):
    with Session(runtime.engine) as session:
        code = linking.issue_code(session, TELEGRAM, now=utcnow() - timedelta(minutes=11))
        result = linking.redeem_code(session, WHATSAPP, code)
    assert result.outcome == "invalid"


def test_too_many_wrong_codes_lock_linking_for_a_while(runtime):
    with Session(runtime.engine) as session:
        code = linking.issue_code(session, TELEGRAM)
        wrong = "0" * linking.CODE_LENGTH if code != "0" * linking.CODE_LENGTH else "1" * 8
        for _ in range(linking.MAX_FAILURES):
            assert linking.redeem_code(session, WHATSAPP, wrong).outcome == "invalid"
        assert linking.redeem_code(session, WHATSAPP, code).outcome == "locked"
        later = utcnow() + timedelta(minutes=linking.LOCK_MINUTES + 1)
        fresh = linking.issue_code(session, TELEGRAM, now=later)
        assert linking.redeem_code(session, WHATSAPP, fresh, now=later).outcome == "linked"


def test_linking_a_third_app_joins_the_same_memory(runtime):
    with Session(runtime.engine) as session:
        linking.redeem_code(session, WHATSAPP, linking.issue_code(session, TELEGRAM))
        # The web account links to WhatsApp, which is itself linked to Telegram.
        linking.redeem_code(session, "web:ana", linking.issue_code(session, WHATSAPP))
        owners = {linking.owner_of(session, a) for a in (TELEGRAM, WHATSAPP, "web:ana")}
    assert owners == {TELEGRAM}


def test_forget_on_one_app_forgets_on_every_linked_one(demo_runtime):
    bot = demo_runtime.assistant
    bot.handle(user_key=TELEGRAM, text="minha mãe ama jardinagem", market="BR")
    code = _code(bot.handle(user_key=TELEGRAM, text="/link"))
    bot.handle(user_key=WHATSAPP, text=f"/link {code}", market="BR")
    bot.handle(user_key=WHATSAPP, text="/forget")
    with Session(demo_runtime.engine) as session:
        assert session.exec(select(MemoryFact)).all() == []
        assert session.exec(select(ShopperLink)).all() == []
        assert session.exec(select(Conversation)).all() == []


def test_a_code_is_long_and_forgiving_to_type():
    codes = {linking.normalise_code(c) for c in ("vx7k-m2q0", "VX7K M2QO", "vx7km2qo")}
    assert codes == {"VX7KM2Q0"}
    assert linking.CODE_LENGTH == 8 and len(linking.CODE_ALPHABET) == 32


def test_merging_two_memories_keeps_the_newest_of_contradicting_facts(runtime):
    with Session(runtime.engine) as session:
        for account, age, brand_kind in ((TELEGRAM, "60", memory.FactKind.AVOIDS_BRAND),
                                         (WHATSAPP, "61", memory.FactKind.LIKES_BRAND)):
            memory.remember(session=session, user_key=account, subject="mother",
                            kind=memory.FactKind.AGE, value=age)
            memory.remember(session=session, user_key=account, subject="mother",
                            kind=brand_kind, value="tramontina")
            session.flush()
        linking.redeem_code(session, WHATSAPP, linking.issue_code(session, TELEGRAM))
        session.commit()
        facts = {(f.kind, f.value) for f in memory.facts(session=session, user_key=TELEGRAM)}
    assert facts == {("age", "61"), ("likes_brand", "tramontina")}


def test_linking_moves_reminders_already_sent_so_none_is_sent_twice(demo_runtime):
    from datetime import datetime

    from bot.reminders import run_reminders

    bot = demo_runtime.assistant
    now = datetime(2026, 11, 29, 12, 0, tzinfo=utcnow().tzinfo)
    bot.handle(user_key=WHATSAPP, text="o aniversário da minha mãe é dia 10 de dezembro",
               market="BR")
    assert run_reminders(bot, now=now).sent == 1
    code = _code(bot.handle(user_key=TELEGRAM, text="/link", market="BR"))
    bot.handle(user_key=WHATSAPP, text=f"/link {code}")
    assert run_reminders(bot, now=now).sent == 0
