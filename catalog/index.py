"""The inverted index over one market's products: what a query's words match, and how well.

BM25F-style field weights (title, brand, category and tags above description), per-language
normalisation through `catalog.text.stems`, synonym groups across languages from
`vocabulary.json`, and rapidfuzz typo tolerance for words the catalog does not contain.
Ranking (`catalog.ranking`) turns these text scores into the final order.

Built to hold a million products in well under 1.5 GB and answer in milliseconds:

- Products are kept as columns (packed UTF-8 strings, interned brands, categories, currencies
  and tag sets, arrays of numbers); `index.products[i]` is a small view over one row, made on
  demand. Descriptions are read to build postings and then dropped.
- Postings are two flat numpy arrays (document numbers and saturated term weights) with one
  offset per word. A query adds its words' weights into one dense score array, in the same
  order and with the same float operations as a per-document dictionary would, so scores are
  bit for bit those of the straightforward implementation.
- Rows are read once, as a stream: nothing holds a million ORM objects.
- A request that reaches more than `PRUNE_TO` products keeps only the best of them by text
  score (see `CatalogIndex.match`): ranking looks at every candidate in Python, and the
  product at text rank 2,001 of "usb" does not become a top card.
"""

from __future__ import annotations

import json
import math
from array import array
from bisect import bisect_left
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Generic, Protocol, TypeVar, overload

import numpy as np
from rapidfuzz import fuzz, process

from catalog.models import Merchant
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
# Each field and its model-code parts, in the order a product's words are read.
FIELDS = tuple(f + suffix for f in FIELD_WEIGHTS for suffix in ("", PARTS))
ACCESSORY_LINKS = frozenset({"for", "para", "pra", "de", "compatible", "compativel", "with"})
VOCABULARY_PATH = Path(__file__).with_name("vocabulary.json")
# Candidates kept when a request reaches more products than this (see `CatalogIndex.match`).
PRUNE_TO = 1000
# Above this many distinct words, a misspelt word is compared only with words that share its
# first letter (or its first two letters swapped, or one letter added or dropped in front):
# a scan of every word costs ~50 ms at a million words, one bucket a few.
FUZZY_FULL_SCAN = 200_000
# Reviews a rating needs to count fully when the open-request fallback orders products.
PRIOR_REVIEWS = 20
PRIOR_SHARE = 0.8
_NO_COUNT = -(2**63)  # rating_count None in its int64 column
BUILD_CHUNK = 32_768  # products whose postings are computed together
# Up to this many products, every product's view is made at build time and kept (about 1 kB
# each, with its ref and words worked out): ranking then reads plain attributes, as it did of
# the dataclasses this index used to keep. Above, views are made for the candidates only.
KEEP_VIEWS = 50_000


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


class CatalogRow(Protocol):
    """The columns of a catalog product the index reads: a `CatalogProduct`, or a row of
    `catalog.store.iter_products_for_market` that carries only these."""

    @property
    def product_id(self) -> str: ...
    @property
    def title(self) -> str: ...
    @property
    def description(self) -> str: ...
    @property
    def brand(self) -> str | None: ...
    @property
    def url(self) -> str | None: ...
    @property
    def image_url(self) -> str | None: ...
    @property
    def categories(self) -> str: ...
    @property
    def tags(self) -> list[str]: ...
    @property
    def price_amount(self) -> int: ...
    @property
    def currency(self) -> str: ...
    @property
    def in_stock(self) -> bool: ...
    @property
    def rating_value(self) -> float | None: ...
    @property
    def rating_scale(self) -> float | None: ...
    @property
    def rating_count(self) -> int | None: ...
    @property
    def updated_at(self) -> datetime | None: ...


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


class _Strings:
    """Strings packed into one UTF-8 buffer: about half the memory of a list of `str`."""

    __slots__ = ("_buffer", "_ends", "_missing")

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._ends = array("q")
        self._missing = bytearray()  # 1 where the value is None

    def append(self, value: str | None) -> None:
        if value is not None:
            self._buffer += value.encode("utf-8", "surrogatepass")
        self._missing.append(value is None)
        self._ends.append(len(self._buffer))

    def get(self, i: int) -> str | None:
        if self._missing[i]:
            return None
        return self._text(i)

    def _text(self, i: int) -> str:
        start = self._ends[i - 1] if i else 0
        return self._buffer[start:self._ends[i]].decode("utf-8", "surrogatepass")

    def text(self, i: int) -> str:
        """The value at `i`, for a column that never holds None."""
        return self._text(i)

    def nbytes(self) -> int:
        return len(self._buffer) + len(self._ends) * 8 + len(self._missing)


K = TypeVar("K", bound=Hashable)


