"""The inverted index over one market's products: what a query's words match, and how well.

BM25F-style field weights (title, brand, category and tags above description), per-language
normalisation through `catalog.text.stems`, synonym groups across languages from
`vocabulary.json`, and rapidfuzz typo tolerance for words the catalog does not contain.
Ranking (`catalog.ranking`) turns these text scores into the final order.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path

from rapidfuzz import fuzz, process

from catalog.models import CatalogProduct, Merchant
from catalog.policy import blocked_reason
from catalog.text import indexed_stems, stems

FIELD_WEIGHTS = {"title": 3.0, "brand": 2.5, "categories": 2.0, "tags": 2.0, "description": 1.0}
K1 = 1.2
B = 0.75
FUZZY_CUTOFF = 80
SYNONYM_WEIGHT = 0.5
# The letter and digit runs inside a model code ("AA352186") count for this share of a word.
PART_WEIGHT = 0.25
PARTS = "_parts"
ACCESSORY_LINKS = frozenset({"for", "para", "pra", "de", "compatible", "compativel", "with"})
VOCABULARY_PATH = Path(__file__).with_name("vocabulary.json")


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
    updated_at: float = 0.0  # when the merchant last sent its data, POSIX seconds
    sponsored: bool = False  # the merchant pays to have it shown (see catalog.sponsorship)
    health: float = 1.0  # its merchant's health, 1.0 = catalog syncing without errors

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


def product_ref(merchant_slug: str, product_id: str) -> str:
    return f"{merchant_slug}:{product_id}"


def _timestamp(moment: datetime | None) -> float:
    if moment is None:
        return 0.0
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def merchant_health_factor(merchant: Merchant) -> float:
    """How far a merchant's catalog can be trusted right now, from 1.0 down to 0.5.

    A feed whose last refresh failed, or that is more than three refresh intervals overdue,
    may be showing prices and stock that no longer hold.
    """
    factor = 1.0
    if merchant.last_error:
        factor -= 0.25
    if merchant.refresh_seconds and merchant.synced_at is not None:
        synced = merchant.synced_at if merchant.synced_at.tzinfo else \
            merchant.synced_at.replace(tzinfo=UTC)
        overdue = (datetime.now(UTC) - synced).total_seconds() / merchant.refresh_seconds
        if overdue > 3:
            factor -= 0.25
    return factor



@dataclass
class TextMatch:
    """What `CatalogIndex.match` found: candidates and their text scores."""

    candidates: set[int] = field(default_factory=set)
    scores: dict[int, float] = field(default_factory=dict)  # from required terms
    hits: dict[int, set[str]] = field(default_factory=dict)  # required terms matched
    soft_scores: dict[int, float] = field(default_factory=dict)
    soft_hits: dict[int, set[str]] = field(default_factory=dict)


class CatalogIndex:
    """An inverted index over one market's products."""

    def __init__(self, rows: list[tuple[CatalogProduct, Merchant]], *,
                 sponsored: frozenset[str] = frozenset()) -> None:
        """Index `rows`; `sponsored` holds the refs of products whose merchant boosts them."""
        self.products: list[IndexedProduct] = []
        field_stems: list[dict[str, list[str]]] = []
        accessories = vocabulary().accessories
        for row, merchant in rows:
            # The blocklist may have grown since this product was imported.
            if blocked_reason(merchant.market, categories=row.categories.split("|"),
                              tags=row.tags):
                continue
            free_tags = " ".join(t for t in row.tags if ":" not in t)
            texts = {"title": row.title, "brand": row.brand or "", "categories": row.categories,
                     "tags": free_tags, "description": row.description}
            fields: dict[str, list[str]] = {}
            for name, value in texts.items():
                fields[name], fields[name + PARTS] = indexed_stems(value)
            field_stems.append(fields)
            ref = product_ref(merchant.slug, row.product_id)
            self.products.append(IndexedProduct(
                ref=ref, product_id=row.product_id,
                merchant_slug=merchant.slug, merchant_name=merchant.name, title=row.title,
                brand=row.brand, categories=row.categories, description=row.description,
                url=row.url, image_url=row.image_url, price_amount=row.price_amount,
                currency=row.currency, in_stock=row.in_stock, rating_value=row.rating_value,
                rating_scale=row.rating_scale, rating_count=row.rating_count,
                tags=frozenset(t for t in row.tags if ":" in t),
                words=frozenset(fields["title"] + fields["brand"] + fields["categories"]),
                title_stems=tuple(fields["title"]),
                accessory=bool(accessories.intersection(fields["title"])),
                updated_at=_timestamp(row.updated_at), health=merchant_health_factor(merchant),
                sponsored=ref in sponsored,
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
        names = [f + suffix for f in FIELD_WEIGHTS for suffix in ("", PARTS)]
        avg = {f: (sum(len(d[f]) for d in field_stems) / len(field_stems) or 1.0)
               if field_stems else 1.0 for f in names}
        postings: dict[str, list[tuple[int, float]]] = defaultdict(list)
        for doc, fields in enumerate(field_stems):
            weighted: dict[str, float] = defaultdict(float)
            for name, words in fields.items():
                if not words:
                    continue
                base = name.removesuffix(PARTS)
                weight = FIELD_WEIGHTS[base] * (PART_WEIGHT if name != base else 1.0)
                norm = 1 - B + B * len(words) / avg[name]
                for word in words:
                    weighted[word] += weight / norm
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

    def match(self, terms: list[str], soft_terms: list[str], soft_weight: float,
              tags: list[str]) -> TextMatch:
        """The products a request's words and tags reach, with their text scores.

        Args:
            terms: stems the shopper asked for; when there are any, only products matching
                at least one of them are candidates.
            soft_terms: stems that raise a product's relevance (interests, attributes)
                without being required; weighted by `soft_weight`.
            tags: gift tags (`interest:gardening`...); with no `terms`, products carrying
                any of them are candidates too.

        Returns:
            Scores and matched query words per candidate (document number). With neither
            terms, soft terms nor tags reaching anything, every product is a candidate.
        """
        found = TextMatch()
        self.text_scores(terms, 1.0, found.scores, found.hits)
        self.text_scores(soft_terms, soft_weight, found.soft_scores, found.soft_hits)
        if terms:
            found.candidates = set(found.scores)
        else:
            wanted = set(tags)
            found.candidates = {i for i, p in enumerate(self.products) if p.tags & wanted}
            found.candidates |= set(found.soft_scores)
            if not found.candidates:
                found.candidates = set(range(len(self.products)))
        return found

    def get(self, ref: str) -> IndexedProduct | None:
        i = self.by_ref.get(ref)
        return self.products[i] if i is not None else None
