"""Memory v0: what the shopper says about the people they buy for, kept per shopper.

"minha mãe tem 60 anos e adora jardinagem" stores (mother, age, 60) and
(mother, interest, gardening); a later "presente para minha mãe" uses both.
"""

from __future__ import annotations

from sqlmodel import Session, select

from bot.intent import Intent
from bot.models import MemoryFact

MAX_FACTS_PER_SUBJECT = 30


def learn(*, session: Session, user_key: str, intent: Intent) -> list[MemoryFact]:
    """Store the facts a message states about its recipient; returns the new ones."""
    if not intent.recipient or intent.recipient == "self":
        return []
    wanted: list[tuple[str, str]] = []
    if intent.age is not None:
        wanted.append(("age", str(intent.age)))
    wanted.extend(("interest", i) for i in intent.interests)
    if not wanted:
        return []
    existing = {(f.kind, f.value): f for f in facts_about(session=session, user_key=user_key,
                                                          subject=intent.recipient)}
    new: list[MemoryFact] = []
    for kind, value in wanted:
        if (kind, value) in existing:
            continue
        if kind == "age":
            # A person has one age: the newest statement replaces the old one.
            for (old_kind, _), fact in existing.items():
                if old_kind == "age":
                    session.delete(fact)
        fact = MemoryFact(user_key=user_key, subject=intent.recipient, kind=kind, value=value)
        session.add(fact)
        new.append(fact)
    return new


def facts_about(*, session: Session, user_key: str, subject: str) -> list[MemoryFact]:
    return list(session.exec(
        select(MemoryFact)
        .where(MemoryFact.user_key == user_key, MemoryFact.subject == subject)
        .order_by(MemoryFact.id.desc())  # type: ignore[union-attr]
        .limit(MAX_FACTS_PER_SUBJECT)
    ))


def recall(*, session: Session, user_key: str, intent: Intent) -> list[MemoryFact]:
    """Fill what the message leaves out about its recipient from memory; returns facts used."""
    if not intent.recipient:
        return []
    used: list[MemoryFact] = []
    for fact in facts_about(session=session, user_key=user_key, subject=intent.recipient):
        if fact.kind == "age" and intent.age is None:
            intent.age = int(fact.value)
            used.append(fact)
        elif fact.kind == "interest" and fact.value not in intent.interests:
            intent.interests.append(fact.value)
            used.append(fact)
    intent.remembered = [f"{f.kind}:{f.value}" for f in used]
    return used


def forget_all(*, session: Session, user_key: str) -> int:
    """Delete everything remembered about this shopper's recipients."""
    facts = list(session.exec(select(MemoryFact).where(MemoryFact.user_key == user_key)))
    for fact in facts:
        session.delete(fact)
    return len(facts)
