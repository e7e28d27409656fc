"""Search and ranking over one market's catalogs.

An in-memory inverted index per market with BM25F-style field weights, typo tolerance with
rapidfuzz for words the catalog does not contain, the budget and stock as hard filters, the
gift tags (`recipient:`, `age:`, `interest:`, `occasion:`) and the rating as ranking signals.
The index is rebuilt when any merchant of the market changes its catalog.
"""

from __future__ import annotations

import json
import math
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from rapidfuzz import fuzz, process
from sqlalchemy.engine import Engine
from sqlmodel import Session

from catalog.models import CatalogProduct, Merchant
from catalog.policy import blocked_reason
from catalog.store import catalog_revision, products_for_market
from catalog.text import stems

FIELD_WEIGHTS = {"title": 3.0, "brand": 2.5, "categories": 2.0, "tags": 2.0, "description": 1.0}
K1 = 1.2
B = 0.75
TAG_WEIGHTS = {"recipient": 1.0, "age": 0.8, "interest": 1.5, "occasion": 0.5}
AGE_MISMATCH_PENALTY = 2.0
FUZZY_CUTOFF = 80
SOFT_TERM_WEIGHT = 0.6
SYNONYM_WEIGHT = 0.5
ACCESSORY_FACTOR = 0.55  # a query for a device ranks its accessories lower
ACCESSORY_LINKS = frozenset({"for", "para", "pra", "de", "compatible", "compativel", "with"})
VOCABULARY_PATH = Path(__file__).with_name("vocabulary.json")
DIVERSITY_PENALTY = 0.25


@dataclass(frozen=True)
class Vocabulary:
    """Stems of accessory words, and each synonym's other stems."""

    accessories: frozenset[str]
    synonyms: dict[str, tuple[str, ...]]


@lru_cache
def vocabulary() -> Vocabulary:
    raw = json.loads(VOCABULARY_PATH.read_text("utf-8"))
    accessories = frozenset(stem for word in raw["accessories"] for stem in stems(word)
                            if " " not in word)
    synonyms: dict[str, tuple[str, ...]] = {}
    for group in raw["synonyms"]:
        single = [stems(w)[0] for w in group if len(stems(w)) == 1]
        for word in single:
            synonyms[word] = tuple(other for other in single if other != word)
    return Vocabulary(accessories=accessories, synonyms=synonyms)


@dataclass(frozen=True)
class IndexedProduct:
    """What search needs of one product; a read-only snapshot of the catalog row."""

    ref: str  # "merchant-slug:product-id"
    product_id: str
    merchant_slug: str
    merchant_name: str
    title: str
    brand: str | None
    categories: str  # category paths joined by " | ", the merchant's own first
    description: str
    url: str | None
    image_url: str | None
    price_amount: int
    currency: str
    in_stock: bool
    rating_value: float | None
    rating_scale: float | None
    rating_count: int | None
    tags: frozenset[str]
    words: frozenset[str]  # stems of title, brand and categories, for explanations
    title_stems: tuple[str, ...] = ()
    accessory: bool = False  # its title has an accessory word (sleeve, case, toner...)

    def accessory_of(self, terms: set[str]) -> bool:
        """Whether the title names an accessory of what the terms name: "Laptop Sleeve"
        (the accessory after the thing), or "Capa para Notebook" and "Sleeve for iPad"
        (the accessory first, then a word like for / para / de, then the thing)."""
        if not self.accessory:
            return False
        accessories = vocabulary().accessories
        seen_term = pending = linked = False
        for word in self.title_stems:
            if word in terms:
                if pending and linked:
                    return True
                seen_term = True
            elif word in accessories:
                if seen_term:
                    return True
                pending, linked = True, False
            elif pending and word in ACCESSORY_LINKS:
                linked = True
        return False

    @property
    def category_path(self) -> list[str]:
        """The segments of the primary category ("Garden > Tools" -> ["Garden", "Tools"])."""
        primary = self.categories.split("|", 1)[0]
        return [s.strip() for s in primary.split(">") if s.strip()]


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


def product_ref(merchant_slug: str, product_id: str) -> str:
    return f"{merchant_slug}:{product_id}"