class _Interned(Generic[K]):
    """A column of few distinct values (brands, categories, tag sets): one code per row."""

    __slots__ = ("_codes", "_seen", "values")

    def __init__(self) -> None:
        self.values: list[K] = []
        self._seen: dict[K, int] = {}
        self._codes = array("I")

    def append(self, value: K) -> int:
        """Add a row; returns its value's code (new codes are `len(values) - 1`)."""
        code = self._seen.get(value)
        if code is None:
            code = self._seen[value] = len(self.values)
            self.values.append(value)
        self._codes.append(code)
        return code

    def __getitem__(self, i: int) -> K:
        return self.values[self._codes[i]]

    def code(self, i: int) -> int:
        return self._codes[i]

    def codes(self) -> np.ndarray:
        return np.frombuffer(self._codes, dtype=np.uint32) if self._codes else \
            np.zeros(0, dtype=np.uint32)


@dataclass(frozen=True)
class _MerchantFacts:
    slug: str
    name: str
    health: float


class _Columns:
    """The products of one index, one column per attribute (see `IndexedProduct`)."""

    def __init__(self) -> None:
        self.product_ids = _Strings()
        self.titles = _Strings()
        self.urls = _Strings()
        self.image_urls = _Strings()
        self.brands: _Interned[str | None] = _Interned()
        self.categories: _Interned[str] = _Interned()
        self.currencies: _Interned[str] = _Interned()
        self.merchants: _Interned[_MerchantFacts] = _Interned()
        self.tag_sets: _Interned[frozenset[str]] = _Interned()
        self.prices = array("q")
        self.in_stock = bytearray()
        self.rating_values = array("d")  # NaN where None
        self.rating_scales = array("d")
        self.rating_counts = array("q")  # _NO_COUNT where None
        self.updated_at = array("d")
        self.accessory = bytearray()
        self.sponsored: set[int] = set()
        # Stems of the title (word ids, in order, repeats kept) and of each brand and
        # category path (shared by every product that has it).
        self.title_ends = array("q")
        self.title_words = array("I")
        self.brand_words: list[frozenset[str]] = []
        self.category_words: list[frozenset[str]] = []
        self.vocabulary: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.prices)


T = TypeVar("T")


class _Lazy(Generic[T]):
    """An attribute read from the columns on first use, then kept in the view's `__dict__`,
    where later reads find it as fast as any plain attribute."""

    def __init__(self, load: Callable[[IndexedProduct], T]) -> None:
        self._load = load
        self._name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name

    @overload
    def __get__(self, view: None, owner: type) -> _Lazy[T]: ...
    @overload
    def __get__(self, view: IndexedProduct, owner: type) -> T: ...

    def __get__(self, view: IndexedProduct | None, owner: type) -> T | _Lazy[T]:
        if view is None:
            return self
        value = view.__dict__[self._name] = self._load(view)
        return value


class IndexedProduct:
    """What search needs of one product: a read-only view of one row of an index.

    `CatalogIndex.products[i]` returns one: in a catalog of up to `KEEP_VIEWS` products, made
    once with every attribute filled in; in a larger one, a `_ProductView` made on demand,
    with numbers and flags copied in and texts and stems read from the columns on first use.
    A view keeps its index's product columns alive: hold on to it no longer than the answer
    it belongs to.
    """

    def __init__(self, columns: _Columns, doc: int) -> None:
        self._columns = columns
        self._doc = doc
        self.price_amount: int = columns.prices[doc]
        self.currency: str = columns.currencies[doc]
        self.in_stock: bool = columns.in_stock[doc] == 1
        # Gift tags ("interest:gardening"); free tags only feed the text index.
        self.tags: frozenset[str] = columns.tag_sets[doc]
        # Whether its title has an accessory word (sleeve, case, toner...).
        self.accessory: bool = columns.accessory[doc] == 1
        rating = columns.rating_values[doc]
        self.rating_value: float | None = None if rating != rating else rating
        scale = columns.rating_scales[doc]
        self.rating_scale: float | None = None if scale != scale else scale
        count = columns.rating_counts[doc]
        self.rating_count: int | None = None if count == _NO_COUNT else count
        # When the merchant last sent its data, POSIX seconds (0.0 when unknown).
        self.updated_at: float = columns.updated_at[doc]
        # The merchant pays to have it shown (see catalog.sponsorship).
        self.sponsored: bool = doc in columns.sponsored
        merchant = columns.merchants[doc]
        self.merchant_slug: str = merchant.slug
        self.merchant_name: str = merchant.name
        # Its merchant's health, 1.0 = catalog syncing without errors.
        self.health: float = merchant.health

    # Set by `_fill` on views kept for good, read from the columns on first use by `_Lazy`.
    ref: str  # "merchant-slug:product-id"
    product_id: str
    title: str
    brand: str | None
    categories: str  # category paths joined by " | ", the merchant's own first
    url: str | None
    image_url: str | None
    title_stems: tuple[str, ...]
    words: frozenset[str]  # stems of title, brand and categories, for kind matching

    def _fill(self) -> None:
        c, doc = self._columns, self._doc
        self.product_id = c.product_ids.text(doc)
        self.title = c.titles.text(doc)
        self.brand = c.brands[doc]
        self.categories = c.categories[doc]
        self.url = c.urls.get(doc)
        self.image_url = c.image_urls.get(doc)
        self.title_stems = self._title_stems()
        self.words = self._words()
        self.ref = self._ref()

    def _ref(self) -> str:
        return product_ref(self.merchant_slug, self._columns.product_ids.text(self._doc))

    def _title_stems(self) -> tuple[str, ...]:
        c, doc = self._columns, self._doc
        start = c.title_ends[doc - 1] if doc else 0
        return tuple(map(c.vocabulary.__getitem__, c.title_words[start:c.title_ends[doc]]))

    def _words(self) -> frozenset[str]:
        c, doc = self._columns, self._doc
        return frozenset(self.title_stems).union(c.brand_words[c.brands.code(doc)],
                                                  c.category_words[c.categories.code(doc)])

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

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, IndexedProduct):
            return NotImplemented
        return self._columns is other._columns and self._doc == other._doc

    def __hash__(self) -> int:
        return hash((id(self._columns), self._doc))

    def __repr__(self) -> str:
        return f"IndexedProduct({self.ref!r}, {self.title!r})"


