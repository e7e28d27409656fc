"""Multi-turn refinement: what a message does to the request the shopper is refining.

The conversation keeps its active request (`ActiveRequest`, saved in the conversation row so
it survives a restart and expires with the conversation). `plan` reads the next message
against it: "mais barato" searches the same request below the cheapest card shown, "outra
opção" and "show more" search it again without the cards already seen, "for dad instead" and
"em azul" change it (`bot.refinement.merge`), "o segundo" picks a card to buy, and anything
else is a new request.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from bot.intent import Budget, Intent
from bot.refinement import FollowUpKind, merge, read_follow_up

MAX_SEEN = 60
MAX_TEXT = 500  # the joined text of a long refinement keeps its latest part


@dataclass
class ActiveRequest:
    """The request being refined and what its answers showed."""

    intent: Intent
    cards: list[str] = field(default_factory=list)  # refs of the last answer, in order
    prices: list[int] = field(default_factory=list)  # their prices, in the same order
    seen: list[str] = field(default_factory=list)  # every ref shown since the request began

    @classmethod
    def from_state(cls, state: dict) -> ActiveRequest | None:
        """The active request saved by `to_state`; None for none or an older format."""
        intent = state.get("intent")
        if not isinstance(intent, dict):
            return None
        return cls(intent=Intent.from_dict(intent), cards=list(state.get("cards", [])),
                   prices=[int(p) for p in state.get("prices", [])],
                   seen=list(state.get("seen", [])))

    def to_state(self) -> dict:
        return {"text": self.intent.text, "intent": self.intent.as_dict(),
                "cards": self.cards, "prices": self.prices, "seen": self.seen[-MAX_SEEN:]}


@dataclass
class Plan:
    """What to do with one message."""

    intent: Intent | None = None  # search for this; None when a card was picked
    said: Intent | None = None  # what this message itself said: memory learns only this
    exclude: set[str] = field(default_factory=set)
    refines: bool = False  # the intent continues the active request
    pick: str | None = None  # the ref of the card the shopper picked
    lowered_to: int | None = None  # "mais barato": what is now too expensive (a preference)
    no_card: bool = False  # a pick that names no card shown ("the fifth one" of three)
    # More of the same request ("mais opções", "outra", "mais barato" after nothing): with
    # no cards, the answer is that the options ran out, not that nothing was found.
    ran_out: bool = False


def plan(text: str, active: ActiveRequest | None, parse: Callable[[str], Intent], *,
         currency: str) -> Plan:
    """Read a message against the active request (see the module docstring); `parse`
    understands text, and prices are in `currency`."""
    follow = read_follow_up(text) if active is not None else None
    if active is None or follow is None:
        intent = parse(text)
        if active is not None and _same_person(intent, active):
            # What the message says about "her" is about the person on the table.
            said = replace(intent, recipient=active.intent.recipient)
            return Plan(intent=_merged(active, intent), said=said, refines=True,
                        exclude=set(active.cards))
        if active is not None and _only_changes(intent):
            return Plan(intent=_merged(active, intent), said=intent, refines=True,
                        exclude=set(active.cards))
        return Plan(intent=intent, said=intent)
    if follow.kind == FollowUpKind.PICK:
        position = follow.position if follow.position is not None else 0
        if not active.cards or not -len(active.cards) <= position < len(active.cards):
            return Plan(no_card=True)
        return Plan(pick=active.cards[position])
    change = parse(follow.rest) if follow.rest.strip() else None
    if follow.kind == FollowUpKind.REFINE and change is not None and \
            change.recipient is None and _NAMED_RE.search(text):
        # "e pra Ana?": someone new, by name, not the person on the table.
        fresh = parse(text)
        return Plan(intent=fresh, said=fresh)
    intent = _merged(active, change) if change is not None else replace(active.intent)
    if follow.kind == FollowUpKind.CHEAPER:
        if not active.prices:
            # The last answer showed nothing: there is nothing to go below, and lowering
            # the ceiling again would quote prices the shopper never saw.
            return Plan(intent=intent, said=change, refines=True, exclude=set(active.seen),
                        ran_out=True)
        # Strictly below the cheapest card shown: the same price again is not "cheaper".
        ceiling = min(active.prices)
        below = max(0, ceiling - 1)
        intent.budget = Budget(currency=currency, max=below, amount=below)
        return Plan(intent=intent, said=change, refines=True, exclude=set(active.cards),
                    lowered_to=ceiling)
    if follow.kind == FollowUpKind.PRICIER:
        if active.prices:
            floor = max(active.prices) + 1
            intent.budget = Budget(currency=currency, min=floor, amount=floor)
        return Plan(intent=intent, said=change, refines=True, exclude=set(active.cards))
    if follow.kind == FollowUpKind.MORE:
        return Plan(intent=intent, said=change, refines=True, exclude=set(active.seen),
                    ran_out=True)
    # OTHER and REFINE: the same or changed request, without the cards just shown.
    other = follow.kind == FollowUpKind.OTHER
    return Plan(intent=intent, said=change, refines=True,
                exclude=set(active.seen if other else active.cards), ran_out=other)


def _only_changes(intent: Intent) -> bool:
    """Whether a message only adjusts ("em azul", "sem roupa", "até 100", "not Apple") rather
    than asking for something of its own (a product, a person, an occasion, an interest)."""
    asks = (intent.recipient or intent.occasion or intent.product_types
            or intent.product_terms or intent.interests or intent.age is not None)
    adjusts = (intent.attributes or intent.exclusions or intent.budget or intent.brands
               or intent.avoid_brands or intent.stores or intent.avoid_stores)
    return bool(adjusts) and not asks


def _same_person(intent: Intent, active: ActiveRequest) -> bool:
    """"o que eu dou pra ela?", "un libro para él": a pronoun for the person of the active
    request (the same gender, or one not known), and no one else named."""
    person = active.intent
    return (intent.recipient is None and person.recipient is not None
            and person.recipient != "self" and intent.gender is not None
            and person.gender in (None, intent.gender) and intent.name is None
            and not _NAMED_RE.search(intent.text))


# "o que dou pra Ana?", "something for Sarah": a name after a word that introduces a person.
_NAMED_RE = re.compile(r"(?i:\b(?:pra|pro|para|for|to|a|al)\s+)(?:[Aa]\s+|[Oo]\s+)?"
                       r"[A-ZÁÉÍÓÚÂÊÔÃÕÇÑ][a-záéíóúâêôãõçñü]+")


def _merged(active: ActiveRequest, change: Intent) -> Intent:
    merged = merge(active.intent, change)
    merged.text = merged.text[-MAX_TEXT:]
    return merged