class CatalogIndex:
    """An inverted index over one market's products."""

    def __init__(self, rows: list[tuple[CatalogProduct, Merchant]]) -> None:
        self.products: list[IndexedProduct] = []
        field_stems: list[dict[str, list[str]]] = []
        accessories = vocabulary().accessories
        for row, merchant in rows:
            # The blocklist may have grown since this product was imported.
            if blocked_reason(merchant.market, categories=row.categories.split("|"),
                              tags=row.tags):
                continue
            free_tags = " ".join(t for t in row.tags if ":" not in t)
            fields = {
                "title": stems(row.title),
                "brand": stems(row.brand or ""),
                "categories": stems(row.categories),
                "tags": stems(free_tags),
                "description": stems(row.description),
            }
            field_stems.append(fields)
            self.products.append(IndexedProduct(
                ref=product_ref(merchant.slug, row.product_id), product_id=row.product_id,
                merchant_slug=merchant.slug, merchant_name=merchant.name, title=row.title,
                brand=row.brand, categories=row.categories, description=row.description,
                url=row.url, image_url=row.image_url, price_amount=row.price_amount,
                currency=row.currency, in_stock=row.in_stock, rating_value=row.rating_value,
                rating_scale=row.rating_scale, rating_count=row.rating_count,
                tags=frozenset(t for t in row.tags if ":" in t),
                words=frozenset(fields["title"] + fields["brand"] + fields["categories"]),
                title_stems=tuple(fields["title"]),
                accessory=bool(accessories.intersection(fields["title"])),
            ))
        self.by_ref = {p.ref: i for i, p in enumerate(self.products)}
        self.postings = self._build_postings(field_stems)
        self.vocabulary = list(self.postings)
        n = max(len(self.products), 1)
        self.idf = {t: math.log(1 + (n - len(p) + 0.5) / (len(p) + 0.5))
                    for t, p in self.postings.items()}
        self._fuzzy_cache: dict[str, list[tuple[str, float]]] = {}

    @staticmethod
    def _build_postings(
        field_stems: list[dict[str, list[str]]],
    ) -> dict[str, list[tuple[int, float]]]:
        avg = {f: (sum(len(d[f]) for d in field_stems) / len(field_stems) or 1.0)
               if field_stems else 1.0 for f in FIELD_WEIGHTS}
        postings: dict[str, list[tuple[int, float]]] = defaultdict(list)
        for doc, fields in enumerate(field_stems):
            weighted: dict[str, float] = defaultdict(float)
            for name, words in fields.items():
                if not words:
                    continue
                norm = 1 - B + B * len(words) / avg[name]
                for word in words:
                    weighted[word] += FIELD_WEIGHTS[name] / norm
            for word, wtf in weighted.items():
                postings[word].append((doc, wtf * (K1 + 1) / (wtf + K1)))
        return dict(postings)

    def expand(self, term: str) -> list[tuple[str, float]]:
        """The index words a query word stands for: itself or close spellings of it, and
        the words of its synonym group."""
        found = self._spelled(term)
        found += [(word, SYNONYM_WEIGHT) for word in vocabulary().synonyms.get(term, ())
                  if word in self.postings]
        return found

    def _spelled(self, term: str) -> list[tuple[str, float]]:
        if term in self.postings:
            return [(term, 1.0)]
        if len(term) < 4:
            return []
        cached = self._fuzzy_cache.get(term)
        if cached is None:
            matches = process.extract(term, self.vocabulary, scorer=fuzz.ratio,
                                      score_cutoff=FUZZY_CUTOFF, limit=3)
            cached = [(word, (score / 100) ** 2) for word, score, _ in matches]
            if len(self._fuzzy_cache) < 10000:
                self._fuzzy_cache[term] = cached
        return cached

    def text_scores(self, words: list[str], weight: float,
                    scores: dict[int, float], hits: dict[int, set[str]]) -> None:
        for word in dict.fromkeys(words):
            for variant, similarity in self.expand(word):
                idf = self.idf[variant] * similarity * weight
                for doc, sat in self.postings[variant]:
                    scores[doc] = scores.get(doc, 0.0) + idf * sat
                    hits.setdefault(doc, set()).add(word)

    def search(self, request: SearchRequest) -> list[RankedProduct]:
        """Rank in-stock products within budget for a request; best first."""
        terms = [s for t in request.terms for s in stems(t)]
        soft = [s for t in request.soft_terms for s in stems(t)]
        hard_scores: dict[int, float] = {}
        hard_hits: dict[int, set[str]] = {}
        soft_scores: dict[int, float] = {}
        soft_hits: dict[int, set[str]] = {}
        self.text_scores(terms, 1.0, hard_scores, hard_hits)
        self.text_scores(soft, SOFT_TERM_WEIGHT, soft_scores, soft_hits)

        if terms:
            candidates = set(hard_scores)
        else:
            wanted = set(request.tags)
            candidates = {i for i, p in enumerate(self.products) if p.tags & wanted}
            candidates |= set(soft_scores)
            if not candidates:
                candidates = set(range(len(self.products)))

        wanted_tags = list(dict.fromkeys(request.tags))
        wants_accessory = bool(vocabulary().accessories.intersection(terms))
        term_set = set(terms)
        wanted_age = {t for t in wanted_tags if t.startswith("age:")}
        max_text = max((hard_scores.get(i, 0.0) + soft_scores.get(i, 0.0) for i in candidates),
                       default=0.0) or 1.0
        ranked: list[RankedProduct] = []
        for i in candidates:
            product = self.products[i]
            if not self._eligible(product, request):
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

    @staticmethod
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

    def get(self, ref: str) -> IndexedProduct | None:
        i = self.by_ref.get(ref)
        return self.products[i] if i is not None else None


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


class CatalogSearch:
    """Search over every merchant of a market, with one index per market kept fresh."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._indexes: dict[str, tuple[tuple[int, int, int], CatalogIndex]] = {}
        self._lock = threading.Lock()

    def index(self, market: str) -> CatalogIndex:
        with Session(self._engine) as session:
            revision = catalog_revision(session=session, market=market)
            cached = self._indexes.get(market)
            if cached and cached[0] == revision:
                return cached[1]
            with self._lock:
                cached = self._indexes.get(market)
                if cached and cached[0] == revision:
                    return cached[1]
                index = CatalogIndex(products_for_market(session=session, market=market))
                self._indexes[market] = (revision, index)
                return index

    def search(self, request: SearchRequest) -> list[RankedProduct]:
        return self.index(request.market).search(request)