class _ProductView(IndexedProduct):
    """An `IndexedProduct` made for one answer: texts and stems are read on first use.

    A separate class, because a descriptor on the class makes every later read of the
    attribute a little slower, and ranking reads `words` hundreds of times a product."""

    ref = _Lazy(lambda p: p._ref())  # type: ignore[assignment]
    product_id = _Lazy(lambda p: p._columns.product_ids.text(p._doc))  # type: ignore[assignment]
    title = _Lazy(lambda p: p._columns.titles.text(p._doc))  # type: ignore[assignment]
    brand = _Lazy(lambda p: p._columns.brands[p._doc])  # type: ignore[assignment]
    categories = _Lazy(lambda p: p._columns.categories[p._doc])  # type: ignore[assignment]
    url = _Lazy(lambda p: p._columns.urls.get(p._doc))  # type: ignore[assignment]
    image_url = _Lazy(lambda p: p._columns.image_urls.get(p._doc))  # type: ignore[assignment]
    title_stems = _Lazy(lambda p: p._title_stems())  # type: ignore[assignment]
    words = _Lazy(lambda p: p._words())  # type: ignore[assignment]


class IndexedProducts(Sequence[IndexedProduct]):
    """An index's products in document order; each item is a view made on demand, or kept
    (see `KEEP_VIEWS`)."""

    def __init__(self, columns: _Columns) -> None:
        self._columns = columns
        self._views: list[IndexedProduct] | None = None

    def keep_views(self) -> None:
        """Make every view now, with what ranking reads of each, and keep them."""
        views = [IndexedProduct(self._columns, d) for d in range(len(self._columns))]
        for view in views:
            view._fill()
        self._views = views

    def __len__(self) -> int:
        return len(self._columns)

    @overload
    def __getitem__(self, i: int) -> IndexedProduct: ...
    @overload
    def __getitem__(self, i: slice) -> list[IndexedProduct]: ...

    def __getitem__(self, i: int | slice) -> IndexedProduct | list[IndexedProduct]:
        if self._views is not None:
            return self._views[i]
        if isinstance(i, slice):
            return [_ProductView(self._columns, d) for d in range(*i.indices(len(self)))]
        n = len(self._columns)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError("product index out of range")
        return _ProductView(self._columns, i)

    def __iter__(self) -> Iterator[IndexedProduct]:
        if self._views is not None:
            return iter(self._views)
        columns = self._columns
        return (_ProductView(columns, d) for d in range(len(columns)))


class ProductRefs(Mapping[str, int]):
    """Ref -> document number, as a sorted array of ref hashes instead of a dict of strings
    (16 bytes a product instead of about 150). Hashes are checked against the product."""

    def __init__(self, products: IndexedProducts, hashes: array[int]) -> None:
        self._products = products
        order = np.argsort(np.frombuffer(hashes, dtype=np.int64), kind="stable")
        self._hashes = array("q", np.frombuffer(hashes, dtype=np.int64)[order].tobytes())
        self._docs = array("I", order.astype(np.uint32).tobytes())

    def __getitem__(self, ref: str) -> int:
        h = hash(ref)
        at = bisect_left(self._hashes, h)
        found = None
        while at < len(self._hashes) and self._hashes[at] == h:
            doc = self._docs[at]
            if self._products[doc].ref == ref:
                found = doc  # the last product with a ref wins, as in a dict built in order
            at += 1
        if found is None:
            raise KeyError(ref)
        return found

    def __iter__(self) -> Iterator[str]:
        return (p.ref for p in self._products)

    def __len__(self) -> int:
        return len(self._products)


