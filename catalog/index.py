"""The inverted index over one market's products: what a query's words match, and how well.

BM25F-style field weights (title, brand, category and tags above description), per-language
normalisation through `catalog.text.stems`, synonym groups across languages from
`vocabulary.json`, and rapidfuzz typo tolerance for words the catalog does not contain.
Ranking (`catalog.ranking`) turns these text scores into the final order.

Built to hold a million products in well under 1.5 GB and answer in milliseconds:

- Products are kept as columns (`catalog.columns`: packed UTF-8 strings, interned brands,
  categories, currencies and tag sets, arrays of numbers); `index.products[i]` is a small view
  over one row, made on demand. Descriptions are read to build postings and then dropped.
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

import math
from array import array
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np
from rapidfuzz import fuzz, process

from catalog.columns import (
    ACCESSORY_AFTER_NAME,
    ACCESSORY_IN_NAME,
    KEEP_VIEWS,
    NO_COUNT,
    CatalogRow,
    IndexedProduct,
    IndexedProducts,
    MerchantFacts,
    ProductColumns,
    ProductRefs,
    merchant_health_factor,
    product_ref,
    timestamp_of,
)
from catalog.models import Merchant
from catalog.policy import blocked_reason
from catalog.product_types import product_types
from catalog.text import indexed_stems, stems
from catalog.titles import first_spec_words, split_specs
from catalog.vocabulary import vocabulary

# "specs" is the end of a title that runs on into specifications (`catalog.titles`).
FIELD_WEIGHTS = {"title": 3.0, "brand": 2.5, "categories": 2.0, "tags": 2.0, "description": 1.0,
                 "specs": 1.0}
K1 = 1.2
B = 0.75
FUZZY_CUTOFF = 80
SYNONYM_WEIGHT = 0.9
# The letter and digit runs inside a model code ("AA352186") count for this share of a word.
PART_WEIGHT = 0.25
PARTS = "_parts"
# Each field and its model-code parts, in the order a product's words are read.
FIELDS = tuple(f + suffix for f in FIELD_WEIGHTS for suffix in ("", PARTS))
# Candidates kept when a request reaches more products than this (see `CatalogIndex.match`).
PRUNE_TO = 1000
# Above this many distinct words, a misspelt word is compared only with words that share its
# first letter (or its first two letters swapped, or one letter added or dropped in front):
# a scan of every word costs ~50 ms at a million words, one bucket a few.
FUZZY_FULL_SCAN = 200_000
# Reviews a rating needs to count fully when the open-request fallback orders products.
PRIOR_REVIEWS = 20
PRIOR_SHARE = 0.8
BUILD_CHUNK = 32_768  # products whose postings are computed together
# Up to this many products per query word on average, a query's match bits are set in one
# `ufunc.at` call, past it word by word (measured crossover: ~500 at 19k products).
BITS_AT_ONCE_UNDER = 400
# What the reaches of query word lists an index remembers may hold (see `CatalogIndex._reach`).
REACH_CACHE_BYTES = 32 * 2**20


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

    words: tuple[str, ...]
    scores: np.ndarray | None = None
    bits: list[np.ndarray] = field(default_factory=list)

    def nbytes(self) -> int:
        return (0 if self.scores is None else self.scores.nbytes) + \
            sum(bits.nbytes for bits in self.bits) + 64 * (len(self.words) + 1)

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
        """The words whose bits `key` has set (a product matches few: visit only those)."""
        blocks = key if isinstance(key, tuple) else (key,)
        words = []
        for block_no, block in enumerate(blocks):
            while block:
                lowest = block & -block
                words.append(self.words[(block_no << 6) + lowest.bit_length() - 1])
                block ^= lowest
        return frozenset(words)


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
        columns = self._columns = ProductColumns()
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
        self._reaches: dict[tuple[tuple[str, ...], float], _Reach] = {}
        self._reach_bytes = 0
        # (letter position, letter) -> the words with that letter there, and their numbers.
        self._fuzzy_buckets: dict[tuple[int, str], tuple[tuple[str, ...], array[int]]] | None \
            = None
        self._prior: np.ndarray | None = None

    def _read(self, rows: Iterable[tuple[CatalogRow, Merchant]], sponsored: frozenset[str],
              word_ids: _WordIds, forward: _Forward, ref_hashes: array[int]) -> None:
        c = self._columns
        accessories = vocabulary().accessories
        kinds = product_types()
        blocked: dict[tuple[str, str, tuple[str, ...]], bool] = {}
        # By identity; the merchant is kept with its facts so that its id is not reused.
        merchants: dict[int, tuple[Merchant, MerchantFacts]] = {}
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
                known = merchants[id(merchant)] = (merchant, MerchantFacts(
                    merchant.slug, merchant.name, merchant_health_factor(merchant)))
            facts = known[1]
            free_tags = " ".join(t for t in row.tags if ":" not in t)
            # The title's name is searched as the title, the specifications it lists as a
            # field of their own; the name and then the specifications are kept in order for
            # accessories and near-duplicates.
            product_name, specs = split_specs(row.title)
            title, title_parts = indexed_stems(product_name)
            spec_stems = indexed_stems(specs) if specs else ([], [])
            tokens.extend(map(number, title))
            tokens.extend(map(number, title_parts))
            field_lengths = [len(title), len(title_parts)]
            for name, value in (("brand", row.brand or ""), ("categories", row.categories),
                                ("tags", free_tags), ("description", row.description),
                                ("specs", specs)):
                words, parts = spec_stems if name == "specs" else indexed_stems(value)
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
            c.rating_counts.append(NO_COUNT if row.rating_count is None else row.rating_count)
            c.updated_at.append(timestamp_of(row.updated_at))
            # An accessory word in the name (1), or in the words right after the first
            # quantity ("Laptop 17 in Cooling Pad, 5 Fans"), not further down the list of
            # specifications ("... Windows 11 com Carregador", "3.5 mm connector") (2).
            c.accessory.append((ACCESSORY_IN_NAME if accessories.intersection(title) else 0)
                               | (ACCESSORY_AFTER_NAME if specs and accessories.intersection(
                                   indexed_stems(first_spec_words(specs))[0]) else 0))
            # The kinds' phrases split letters from digits ("ps5" -> ps, 5), as `stems` does.
            c.names_kind.append(kinds.names_a_type(stems(product_name)))
            c.title_words.extend(map(number, title))
            c.title_words.extend(map(number, spec_stems[0]))
            c.title_ends.append(len(c.title_words))
            c.name_lengths.append(len(title))
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
        tags rather than by every tag the request names. The carriers of a tag are sorted, so
        a binary search finds each candidate among them."""
        total = np.zeros(len(docs))
        for tag, weight in weights.items():
            carriers = self._tag_docs.get(tag)
            if carriers is None or not weight or not len(carriers):
                continue
            at = np.searchsorted(carriers, docs)
            found = carriers[np.minimum(at, len(carriers) - 1)] == docs
            total += weight * found
        return total

    def carries_any(self, tags: Iterable[str]) -> bool:
        """Whether any product carries one of these gift tags."""
        return any(len(self._tag_docs.get(tag, ())) for tag in tags)

    def postings(self, word: str) -> tuple[np.ndarray, np.ndarray]:
        """The products containing a stem (ascending) and its saturated weight in each."""
        at = self._word_ids.get(word)
        if at is None:
            return np.zeros(0, dtype=np.uint32), np.zeros(0)
        lo, hi = self._post_starts[at], self._post_starts[at + 1]
        return self._post_docs[lo:hi], self._post_weights[lo:hi]

    def has_word(self, word: str) -> bool:
        """Whether some product holds this very stem (no other spelling of it)."""
        return word in self._word_ids

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
        if len(term) < 4 or not term.isalpha():
            return []  # "2110" is not a misspelt "2100", nor "rtx2070" an "rtx2080"
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
        """Add up the weights of `words` per product; each word counts once, as the best of
        itself, its close spellings and its synonyms that the product holds.

        Remembered by the index, which never changes, for lists of words seen before: a
        gift request's soft words (the kinds gift knowledge suggests, in every language the
        data knows) are a hundred or more, the same for every request about the same
        recipient and interests, and reaching them was a quarter of a search. The memory
        is bounded by `REACH_CACHE_BYTES` (a reach holds a few numbers per product), and
        starts again empty when full. What is handed out is never changed."""
        key = (tuple(words), weight)
        reach = self._reaches.get(key)
        if reach is None:
            reach = self._reach_anew(key[0], weight)
            for array_ in (reach.scores, *reach.bits):
                if array_ is not None:
                    array_.flags.writeable = False
            size = reach.nbytes()
            if size > REACH_CACHE_BYTES:
                return reach  # it would push out everything kept, and not fit itself
            if self._reach_bytes + size > REACH_CACHE_BYTES:
                self._reaches.clear()
                self._reach_bytes = 0
            self._reaches[key] = reach
            self._reach_bytes += size
        return reach

    def _reach_anew(self, words: tuple[str, ...], weight: float) -> _Reach:
        reach = _Reach(tuple(dict.fromkeys(words)))
        n = len(self._columns)
        reached: list[int] = []  # the words that reach some product, in order
        all_docs: list[np.ndarray] = []
        all_values: list[np.ndarray] = []
        for j, word in enumerate(reach.words):
            # A synonym counts as the word asked for, with that word's rarity: "laptop" finds
            # a "Notebook PC" as it finds a "Laptop Cooler", though "notebook" is a commoner
            # word in the catalog. Other spellings of a word the catalog lacks have their own.
            own = self._word_ids.get(word)
            found: list[tuple[np.ndarray, np.ndarray]] = []
            for variant, similarity in self.expand(word):
                at = self._word_ids[variant]
                idf = self._idf[at if own is None else own] * similarity * weight
                lo, hi = self._post_starts[at], self._post_starts[at + 1]
                found.append((self._post_docs[lo:hi], idf * self._post_weights[lo:hi]))
            if not found:
                continue
            if len(found) == 1:
                docs, values = found[0]
            else:
                # "Laptop Notebook Sleeve" holds the word once, not twice: each product gets
                # its best variant. Each variant's products are ascending, so the stable sort
                # merges runs.
                docs = np.concatenate([d for d, _ in found])
                values = np.concatenate([v for _, v in found])
                order = np.argsort(docs, kind="stable")
                docs, values = docs[order], values[order]
                firsts = np.flatnonzero(np.r_[True, docs[1:] != docs[:-1]])
                docs, values = docs[firsts], np.maximum.reduceat(values, firsts)
            reached.append(j)
            all_docs.append(docs)
            all_values.append(values)
        if not reached:
            return reach
        # All words at once. A product appears once per word now, and bincount adds in
        # array order: the same additions, in the same word order, as adding word by word.
        docs = np.concatenate(all_docs)
        reach.scores = np.bincount(docs, weights=np.concatenate(all_values), minlength=n)
        dtype = _bit_type(len(reach.words))
        reach.bits = [np.zeros(n, dtype=dtype) for _ in range((reached[-1] >> 6) + 1)]
        if len(docs) > BITS_AT_ONCE_UNDER * len(reached):
            for j, word_docs in zip(reached, all_docs, strict=True):
                reach.bits[j >> 6][word_docs] |= dtype(1 << (j & 63))
            return reach
        # `ufunc.at` pays per product and an indexed |= per call: with few products per word
        # (a small catalog), all words' bits in one call.
        word_at = np.repeat(np.array(reached), [len(d) for d in all_docs])
        for block, bits in enumerate(reach.bits):
            ours = word_at >> 6 == block
            np.bitwise_or.at(bits, docs[ours],
                             np.left_shift(dtype(1), (word_at[ours] & 63).astype(dtype)))
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
                c.title_ends, c.title_words, c.name_lengths))
            + len(c.in_stock) + len(c.accessory) + len(c.names_kind),
            "vocabulary_words": len(self.vocabulary),
        }
