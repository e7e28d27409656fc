"""The short lines above the cards: what was learned or remembered, what was left out and
why, and what could not be done (no card in the colour asked for, shops that did not answer
in time, a budget in another currency)."""

from __future__ import annotations

from bot.intent import Intent
from bot.memory import MemorySummary
from bot.models import MemoryFact
from bot.privacy import fact_text
from bot.replies import facts_text, who
from catalog.explain import INTEREST_LABELS
from catalog.product_types import product_types
from catalog.search import SearchRequest
from core.i18n import Translator
from core.markets import Market
from core.money import Money, format_money


def recommendation_notes(*, intent: Intent, request: SearchRequest, market: Market,
                         t: Translator, learned: list[MemoryFact],
                         remembered: MemorySummary | None, tell_about_memory: bool,
                         missing_colour: str | None, none_fits: bool,
                         unanswered: list[str]) -> list[str]:
    """The notes for one answer, in the shopper's language, in the order they are shown."""
    notes = []
    person = who(intent, t)
    about_person = [f for f in learned if f.subject == intent.recipient]
    if about_person and person:
        notes.append(t.gettext("Noted about {who}: {facts}. I will remember it.").format(
            who=person, facts=", ".join(fact_text(f, market, t) for f in about_person)))
    elif intent.remembered and person:
        notes.append(t.gettext("I remembered about {who}: {facts}.").format(
            who=person, facts=facts_text(intent, t, intent.remembered)))
    if remembered is not None and remembered.gifts and person:
        notes.append(t.gettext("Last time you gave {who} {title}, so I left it out.")
                     .format(who=person, title=remembered.gifts[0].title))
    if tell_about_memory:
        notes.append(t.gettext("I keep what you tell me about people to suggest better "
                               "gifts. Type /memory to see it and /forget to delete it."))
    if missing_colour:
        notes.append(t.gettext("I found nothing in {colour} for that; these are the "
                               "closest ideas.").format(colour=missing_colour))
    if none_fits:
        notes.extend(_nothing_that_fits(intent, request, t))
    if unanswered:
        notes.append(t.gettext("{shops} did not answer in time, so these ideas come from "
                               "the other shops.").format(shops=", ".join(unanswered)))
    if intent.budget and intent.budget.currency != market.currency:
        limit_amount = intent.budget.max if intent.budget.max is not None \
            else intent.budget.min or 0
        notes.append(t.gettext(
            "Prices here are in {currency}, so I could not use your budget of {budget}.")
            .format(currency=market.currency, budget=format_money(
                Money(limit_amount, intent.budget.currency), market.locale)))
    return notes


def _nothing_that_fits(intent: Intent, request: SearchRequest, t: Translator) -> list[str]:
    """Say that no card is of the kind, or for the interest, asked for (they are the closest
    ideas), rather than pass them off as what was asked. The kind is named as asked ("roupa"),
    not as the first of the types it stands for."""
    if request.product_types:
        asked = intent.product_types[0] if intent.product_types else request.product_types[0]
        kind = product_types().label(asked, intent.language)
        return [t.gettext("I found no {kind} for that; these are the closest ideas.")
                .format(kind=kind)]
    if request.stated_interests:
        interest = request.stated_interests[0].partition(":")[2]
        return [t.gettext("I found nothing for someone who loves {interest} there; these "
                          "are other ideas.").format(
            interest=t.gettext(INTEREST_LABELS.get(interest, interest)))]
    return []