@dataclass
class TextMatch:
    """What `CatalogIndex.match` found: candidates and their text scores.

    The dictionaries hold the candidates only (soft scores of products that are not
    candidates are left out). Products that matched the same words share one frozenset.
    """

    candidates: set[int] = field(default_factory=set)
    scores: dict[int, float] = field(default_factory=dict)  # from required terms
    hits: dict[int, frozenset[str]] = field(default_factory=dict)  # required terms matched
    soft_scores: dict[int, float] = field(default_factory=dict)
    soft_hits: dict[int, frozenset[str]] = field(default_factory=dict)


@dataclass
class _Reach:
    """The products some query words reach: a score per product and, per product, one bit
    for each distinct word matched (64 words per array)."""

    words: list[str]
    scores: np.ndarray | None = None
    bits: list[np.ndarray] = field(default_factory=list)

    def reached(self, n: int) -> np.ndarray:
        """Whether each of the `n` products was reached by any word."""
        if not self.bits:
            return np.zeros(n, dtype=bool)
        mask = self.bits[0] != 0
        for more in self.bits[1:]:
            mask |= more != 0
        return mask

    def hit_counts(self, docs: np.ndarray) -> np.ndarray:
        counts = np.zeros(len(docs), dtype=np.int64)
        for bits in self.bits:
            counts += np.bitwise_count(bits[docs])
        return counts

    def matched(self, docs: np.ndarray) -> tuple[dict[int, float], dict[int, frozenset[str]]]:
        """The scores and matched words of those of `docs` that some word reached."""
        if self.scores is None:
            return {}, {}
        if len(self.bits) == 1:
            keys: list = self.bits[0][docs].tolist()
        else:
            keys = list(zip(*(bits[docs].tolist() for bits in self.bits), strict=True))
        decoded = {key: self._words_of(key) for key in set(keys)}
        reached = [(doc, decoded[key]) for doc, key in zip(docs.tolist(), keys, strict=True)
                   if decoded[key]]
        touched = [doc for doc, _ in reached]
        scores = dict(zip(touched, self.scores[touched].tolist(), strict=True))
        return scores, dict(reached)

    def _words_of(self, key: int | tuple[int, ...]) -> frozenset[str]:
        blocks = key if isinstance(key, tuple) else (key,)
        # Bit arrays exist only up to the last word that reached something: words past them
        # matched nothing.
        return frozenset(w for j, w in enumerate(self.words[:64 * len(blocks)])
                         if blocks[j >> 6] >> (j & 63) & 1)


def _best(key: np.ndarray, prices: np.ndarray, count: int) -> np.ndarray:
    """Which `count` of the entries have the highest key; among equal keys the cheapest,
    then the first, as ranking orders equal scores. Linear time: no full sort."""
    bar = np.partition(key, len(key) - count)[len(key) - count]
    chosen = key > bar
    tied = np.flatnonzero(key == bar)
    room = count - int(chosen.sum())
    if len(tied) > room:
        price = prices[tied]
        price_bar = np.partition(price, room - 1)[room - 1]
        cheaper = tied[price < price_bar]
        tied = np.concatenate([cheaper, tied[price == price_bar][:room - len(cheaper)]])
    chosen[tied] = True
    return chosen


