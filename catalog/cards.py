"""Product cards: what every channel shows for one recommended product."""

from __future__ import annotations

from functools import lru_cache

from pydantic import BaseModel, Field

from catalog.explain import reason_for
from catalog.search import RankedProduct, SearchRequest
from core.i18n import Translator
from core.markets import Market
from core.money import Money


class CardPrice(BaseModel):
    amount: int
    currency: str


class Button(BaseModel):
    label: str
    action: str


class Card(BaseModel):
    """One product as shown to a shopper (the public card contract)."""

    product_id: str
    merchant: str
    merchant_id: str
    title: str
    price: CardPrice
    price_text: str
    url: str | None
    image_url: str | None
    reason: str
    sponsored: bool = False
    label: str | None = None  # "Sponsored" in the shopper's language when `sponsored`
    rating: float | None = None
    rating_count: int | None = None
    position: int = 0
    score: float = 0.0
    buttons: list[Button] = Field(default_factory=list)

    @property
    def ref(self) -> str:
        return f"{self.merchant_id}:{self.product_id}"


@lru_cache(maxsize=4096, typed=True)
def price_text(market: Market, money: Money) -> str:
    """`market.format_price(money)`, remembered: Babel takes tens of microseconds a price,
    and a catalog shows the same few hundred prices over and over. The text depends only
    on the arguments, so it can never be stale."""
    return market.format_price(money)


def build_cards(ranked: list[RankedProduct], request: SearchRequest, market: Market,
                t: Translator) -> list[Card]:
    """Cards for ranked products, with their buy / more like this / not for me buttons."""
    cards = []
    for position, item in enumerate(ranked, start=1):
        p = item.product
        ref = p.ref
        cards.append(Card(
            product_id=p.product_id, merchant=p.merchant_name, merchant_id=p.merchant_slug,
            title=p.title, price=CardPrice(amount=p.price_amount, currency=p.currency),
            price_text=price_text(market, Money(p.price_amount, p.currency)),
            url=p.url, image_url=p.image_url, reason=reason_for(item, request, market, t),
            rating=p.rating_value, rating_count=p.rating_count, position=position,
            sponsored=item.sponsored,
            label=t.gettext("Sponsored") if item.sponsored else None,
            score=round(item.score, 4),
            buttons=[
                Button(label=t.gettext("Buy"), action=f"buy:{ref}"),
                Button(label=t.gettext("More like this"), action=f"more:{ref}"),
                Button(label=t.gettext("Not for me"), action=f"skip:{ref}"),
            ],
        ))
    return cards
