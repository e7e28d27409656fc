"""From an understood request to a search: which words are required, which only rank, and
what gift knowledge adds when the shopper named no product."""

from __future__ import annotations

import re
from dataclasses import replace

from bot.gift_knowledge import gift_knowledge
from bot.intent import Intent, attribute_words
from catalog.product_types import product_types
from catalog.ranking import RankedProduct, names_colour
from catalog.search import SearchRequest
from catalog.text import fold
from core.markets import Market

CHAT_CARDS = 3  # up to this many cards is a chat's answer: they must fit what was asked


def build_search_request(intent: Intent, market: Market, *, limit: int,
                         exclude: set[str] | None = None) -> SearchRequest:
    """What to search for an understood request: the words a product must contain and those
    that only rank, gift knowledge for an open request, budget, kinds, brands and exclusions
    in the catalog's terms."""
    budget = intent.budget if intent.budget and intent.budget.currency == market.currency \
        else None
    kinds = product_types()
    required, loose = product_words(intent)
    # A group the shopper named ("roupa") or ruled out ("sem eletrônicos") stands for all
    # its types; gift knowledge only speaks when the shopper named no product.
    hints = gift_knowledge().suggest(
        intent if required else replace(intent, product_terms=[]), market.locale)
    return SearchRequest(
        market=market.code, currency=market.currency, text=intent.text,
        terms=required, soft_terms=list(intent.interest_words) + loose,
        tags=intent.concept_tags(),
        budget_min=budget.min if budget else None,
        budget_max=budget.max if budget else None,
        # "around 40 bucks" names the price to aim at; a ceiling or a range does not.
        budget_target=budget.amount if budget and budget.min is not None
        and budget.max is not None and budget.min < (budget.amount or 0) < budget.max
        else None,
        exclude=set(exclude or ()), limit=limit,
        product_types=list(dict.fromkeys(
            t for name in _narrowest(intent.product_types)
            for t in kinds.expand(name) or [name])),
        suggested_types=hints.types, suggested_tags=hints.tags,
        attributes=list(dict.fromkeys(
            w for value in intent.attributes for w in attribute_words(value))),
        brands=list(intent.brands), avoid_brands=list(intent.avoid_brands),
        merchants=list(intent.stores), avoid_merchants=list(intent.avoid_stores),
        fit_to_ask=limit <= CHAT_CARDS,
        colours=sorted({fold(w) for value in intent.attributes if value.startswith("color:")
                        for w in attribute_words(value)}),
        stated_interests=[f"interest:{i}" for i in intent.interests
                          if f"interest:{i}" not in intent.remembered],
        excluded_terms=list(dict.fromkeys(
            # A kind the data does not know ("velas" from a language model) stands for
            # itself rather than being dropped.
            w for name in intent.exclusions for w in kinds.words(name) or [name])),
    )


def product_words(intent: Intent) -> tuple[list[str], list[str]]:
    """The shopper's leftover words split into those a product must contain and those that
    only make a product more relevant.

    In a gift request ("algo pro meu pai q toma mate todo dia", "a gift for my boss, something
    classy") the person, interests, occasion or age carry the request, and what is left is
    mostly talk; only words that name a kind of product, a brand asked for or a model number
    are required. A request with none of those is a product search ("nespresso vertuo",
    "windows 10"): every word is required.
    """
    terms = list(intent.product_terms)
    if not (intent.recipient or intent.interests or intent.occasion or intent.age is not None):
        return terms, []
    kinds = product_types()
    brand_words = {w for brand in intent.brands for w in re.findall(r"[a-z0-9]+", fold(brand))}
    required = [t for t in terms if kinds.find(t) or t in brand_words
                or any(ch.isdigit() for ch in t)]
    return required, [t for t in terms if t not in required]


def missing_colour(ranked: list[RankedProduct], request: SearchRequest,
                   intent: Intent) -> str | None:
    """The colour asked for, as the shopper wrote it, when no card names it: the reply then
    says so rather than pass other colours off as it (ranking prefers cards that do)."""
    if not request.colours or not ranked or any(
            names_colour(r.product.title, request.colours) for r in ranked):
        return None
    return names_colour(intent.text, request.colours) or request.colours[0]


def _narrowest(names: list[str]) -> list[str]:
    """Kinds named, without a group that also holds a type named ("um livro de literatura":
    books, not every kind of the literature group, e-readers included)."""
    kinds = product_types()
    named = set(names)
    return [n for n in names
            if not (kinds.is_group(n) and named & set(kinds.expand(n)) - {n})]