def _bit_type(words: int) -> type[np.unsignedinteger]:
    """The narrowest unsigned type with a bit per word (64 words per array at most)."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        if words <= np.iinfo(dtype).bits:
            return dtype
    return np.uint64


class _WordIds(dict[str, int]):
    """Word -> number, numbering a word the first time it is looked up."""

    def __missing__(self, word: str) -> int:
        number = self[word] = len(self)
        return number


@dataclass
class _Forward:
    """What reading the rows leaves for the postings build: every product's word numbers,
    field after field, and how many words each field has (`len(FIELDS)` per product)."""

    tokens: array[int] = field(default_factory=lambda: array("I"))
    lengths: array[int] = field(default_factory=lambda: array("I"))


class CatalogIndex:
    """An inverted index over one market's products."""

    def __init__(self, rows: Iterable[tuple[CatalogRow, Merchant]], *,
                 sponsored: frozenset[str] = frozenset(), prune_to: int = PRUNE_TO,
                 fuzzy_full_scan: int = FUZZY_FULL_SCAN, keep_views: int = KEEP_VIEWS) -> None:
        """Index `rows` (read once, so a stream from the database does); `sponsored` holds
        the refs of products whose merchant boosts them; `prune_to` is how many candidates a
        request keeps at most (see `match`); above `fuzzy_full_scan` distinct words, typo
        tolerance compares a word with one letter bucket of them (see `FUZZY_FULL_SCAN`); up
        to `keep_views` products, their views are made once and kept (see `KEEP_VIEWS`)."""
        self.prune_to = prune_to
        self.fuzzy_full_scan = fuzzy_full_scan
        columns = self._columns = _Columns()
        self.products = IndexedProducts(columns)
        word_ids = _WordIds()
        forward = _Forward()
        ref_hashes = array("q")
        self._read(rows, sponsored, word_ids, forward, ref_hashes)
        # Tuples, not lists: once the garbage collector finds they hold only strings it stops
        # visiting them, where a list of a million words cost every full collection ~100 ms.
        columns.vocabulary = self.vocabulary = tuple(word_ids)
        # A plain dict of strings: the collector untracks it, as it does not a subclass.
        self._word_ids: dict[str, int] = dict(word_ids)
        del word_ids
        self.by_ref = ProductRefs(self.products, ref_hashes)
        self._build_postings(forward)
        self._build_tags()
        if len(columns) <= keep_views:
            self.products.keep_views()
        self._fuzzy_cache: dict[str, list[tuple[str, float]]] = {}
        # (letter position, letter) -> the words with that letter there, and their numbers.
        self._fuzzy_buckets: dict[tuple[int, str], tuple[tuple[str, ...], array[int]]] | None \
            = None
        self._prior: np.ndarray | None = None

    def _read(self, rows: Iterable[tuple[CatalogRow, Merchant]], sponsored: frozenset[str],
              word_ids: _WordIds, forward: _Forward, ref_hashes: array[int]) -> None:
        c = self._columns
        accessories = vocabulary().accessories
        blocked: dict[tuple[str, str, tuple[str, ...]], bool] = {}
        # By identity; the merchant is kept with its facts so that its id is not reused.
        merchants: dict[int, tuple[Merchant, _MerchantFacts]] = {}
        brand_codes = category_codes = 0
        number = word_ids.__getitem__
        tokens, lengths = forward.tokens, forward.lengths
        for row, merchant in rows:
            # The blocklist may have grown since this product was imported.
            key = (merchant.market, row.categories, tuple(row.tags))
            if key not in blocked:
                blocked[key] = blocked_reason(merchant.market, categories=row.categories
                                              .split("|"), tags=row.tags) is not None
            if blocked[key]:
                continue
            doc = len(c)
            known = merchants.get(id(merchant))
            if known is None:
                known = merchants[id(merchant)] = (merchant, _MerchantFacts(
                    merchant.slug, merchant.name, merchant_health_factor(merchant)))
            facts = known[1]
            free_tags = " ".join(t for t in row.tags if ":" not in t)
            title, title_parts = indexed_stems(row.title)
            title_ids = list(map(number, title))
            tokens.extend(title_ids)
            tokens.extend(map(number, title_parts))
            field_lengths = [len(title), len(title_parts)]
            for name, value in (("brand", row.brand or ""), ("categories", row.categories),
                                ("tags", free_tags), ("description", row.description)):
                words, parts = indexed_stems(value)
                tokens.extend(map(number, words))
                tokens.extend(map(number, parts))
                field_lengths += (len(words), len(parts))
                if name == "brand" and c.brands.append(row.brand) == brand_codes:
                    brand_codes += 1
                    c.brand_words.append(frozenset(words))
                elif name == "categories" and c.categories.append(row.categories) \
                        == category_codes:
                    category_codes += 1
                    c.category_words.append(frozenset(words))
            lengths.extend(field_lengths)
            ref = product_ref(facts.slug, row.product_id)
            ref_hashes.append(hash(ref))
            c.product_ids.append(row.product_id)
            c.titles.append(row.title)
            c.urls.append(row.url)
            c.image_urls.append(row.image_url)
            c.currencies.append(row.currency)
            c.merchants.append(facts)
            c.tag_sets.append(frozenset(t for t in row.tags if ":" in t))
            c.prices.append(row.price_amount)
            c.in_stock.append(bool(row.in_stock))
            c.rating_values.append(math.nan if row.rating_value is None else row.rating_value)
            c.rating_scales.append(math.nan if row.rating_scale is None else row.rating_scale)
            c.rating_counts.append(_NO_COUNT if row.rating_count is None else row.rating_count)
            c.updated_at.append(_timestamp(row.updated_at))
            c.accessory.append(bool(accessories.intersection(title)))
            c.title_words.extend(title_ids)
            c.title_ends.append(len(c.title_words))
            if ref in sponsored:
                c.sponsored.add(doc)

    def _build_postings(self, forward: _Forward) -> None:
        """Saturated BM25F weights per (word, product), computed a chunk of products at a
        time with the float operations, in the order, of summing a dictionary per product.

        Two passes over the chunks: the first counts each word's products, the second writes
        them in place, so that no more than one chunk's worth exists twice.
        """
        n = len(self._columns)
        n_words = len(self.vocabulary)
        per_field = np.frombuffer(forward.lengths, dtype=np.uint32).reshape(n, len(FIELDS))
        averages = np.array([(int(per_field[:, f].sum()) / n or 1.0) if n else 1.0
                             for f in range(len(FIELDS))])
        weights = np.array([FIELD_WEIGHTS[name.removesuffix(PARTS)]
                            * (PART_WEIGHT if name.endswith(PARTS) else 1.0)
                            for name in FIELDS])
        token_ends = np.cumsum(per_field.sum(axis=1, dtype=np.int64))
        tokens = np.frombuffer(forward.tokens, dtype=np.uint32)

        def chunks() -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
            """(first product, the chunk's (word, product) pairs as word * span + product,
            and for each token the number of its pair)."""
            for first in range(0, n, BUILD_CHUNK):
                last = min(first + BUILD_CHUNK, n)
                span = last - first
                counts = per_field[first:last].astype(np.int64)
                lo = int(token_ends[first - 1]) if first else 0
                words = tokens[lo:int(token_ends[last - 1])].astype(np.int64)
                docs = np.repeat(np.arange(span), counts.sum(axis=1))
                pairs, pair_of = np.unique(words * span + docs, return_inverse=True)
                yield first, pairs, pair_of

        counts = np.zeros(n_words, dtype=np.int64)
        for first, pairs, _ in chunks():
            span = min(BUILD_CHUNK, n - first)
            counts += np.bincount(pairs // span, minlength=n_words)
        starts = np.zeros(n_words + 1, dtype=np.int64)
        np.cumsum(counts, out=starts[1:])
        self._post_docs = np.empty(int(starts[-1]), dtype=np.uint32)
        self._post_weights = np.empty(int(starts[-1]), dtype=np.float64)
        cursor = starts[:-1].copy()
        field_of = np.tile(np.arange(len(FIELDS)), BUILD_CHUNK)
        for first, pairs, pair_of in chunks():
            last = min(first + BUILD_CHUNK, n)
            span = last - first
            counts_here = per_field[first:last].astype(np.int64)
            norms = (1 - B) + B * counts_here.astype(np.float64) / averages
            flat = counts_here.ravel()
            contribution = np.repeat(weights[field_of[:flat.size]], flat) \
                / np.repeat(norms.ravel(), flat)
            weighted = np.bincount(pair_of, weights=contribution)
            saturated = weighted * (K1 + 1) / (weighted + K1)
            word = pairs // span  # pairs are sorted: by word, then product
            first_of_word = np.flatnonzero(np.r_[True, word[1:] != word[:-1]])
            group_sizes = np.diff(np.r_[first_of_word, len(word)])
            at = cursor[word] + np.arange(len(word)) - np.repeat(first_of_word, group_sizes)
            self._post_docs[at] = pairs % span + first
            self._post_weights[at] = saturated
            cursor[word[first_of_word]] += group_sizes
        forward.tokens, forward.lengths = array("I"), array("I")  # freed on return
        self._post_starts = starts
        size = max(n, 1)
        idf_of = {df: math.log(1 + (size - df + 0.5) / (df + 0.5))
                  for df in np.unique(counts).tolist()}
        self._idf = array("d", [idf_of[df] for df in counts.tolist()])

    def _build_tags(self) -> None:
        codes = self._columns.tag_sets.codes()
        by_tag: dict[str, list[int]] = {}
        for code, tags in enumerate(self._columns.tag_sets.values):
            for tag in tags:
                by_tag.setdefault(tag, []).append(code)
        self._tag_docs = {tag: np.flatnonzero(np.isin(codes, sets))
                          for tag, sets in by_tag.items()}

    def tag_sums(self, docs: np.ndarray, weights: Mapping[str, float]) -> np.ndarray:
        """For each product of `docs` (ascending), the sum of `weights` of the tags it carries.

        One vectorised pass per tag, so ranking can bound each candidate's score by its own
        tags rather than by every tag the request names."""
        total = np.zeros(len(docs))
        for tag, weight in weights.items():
            carriers = self._tag_docs.get(tag)
            if carriers is not None and weight:
                total += weight * np.isin(docs, carriers, assume_unique=True)
        return total

    def postings(self, word: str) -> tuple[np.ndarray, np.ndarray]:
        """The products containing a stem (ascending) and its saturated weight in each."""
        at = self._word_ids.get(word)
        if at is None:
            return np.zeros(0, dtype=np.uint32), np.zeros(0)
        lo, hi = self._post_starts[at], self._post_starts[at + 1]
        return self._post_docs[lo:hi], self._post_weights[lo:hi]

    def idf(self, word: str) -> float:
        return self._idf[self._word_ids[word]]

    def expand(self, term: str) -> list[tuple[str, float]]:
        """The index words a query word stands for: itself or close spellings of it, and
        the words of its synonym group."""
        # A new list: `_spelled` hands out its cached one, which must never grow.
        synonyms = vocabulary().synonyms.get(term, ())
        return self._spelled(term) + [(word, SYNONYM_WEIGHT) for word in synonyms
                                      if word in self._word_ids]

    def _spelled(self, term: str) -> list[tuple[str, float]]:
        if term in self._word_ids:
            return [(term, 1.0)]
        if len(term) < 4:
            return []
        cached = self._fuzzy_cache.get(term)
        if cached is None:
            cached = [(word, (score / 100) ** 2) for word, score in self._close_words(term)]
            if len(self._fuzzy_cache) < 10000:
                self._fuzzy_cache[term] = cached
        return cached

    def _close_words(self, term: str) -> list[tuple[str, float]]:
        """The three words closest to `term` (rapidfuzz ratio >= FUZZY_CUTOFF), best first,
        ties in vocabulary order. In a large vocabulary, only words whose first letter is
        the term's first or second letter, or whose second letter is the term's first."""
        if len(self.vocabulary) <= self.fuzzy_full_scan:
            return [(w, s) for w, s, _ in process.extract(
                term, self.vocabulary, scorer=fuzz.ratio, score_cutoff=FUZZY_CUTOFF, limit=3)]
        if self._fuzzy_buckets is None:
            buckets: dict[tuple[int, str], tuple[list[str], array[int]]] = {}
            for i, word in enumerate(self.vocabulary):
                for key in ((0, word[0]), (1, word[1:2])):
                    bucket = buckets.get(key)
                    if bucket is None:
                        bucket = buckets[key] = ([], array("I"))
                    bucket[0].append(word)
                    bucket[1].append(i)
            self._fuzzy_buckets = {key: (tuple(words), ids)
                                   for key, (words, ids) in buckets.items()}
        found: dict[int, tuple[str, float]] = {}
        for key in {(0, term[0]), (0, term[1]), (1, term[0])}:
            words, ids = self._fuzzy_buckets.get(key, ((), array("I")))
            for word, score, at in process.extract(term, words, scorer=fuzz.ratio,
                                                   score_cutoff=FUZZY_CUTOFF, limit=3):
                found[ids[at]] = (word, score)
        return [close for _, close in sorted(found.items(),
                                             key=lambda item: (-item[1][1], item[0]))[:3]]

    def _reach(self, words: list[str], weight: float) -> _Reach:
        """Add up the weights of `words` (and their spellings and synonyms) per product."""
        reach = _Reach(list(dict.fromkeys(words)))
        n = len(self._columns)
        for j, word in enumerate(reach.words):
            for variant, similarity in self.expand(word):
                at = self._word_ids[variant]
                idf = self._idf[at] * similarity * weight
                lo, hi = self._post_starts[at], self._post_starts[at + 1]
                docs = self._post_docs[lo:hi]
                if reach.scores is None:
                    reach.scores = np.zeros(n)
                while len(reach.bits) <= j >> 6:
                    reach.bits.append(np.zeros(n, dtype=_bit_type(len(reach.words))))
                # Each word's products are distinct, so += adds once per product.
                reach.scores[docs] += idf * self._post_weights[lo:hi]
                bits = reach.bits[j >> 6]
                bits[docs] |= bits.dtype.type(1 << (j & 63))
        return reach

    def match(self, terms: list[str], soft_terms: list[str], soft_weight: float,
              tags: list[str], *, currency: str | None = None, budget_min: int | None = None,
              budget_max: int | None = None) -> TextMatch:
        """The products a request's words and tags reach, with their text scores.

        Args:
            terms: stems the shopper asked for; when there are any, only products matching
                at least one of them are candidates.
            soft_terms: stems that raise a product's relevance (interests, attributes)
                without being required; weighted by `soft_weight`.
            tags: gift tags (`interest:gardening`...); with no `terms`, products carrying
                any of them are candidates too.
            currency, budget_min, budget_max: the request's hard filters, if the caller
                wants pruning (below) to keep only products that can pass them.

        Returns:
            Scores and matched query words per candidate (document number). With neither
            terms, soft terms nor tags reaching anything, every product is a candidate.

            When there are more than `prune_to` candidates, only `prune_to` are kept, among
            those in stock (and within the currency and budget, when given): with terms, the
            best by text score times coverage (0.5 + 0.5 x share of the terms matched), as
            ranking weighs them; without, those carrying most of the tags, then the best soft
            score, then (nothing reached) the best rating shrunk towards 0.8 of the scale by
            20 reviews. Ties go to the cheaper product, then the earlier one, as ranking
            orders equal scores. The candidate with the best text score is always kept, so
            that relevance shares stay those of the full set.
        """
        found = TextMatch()
        required = self._reach(terms, 1.0)
        soft = self._reach(soft_terms, soft_weight)
        n = len(self._columns)
        if terms:
            reached = np.flatnonzero(required.reached(n))
        else:
            mask = soft.reached(n)
            for tag in tags:
                if tag in self._tag_docs:
                    mask[self._tag_docs[tag]] = True
            reached = np.flatnonzero(mask)
            if not len(reached):
                reached = np.arange(n)
        if len(reached) > self.prune_to:
            reached = self._prune(reached, required, soft, tags, currency=currency,
                                  budget_min=budget_min, budget_max=budget_max)
        found.candidates = set(reached.tolist())
        found.scores, found.hits = required.matched(reached)
        found.soft_scores, found.soft_hits = soft.matched(reached)
        return found

    def _prune(self, reached: np.ndarray, required: _Reach, soft: _Reach, tags: list[str], *,
               currency: str | None, budget_min: int | None,
               budget_max: int | None) -> np.ndarray:
        """The `prune_to` most promising of `reached` (see `match`), ascending."""
        text = np.zeros(len(reached))
        if required.scores is not None:
            text += required.scores[reached]
        if soft.scores is not None:
            text += soft.scores[reached]
        best = int(np.argmax(text))
        if required.words:
            key = text * (0.5 + 0.5 * required.hit_counts(reached) / len(required.words))
        else:
            key = np.zeros(len(reached))
            for tag in dict.fromkeys(tags):
                if tag in self._tag_docs:
                    carries = np.zeros(len(self._columns), dtype=bool)
                    carries[self._tag_docs[tag]] = True
                    key += carries[reached]
            if soft.scores is not None and text.max() > 0:
                key += soft.scores[reached] / text.max()
            if not key.any():
                key = self.prior()[reached]
        c = self._columns
        keep = np.frombuffer(c.in_stock, dtype=np.uint8)[reached] != 0
        if currency is not None:
            codes = [code for code, value in enumerate(c.currencies.values) if value == currency]
            keep &= np.isin(c.currencies.codes()[reached], codes)
        prices = np.frombuffer(c.prices, dtype=np.int64)[reached]
        if budget_max is not None:
            keep &= prices <= budget_max
        if budget_min is not None:
            keep &= prices >= budget_min
        pool = reached[keep]
        if len(pool) > self.prune_to:
            pool = pool[_best(key[keep], prices[keep], self.prune_to)]
        if text[best] > 0:
            pool = np.union1d(pool, reached[best:best + 1])
        return pool

    def prior(self) -> np.ndarray:
        """Each product's rating share shrunk towards 0.8 by 20 reviews (0.8 when unrated):
        the order of the open-request fallback when it must be cut."""
        if self._prior is None:
            c = self._columns
            values = np.frombuffer(c.rating_values, dtype=np.float64)
            scales = np.frombuffer(c.rating_scales, dtype=np.float64)
            counts = np.frombuffer(c.rating_counts, dtype=np.int64)
            rated = ~np.isnan(values) & (np.nan_to_num(scales) > 0)
            share = np.where(rated, np.clip(np.nan_to_num(values) / np.where(
                rated, scales, 1.0), 0.0, 1.0), PRIOR_SHARE)
            n = np.where(rated & (counts > 0), counts, 0).astype(np.float64)
            self._prior = (PRIOR_REVIEWS * PRIOR_SHARE + n * share) / (PRIOR_REVIEWS + n)
        return self._prior

    @property
    def has_sponsored(self) -> bool:
        """Whether any product of this index is sponsored."""
        return bool(self._columns.sponsored)

    def get(self, ref: str) -> IndexedProduct | None:
        i = self.by_ref.get(ref)
        return self.products[i] if i is not None else None

    def memory(self) -> dict[str, int]:
        """Bytes held by the largest parts of the index (an estimate: Python objects in the
        vocabulary and interned values are left out)."""
        c = self._columns
        return {
            "postings": self._post_docs.nbytes + self._post_weights.nbytes
            + self._post_starts.nbytes,
            "strings": sum(s.nbytes() for s in (c.product_ids, c.titles, c.urls, c.image_urls)),
            "numbers": sum(len(a) * a.itemsize for a in (
                c.prices, c.rating_values, c.rating_scales, c.rating_counts, c.updated_at,
                c.title_ends, c.title_words)) + len(c.in_stock) + len(c.accessory),
            "vocabulary_words": len(self.vocabulary),
        }
