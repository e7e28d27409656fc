"""Ranking: from text relevance and what the shopper wants to the three cards shown.

"""

from __future__ import annotations

from dataclasses import dataclass, field

from catalog.index import CatalogIndex, IndexedProduct, vocabulary
from catalog.text import stems

TAG_WEIGHTS = {"recipient": 1.0, "age": 0.8, "interest": 1.5, "occasion": 0.5}
AGE_MISMATCH_PENALTY = 2.0
SOFT_TERM_WEIGHT = 0.6
ACCESSORY_FACTOR = 0.55  # a query for a device ranks its accessories lower
DIVERSITY_PENALTY = 0.25


@dataclass
class SearchRequest:
    """One search in one market; amounts are minor units of the market's currency."""

    market: str
    currency: str
    text: str = ""  # the shopper's words, for merchants that search on their own
    terms: list[str] = field(default_factory=list)
    soft_terms: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    budget_min: int | None = None
    budget_max: int | None = None
    exclude: set[str] = field(default_factory=set)
    penalise: set[str] = field(default_factory=set)
    limit: int = 3
    # What kind of product was asked for ("sneakers"): products of that kind rank first.
    product_types: list[str] = field(default_factory=list)
    # Kinds and tags gift knowledge suggests for an open request; they never override
    # `product_types` or `terms`, only fill in when the shopper named no product.
    suggested_types: list[str] = field(default_factory=list)
    suggested_tags: list[str] = field(default_factory=list)
    attributes: list[str] = field(default_factory=list)  # colour/size words, soft
    brands: list[str] = field(default_factory=list)  # asked for: ranked up
    avoid_brands: list[str] = field(default_factory=list)  # ruled out: filtered
    excluded_terms: list[str] = field(default_factory=list)  # "nada de perfume": filtered
    given: set[str] = field(default_factory=set)  # refs already given to this recipient


@dataclass
class RankedProduct:
    product: IndexedProduct
    score: float
    matched_terms: list[str]
    matched_tags: list[str]


def rank(index: CatalogIndex, request: SearchRequest) -> list[RankedProduct]:
    """Rank in-stock products within budget for a request; best first."""
    terms = [s for t in request.terms for s in stems(t)]
    soft = [s for t in request.soft_terms for s in stems(t)]
    hard_scores: dict[int, float] = {}
    hard_hits: dict[int, set[str]] = {}
    soft_scores: dict[int, float] = {}
    soft_hits: dict[int, set[str]] = {}
    index.text_scores(terms, 1.0, hard_scores, hard_hits)
    index.text_scores(soft, SOFT_TERM_WEIGHT, soft_scores, soft_hits)

    if terms:
        candidates = set(hard_scores)
    else:
        wanted = set(request.tags)
        candidates = {i for i, p in enumerate(index.products) if p.tags & wanted}
        candidates |= set(soft_scores)
        if not candidates:
            candidates = set(range(len(index.products)))

    wanted_tags = list(dict.fromkeys(request.tags))
    wants_accessory = bool(vocabulary().accessories.intersection(terms))
    term_set = set(terms)
    wanted_age = {t for t in wanted_tags if t.startswith("age:")}
    max_text = max((hard_scores.get(i, 0.0) + soft_scores.get(i, 0.0) for i in candidates),
                   default=0.0) or 1.0
    ranked: list[RankedProduct] = []
    for i in candidates:
        product = index.products[i]
        if not _eligible(product, request):
            continue
        text = (hard_scores.get(i, 0.0) + soft_scores.get(i, 0.0)) / max_text
        if terms:
            coverage = len(hard_hits.get(i, ())) / len(set(terms))
            text *= 0.5 + 0.5 * coverage
            if not wants_accessory and product.accessory_of(term_set):
                text *= ACCESSORY_FACTOR
        matched_tags = [t for t in wanted_tags if t in product.tags]
        tag_score = sum(TAG_WEIGHTS.get(t.split(":", 1)[0], 0.5) for t in matched_tags)
        product_ages = {t for t in product.tags if t.startswith("age:")}
        if wanted_age and product_ages and not (wanted_age & product_ages):
            tag_score -= AGE_MISMATCH_PENALTY
        score = 3.0 * text + tag_score + rating_signal(product)
        if product.ref in request.penalise:
            score -= 1.5
        matched = sorted(hard_hits.get(i, set()) | soft_hits.get(i, set()))
        ranked.append(RankedProduct(product, score, matched, matched_tags))
    ranked.sort(key=lambda r: (-r.score, r.product.price_amount, r.product.ref))
    return diversify(ranked, request.limit)


def _eligible(product: IndexedProduct, request: SearchRequest) -> bool:
    if not product.in_stock or product.currency != request.currency:
        return False
    if product.ref in request.exclude:
        return False
    if request.budget_max is not None and product.price_amount > request.budget_max:
        return False
    if request.budget_min is not None and product.price_amount < request.budget_min:
        return False
    return True

def rating_signal(product: IndexedProduct) -> float:
    """A small bonus for well-rated products, trusting ratings with more reviews more."""
    if product.rating_value is None or not product.rating_scale:
        return 0.0
    share = product.rating_value / product.rating_scale
    confidence = (product.rating_count or 0) / ((product.rating_count or 0) + 20)
    return confidence * (share - 0.7) * 2.0


def diversify(ranked: list[RankedProduct], limit: int, window: int = 50) -> list[RankedProduct]:
    """Pick `limit` results, discounting near-duplicates of what was already picked."""
    pool = [(r, _family(r.product)) for r in ranked[:max(window, limit)]]
    picked: list[RankedProduct] = []
    seen_titles: set[str] = set()
    family_count: dict[str, int] = {}
    while pool and len(picked) < limit:
        at = max(range(len(pool)), key=lambda i: pool[i][0].score - DIVERSITY_PENALTY * abs(
            pool[i][0].score) * (family_count.get(pool[i][1], 0) if pool[i][1] else 0))
        best, family = pool.pop(at)
        title_key = best.product.title.casefold()
        if title_key in seen_titles:
            continue
        seen_titles.add(title_key)
        family_count[family] = family_count.get(family, 0) + 1
        picked.append(best)
    return picked


def _family(product: IndexedProduct) -> str:
    path = product.category_path
    return path[0].casefold() if path else ""


