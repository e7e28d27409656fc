"""The card compiler every chat channel shares: a product card's caption, and a set of cards
as one numbered list when a channel cannot show them as pictures side by side.

Channels differ only in their limits (how long a caption, a message, a button's title); what
a card says, in what order, and how it shrinks to fit are decided here once.
"""

from __future__ import annotations

from babel.numbers import format_decimal

from catalog.cards import Button, Card

ELLIPSIS = "…"


def cut(text: str, limit: int) -> str:
    """`text` within `limit` characters, cut at a word boundary with an ellipsis."""
    text = text.strip()
    if len(text) <= limit:
        return text
    head = text[:limit - 1]
    space = head.rfind(" ")
    if space > limit // 2:
        head = head[:space]
    return head.rstrip(" ,.;:-") + ELLIPSIS


def split_text(text: str, limit: int) -> list[str]:
    """`text` in parts of at most `limit` characters, split at line or word boundaries."""
    parts: list[str] = []
    rest = text.strip()
    while len(rest) > limit:
        at = rest.rfind("\n", 0, limit + 1)
        if at <= limit // 2:
            at = rest.rfind(" ", 0, limit + 1)
        if at <= limit // 2:
            at = limit
        parts.append(rest[:at].rstrip())
        rest = rest[at:].lstrip()
    return [*parts, rest] if rest else parts


def rating_text(card: Card, locale: str) -> str | None:
    """"4.7★ (320)" in the market's number format."""
    if card.rating is None:
        return None
    text = format_decimal(card.rating, format="0.0", locale=locale) + "★"
    if card.rating_count:
        text += f" ({format_decimal(card.rating_count, locale=locale)})"
    return text


def card_caption(card: Card, locale: str, limit: int) -> str:
    """Label ("Sponsored"), title, price, rating and reason, one per line, within `limit`."""
    lines = [card.label, card.title, card.price_text, rating_text(card, locale), card.reason]
    return cut("\n".join(line for line in lines if line), limit)


def numbered(cards: list[Card], locale: str, limit: int) -> tuple[str, list[Button]]:
    """Cards as one numbered list within `limit` characters, and their buttons, each label
    led by its card's number ("2 · Buy"). Every card keeps its number, title and price; the
    reasons shrink first when the list is too long."""
    # Each card's share of the room; a title longer than half of it is cut.
    share = limit // max(1, len(cards)) - 4
    heads = [f"{i}. {cut(c.title, max(12, share // 2))}"
             + (f" ({c.label})" if c.label else "") + f"\n{c.price_text}"
             for i, c in enumerate(cards, 1)]
    room = max(0, (limit - sum(len(h) + 2 for h in heads)) // max(1, len(cards)))
    items = []
    for head, card in zip(heads, cards, strict=True):
        rating = rating_text(card, locale)
        detail = " · ".join(part for part in (rating, card.reason) if part)
        items.append(head + (f"\n{cut(detail, room)}" if detail and room > 10 else ""))
    text = cut("\n\n".join(items), limit)
    buttons = [Button(label=f"{i} · {b.label}", action=b.action)
               for i, card in enumerate(cards, 1) for b in card.buttons]
    return text, buttons
