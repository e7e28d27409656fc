"""Proactive gift reminders: due dates, once per occasion, channel rules, and opting out."""

from datetime import date, datetime, timedelta

import pytest
from sqlmodel import Session, select

from bot.reminders import TEMPLATE, occasion_date, occasions, run_reminders
from core.outbox import Notification

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=datetime.now().astimezone().tzinfo)


def _notes(runtime, user_key):
    with Session(runtime.engine) as session:
        return session.exec(select(Notification).where(
            Notification.user_key == user_key)).all()


@pytest.mark.parametrize(("market", "occasion", "year", "expected"), [
    ("BR", "mothers-day", 2027, date(2027, 5, 9)),  # second Sunday of May
    ("AR", "mothers-day", 2026, date(2026, 10, 18)),  # third Sunday of October
    ("CO", "valentines", 2026, date(2026, 9, 19)),  # Amor y Amistad, third Saturday
    ("CO", "childrens-day", 2027, date(2027, 4, 24)),  # last Saturday of April
    ("MX", "mothers-day", 2027, date(2027, 5, 10)),
    ("US", "fathers-day", 2026, date(2026, 6, 21)),
])
def test_occasion_dates_follow_each_markets_calendar(market, occasion, year, expected):
    assert occasion_date(occasions()["dates"][market][occasion], year) == expected


def test_a_birthday_near_gets_one_reminder_with_cards_that_can_be_bought(demo_runtime):
    bot = demo_runtime.assistant
    bot.handle(user_key="web:ana", text="o aniversário da minha mãe é dia 10 de dezembro, "
               "ela ama jardinagem", market="BR")
    report = run_reminders(bot, now=NOW)
    assert report.sent == 1
    [note] = _notes(demo_runtime, "web:ana")
    assert "10 de dezembro" in note.text and "/lembretes desligar" in note.text
    # Named for channels that allow only a template after a while (WhatsApp); the web chat
    # shows the message itself.
    assert note.template == TEMPLATE and note.template_params[0] == "sua mãe"
    # The shopper sees it with their next message, and its buttons work.
    delivered = bot.pending(user_key="web:ana").messages
    cards = delivered[0].cards
    assert len(cards) == 3 and all("jardinagem" in c.reason.lower() for c in cards)
    confirm = bot.handle(user_key="web:ana", action=f"buy:{cards[0].ref}").messages[0]
    assert confirm.buttons, confirm.text
    # Running again the same day, or the next, sends nothing more.
    again = run_reminders(bot, now=NOW + timedelta(days=1))
    assert again.sent == 0 and again.skipped == {"already_sent": 1}


def test_a_far_birthday_is_not_due_yet(demo_runtime):
    bot = demo_runtime.assistant
    bot.handle(user_key="web:ana", text="minha mãe faz 60 em março", market="BR")
    assert run_reminders(bot, now=NOW).sent == 0
    assert run_reminders(bot, today=date(2027, 2, 20), now=NOW).sent == 1


def test_a_mother_is_remembered_on_mothers_day_of_the_shoppers_market(demo_runtime):
    bot = demo_runtime.assistant
    bot.handle(user_key="web:sofi", text="regalo para mi mamá que ama la jardinería",
               market="AR")
    report = run_reminders(bot, today=date(2026, 10, 10), now=NOW)
    assert report.sent == 1
    [note] = _notes(demo_runtime, "web:sofi")
    assert "Día de la Madre" in note.text and "18 de octubre" in note.text


def test_reminders_off_is_respected_until_turned_on(demo_runtime):
    bot = demo_runtime.assistant
    bot.handle(user_key="web:ana", text="o aniversário da minha mãe é dia 10 de dezembro",
               market="BR")
    reply = bot.handle(user_key="web:ana", text="/lembretes desligar")
    assert "desligados" in reply.messages[0].text
    assert run_reminders(bot, now=NOW).skipped == {"turned_off": 1}
    bot.handle(user_key="web:ana", text="/reminders on")
    assert run_reminders(bot, now=NOW).sent == 1


def test_a_forgotten_shopper_gets_no_reminder(demo_runtime):
    bot = demo_runtime.assistant
    bot.handle(user_key="web:ana", text="o aniversário da minha mãe é dia 10 de dezembro",
               market="BR")
    bot.handle(user_key="web:ana", text="/forget")
    assert run_reminders(bot, now=NOW).sent == 0
    assert _notes(demo_runtime, "web:ana") == []


def test_a_birthday_learned_by_month_then_by_day_is_reminded_once(demo_runtime):
    bot = demo_runtime.assistant
    bot.handle(user_key="web:ana", text="o aniversário da minha mãe é em março", market="BR")
    assert run_reminders(bot, today=date(2027, 2, 20), now=NOW).sent == 1
    bot.handle(user_key="web:ana", text="o aniversário da minha mãe é dia 8 de março")
    again = run_reminders(bot, today=date(2027, 3, 1), now=NOW)
    assert again.sent == 0 and again.skipped == {"already_sent": 1}


def test_reminders_off_outlives_forget(demo_runtime):
    bot = demo_runtime.assistant
    bot.handle(user_key="web:ana", text="/reminders off", market="BR")
    bot.handle(user_key="web:ana", text="/forget")
    bot.handle(user_key="web:ana", text="o aniversário da minha mãe é dia 10 de dezembro")
    assert run_reminders(bot, now=NOW).skipped == {"turned_off": 1}


def test_a_reminder_becomes_the_request_on_the_table(demo_runtime):
    bot = demo_runtime.assistant
    bot.handle(user_key="web:ana", text="o aniversário da minha mãe é dia 10 de dezembro, "
               "ela ama jardinagem", market="BR")
    run_reminders(bot, now=NOW)
    ideas = bot.pending(user_key="web:ana").messages[0].cards
    cheaper = bot.handle(user_key="web:ana", text="mais barato")
    text = "\n".join(m.text for m in cheaper.messages)
    assert "sua mãe" in text
    cards = [c for m in cheaper.messages for c in m.cards]
    assert all(c.price.amount <= min(i.price.amount for i in ideas) for c in cards)
