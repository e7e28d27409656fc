"""One line on why a product fits, in the shopper's language, built only from product data.

Every fact in a reason comes from the merchant's data (tags, price, rating, category, brand)
or from what the shopper said (the budget); nothing is invented.
"""

from __future__ import annotations

from functools import lru_cache

from babel.numbers import format_decimal

from catalog.search import IndexedProduct, RankedProduct, SearchRequest
from catalog.text import fold
from core.i18n import N_, Translator
from core.markets import Market
from core.money import Money

MAX_FACTS = 3
STARS = 5.0  # a rating out of five is shown as stars: "4,7★ em 320 avaliações"

INTEREST_LABELS = {
    "gardening": N_("gardening"), "cooking": N_("cooking"), "baking": N_("baking"),
    "coffee": N_("coffee"), "tea": N_("tea"), "wine": N_("wine"),
    "barbecue": N_("barbecue"), "mate": N_("mate"), "reading": N_("reading"),
    "wellness": N_("wellness"), "beauty": N_("beauty"), "fitness": N_("fitness"),
    "running": N_("running"), "yoga": N_("yoga"), "football": N_("football"),
    "cycling": N_("cycling"), "outdoors": N_("the outdoors"), "travel": N_("travel"),
    "music": N_("music"), "tech": N_("technology"), "gaming": N_("video games"),
    "photography": N_("photography"), "art": N_("art"), "crafts": N_("crafts"),
    "fashion": N_("fashion"), "jewelry": N_("jewelry"), "home": N_("home decor"),
    "pets": N_("pets"), "games": N_("board games"), "learning": N_("learning"),
    "science": N_("science"), "building": N_("building toys"),
}

RECIPIENT_LABELS = {
    "mother": N_("mothers"), "father": N_("fathers"), "grandmother": N_("grandmothers"),
    "grandfather": N_("grandfathers"), "wife": N_("wives"), "husband": N_("husbands"),
    "partner": N_("couples"), "friend": N_("friends"), "sister": N_("sisters"),
    "brother": N_("brothers"), "child": N_("children"), "teen": N_("teenagers"),
    "baby": N_("babies"), "aunt": N_("aunts"), "uncle": N_("uncles"), "cousin": N_("cousins"),
    "colleague": N_("colleagues"), "self": N_("treating yourself"),
}

AGE_LABELS = {
    "0-2": N_("ages 0 to 2"), "3-5": N_("ages 3 to 5"), "6-8": N_("ages 6 to 8"),
    "9-12": N_("ages 9 to 12"), "13-17": N_("teenagers"), "adult": N_("adults"),
    "senior": N_("people over 60"),
}


def _tag_value(tags: list[str], family: str) -> str | None:
    for tag in tags:
        kind, _, value = tag.partition(":")
        if kind == family:
            return value
    return None


@lru_cache(maxsize=4096, typed=True)
def _decimal(value: float | int, pattern: str | None, locale: str) -> str:
    """Babel's `format_decimal`, remembered (a pure function of its arguments)."""
    return format_decimal(value, format=pattern, locale=locale)


def format_rating(product: IndexedProduct, market: Market, t: Translator) -> str | None:
    if product.rating_value is None or not product.rating_scale:
        return None
    value = _decimal(round(product.rating_value, 1), "0.0", market.locale)
    scale = _decimal(product.rating_scale, "0.#", market.locale)
    count = product.rating_count or 0
    if count and product.rating_scale == STARS:
        reviews = t.ngettext("{n} review", "{n} reviews", count).format(
            n=_decimal(count, None, market.locale))
        return t.gettext("{value}★ from {reviews}").format(value=value, reviews=reviews)
    if count:
        reviews = t.ngettext("{n} review", "{n} reviews", count).format(
            n=_decimal(count, None, market.locale))
        return t.gettext("rated {value} of {scale} ({reviews})").format(
            value=value, scale=scale, reviews=reviews)
    return t.gettext("rated {value} of {scale}").format(value=value, scale=scale)


def reason_for(ranked: RankedProduct, request: SearchRequest, market: Market,
               t: Translator) -> str:
    """The one-line reason shown on a card."""
    product = ranked.product
    facts: list[str] = []
    interest = _tag_value(ranked.matched_tags, "interest")
    recipient = _tag_value(ranked.matched_tags, "recipient")
    age = _tag_value(ranked.matched_tags, "age")
    if interest and recipient and recipient in RECIPIENT_LABELS and recipient != "self":
        facts.append(t.gettext("made for {recipients} who love {interest}").format(
            recipients=t.gettext(RECIPIENT_LABELS[recipient]),
            interest=t.gettext(INTEREST_LABELS.get(interest, interest))))
    elif interest:
        facts.append(t.gettext("for someone who loves {interest}").format(
            interest=t.gettext(INTEREST_LABELS.get(interest, interest))))
    elif recipient and recipient in RECIPIENT_LABELS:
        facts.append(t.gettext("a gift suited to {recipients}").format(
            recipients=t.gettext(RECIPIENT_LABELS[recipient])))
    elif age and age in AGE_LABELS:
        facts.append(t.gettext("suited to {ages}").format(ages=t.gettext(AGE_LABELS[age])))
    elif ranked.matched_terms and product.category_path:
        category = product.category_path[-1]
        if product.brand:
            facts.append(t.gettext("{category} by {brand}").format(category=category,
                                                                   brand=product.brand))
        else:
            facts.append(category)

    if product.brand and fold(product.brand) in {fold(b) for b in request.brands}:
        facts.append(t.gettext("{brand}, as you asked").format(brand=product.brand))
    rating = format_rating(product, market, t)
    if rating:
        facts.append(rating)
    if request.budget_max is not None:
        if facts:  # the card shows the price next to this line
            facts.append(t.gettext("within your budget"))
        else:
            facts.append(t.gettext("{price}, within your budget of {budget}").format(
                price=market.format_price(Money(product.price_amount, product.currency)),
                budget=market.format_price(Money(request.budget_max, request.currency))))
    if not facts and product.brand:
        facts.append(t.gettext("by {brand}").format(brand=product.brand))
    if not facts:
        facts.append(product.title)
    line = " · ".join(facts[:MAX_FACTS])
    return line[:1].upper() + line[1:]
