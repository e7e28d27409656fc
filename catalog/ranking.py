"""Ranking: from what a request's words match and what the shopper wants, to the cards shown.

Hard rules come first. A product is never shown when it is out of stock, priced in another
currency, outside the budget, of a brand or a store the shopper ruled out (or of another
store than the one they asked for), of a kind they ruled out
("nada de perfume"), already given to this recipient, or excluded by the conversation.

Every product left gets one score, the sum of these parts:

    3.0 × relevance      BM25F text score as a share of the best candidate's (0..1), times
                         coverage (0.5 + 0.5 × share of the query's words it matches), times
                         0.55 when it is an accessory of what was asked ("laptop" -> a laptop
                         sleeve; not when the accessory word names the kind asked for, as
                         "batteries" does for "aa"), times 0.8 when the shopper named a
                         product type and no word of it is in the name of this product's
                         title, its brand or its category (not the specifications a title
                         lists, the "256 GB SSD" of a PC, nor a kind it is only for, "for
                         Laptop"; see `catalog.titles`), and 0.7 more when its title names a
                         kind of its own (a "Gaming mouse" for "gaming pc"), times 0.5 when
                         it lacks a number the query holds ("TN-670" for "tn-2110")
    + intent fit         matched gift tags: interest 1.5, recipient 1.0, age 0.8, occasion
                         0.5, gender 0.5; tags that gift knowledge suggested count half; 0.8
                         when it is of a kind gift knowledge suggests for an open request;
                         -2.0 when it is made for another age band
    + brand fit          0.8 when it is of a brand the shopper asked for, else 0.4 when
                         memory holds that the shopper or the person likes the brand
    + store fit          0.3 when memory holds that the shopper likes the store
    + 0.4 × budget fit   1 - |price - target| / target, target being the amount the shopper
                         named ("around 40") or three quarters of a ceiling ("up to 200")
    + 0.6 × rating       Bayesian average of the rating: (C·m + n·r) / (C + n) with a prior
                         m = 0.8 of the scale worth C = 20 reviews, rescaled so the prior is
                         0 and a perfect score is 1: a 5.0 from 2 reviews counts less than a
                         4.7 from 320
    - 0.5 × staleness    grows from 0 at 7 days since the merchant last sent the product's
                         data to 1 at 67 days: old prices and stock are less likely to hold
    - 1.0 × ill health   1 - the merchant's health (a failing or overdue feed)
    - 1.5                a product the shopper turned down (`penalise`), or 0.75 when
                         it is nearly the same as one (same brand, almost the same title)

Relevance carries the most weight: the other parts mostly order products that fit the words
about equally. A product matching fewer of the words can still pass one that matches them
all when it also fits the person, the brand and the budget.

Picking the cards (`choose`): for a chat's few cards (`fit_to_ask`), only products of the
kind asked for are shown while the catalog carries that kind (with no kind named, those that
fit an interest the shopper stated, while any may be shown), and of the colour asked for when
any names it; near-duplicates (same title, or nearly the same words) are pushed down among
the first three cards; when the request names no product, each card is of a different kind
where the catalog allows. A sponsored product earns a card on its own
score like any other; otherwise it may take the last card only if its score is at least
`SPONSORED_RATIO` of the first card's. At most one sponsored product is shown, and it is
always labelled.
"""

from __future__ import annotations

import heapq
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from catalog.columns import IndexedProduct
from catalog.index import PRIOR_REVIEWS, PRIOR_SHARE, CatalogIndex
from catalog.product_types import product_types
from catalog.text import fold, phrase_words, query_units, stems
from catalog.vocabulary import vocabulary

RELEVANCE_WEIGHT = 3.0
TAG_WEIGHTS = {"recipient": 1.0, "age": 0.8, "interest": 1.5, "occasion": 0.5, "gender": 0.5}
SUGGESTED_TAG_SHARE = 0.5
SUGGESTED_TYPE_WEIGHT = 0.8
AGE_MISMATCH_PENALTY = 2.0
SOFT_TERM_WEIGHT = 0.6
ACCESSORY_FACTOR = 0.55
OTHER_TYPE_FACTOR = 0.8
TITLED_OTHER_FACTOR = 0.7
NUMBER_MISS_FACTOR = 0.5
BRAND_WEIGHT = 0.8
LIKED_BRAND_WEIGHT = 0.4
LIKED_STORE_WEIGHT = 0.3
SIMILAR_TURNED_DOWN_PENALTY = 0.75
BUDGET_WEIGHT = 0.4
CEILING_TARGET = 0.75
RATING_WEIGHT = 0.6
RATING_PRIOR = PRIOR_SHARE  # the same prior orders the index's open-request fallback
RATING_PRIOR_REVIEWS = PRIOR_REVIEWS
STALENESS_WEIGHT = 0.5
FRESH_DAYS = 7
STALE_DAYS = 67
HEALTH_WEIGHT = 1.0
TURNED_DOWN_PENALTY = 1.5
NEAR_DUPLICATE_PENALTY = 0.5
NEAR_DUPLICATE_OVERLAP = 0.8
SPONSORED_RATIO = 0.8
DIVERSITY_WINDOW = 50
FIT_EXTRA_VISITS = 4
DIVERSE_CARDS = 3
# Words that link the words of a phrase ("tênis de corrida", "board of games"), not content.
LINK_WORDS = frozenset({"de", "da", "do", "das", "dos", "del", "la", "el", "para", "pra", "for",
                        "of", "the", "a", "e", "y", "and", "com", "con", "with"})


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
    liked_brands: list[str] = field(default_factory=list)  # remembered as liked: ranked up less
    avoid_brands: list[str] = field(default_factory=list)  # ruled out: filtered
    merchants: list[str] = field(default_factory=list)  # slugs asked for: only these shown
    avoid_merchants: list[str] = field(default_factory=list)  # slugs ruled out: filtered
    liked_merchants: list[str] = field(default_factory=list)  # remembered as liked: ranked up
    excluded_terms: list[str] = field(default_factory=list)  # "nada de perfume": filtered
    given: set[str] = field(default_factory=set)  # refs already given to this recipient
    budget_target: int | None = None  # the price named in "around 40 bucks"
    # The few cards of a chat: they must fit the kind (or stated interest) asked for while
    # the catalog carries it; a longer list (an evaluation's top 100) is a plain ranking.
    fit_to_ask: bool = False
    # Colour words asked for ("azul", "blue"), folded: with `fit_to_ask`, the cards are of
    # that colour when any product that may be shown says so in its title.
    colours: list[str] = field(default_factory=list)
    # Interests the shopper stated for this request ("interest:gardening"), not recalled
    # from memory: with no kind named, the few cards of a chat fit one of them when any can.
    stated_interests: list[str] = field(default_factory=list)

    @property
    def is_open(self) -> bool:
        """Whether the shopper named no product, only a person, an occasion or interests."""
        return not (self.terms or self.product_types)


@dataclass
class RankedProduct:
    product: IndexedProduct
    score: float
    matched_terms: list[str]
    matched_tags: list[str]
    sponsored: bool = False  # shown because its merchant sponsors it: labelled on the card
    doc: int = -1  # its number in the index it was ranked from
    # It names the kind of product asked for and is not an accessory of it, or (no kind
    # asked) carries an interest asked for; and whether the catalog has any such product.
    of_kind: bool = True
    kind_carried: bool = False


@dataclass(frozen=True)
class _Wanted:
    """A request reduced to the stems and sets ranking compares products against."""

    terms: list[str]
    term_set: frozenset[str]
    soft: list[str]
    tags: list[str]
    suggested_tags: frozenset[str]
    ages: frozenset[str]
    interests: frozenset[str]
    numbers: frozenset[str]
    types: Phrases
    suggested_types: Phrases
    excluded: Phrases
    brands: Phrases
    liked_brands: Phrases
    avoid_brands: Phrases
    wants_accessory: bool
    # Accessory words that name the kind asked for ("battery" when "aa" asks for batteries).
    kind_accessories: frozenset[str]
    target: int | None


@dataclass(frozen=True)
class Phrases:
    """Words or phrases, each as the set of its content stems ("tênis de corrida" -> {teni,
    corrida}); a product matches one when its title, brand or category has them all.

    Phrases are filed under one of their stems, so checking a product looks only at the
    phrases that share a word with it instead of at every phrase (a group of kinds has
    hundreds).
    """

    all: tuple[frozenset[str], ...] = ()
    by_word: dict[str, tuple[frozenset[str], ...]] = field(default_factory=dict)

    @classmethod
    def of(cls, words: Iterable[str]) -> Phrases:
        found = []
        for word in words:
            content = frozenset(w for w in phrase_words(word) if w not in LINK_WORDS)
            if content:
                found.append(content)
        unique = tuple(dict.fromkeys(found))
        by_word: dict[str, list[frozenset[str]]] = {}
        for phrase in unique:
            by_word.setdefault(min(phrase), []).append(phrase)
        return cls(unique, {w: tuple(p) for w, p in by_word.items()})

    def __bool__(self) -> bool:
        return bool(self.all)

    def found_in(self, words: frozenset[str]) -> bool:
        """Whether these product words contain all the stems of any phrase."""
        by_word = self.by_word
        if len(words) > len(by_word):
            return any(p <= words for w, ps in by_word.items() if w in words for p in ps)
        return any(p <= words for w in words if w in by_word for p in by_word[w])


@lru_cache(maxsize=256)
def _kind_phrases(kinds: tuple[str, ...]) -> Phrases:
    """The phrases naming these product kinds (or groups of kinds), in every language the data
    knows; a kind the data does not know stands for itself."""
    if not kinds:
        return Phrases()
    known = product_types()
    return Phrases.of(w for kind in kinds for t in (known.expand(kind) or [kind])
                      for w in (known.words(t) or [t]))


@lru_cache(maxsize=256)
def _device_accessory_words(kinds: tuple[str, ...]) -> frozenset[str]:
    """The accessory words in the names of these kinds that are devices. A kind is a device
    when most of its English names hold no accessory word: "vacuum cleaner" ("vacuum",
    "stick vacuum"...) is one, batteries ("battery", "aa batteries"...) are not. A device's
    name does not ask for accessories."""
    accessories = vocabulary().accessories
    known = product_types()
    words: set[str] = set()
    for kind in kinds:
        for t in known.expand(kind):
            english = Phrases.of(known.words(t, "en")).all
            free = sum(1 for p in english if not accessories.intersection(p))
            if 2 * free > len(english):
                words.update(w for p in _kind_phrases((t,)).all for w in p if w in accessories)
    return frozenset(words)


@lru_cache(maxsize=2048)
def _phrases(words: tuple[str, ...]) -> Phrases:
    """`Phrases.of`, remembered: a remembered dislike expands to every word of its kind, and
    stemming them took 3 % of a turn. Phrases are never changed once made."""
    return Phrases.of(words)


def _wanted(request: SearchRequest, index: CatalogIndex) -> _Wanted:
    # A model name is looked for whole ("ps4", "rtx2060"): its parts alone would find a
    # "PS/2 4-port switch". Where no product is written that way, its parts.
    terms = [s for term in request.terms for whole, parts in query_units(term)
             for s in ([whole] if len(parts) == 1 or index.has_word(whole) else parts)]
    # A word no product contains, even misspelt ("qro", "chegando"), is noise in the
    # message: requiring it would leave the shopper with nothing.
    terms = [t for t in terms if index.expand(t)]
    soft = [s for t in request.soft_terms + request.attributes for s in stems(t)]
    target = request.budget_target
    if target is None and request.budget_max is not None:
        target = int(request.budget_max * CEILING_TARGET)
    tags = list(dict.fromkeys(request.tags))
    types = _kind_phrases(tuple(request.product_types))
    accessories = vocabulary().accessories
    of_devices = _device_accessory_words(tuple(request.product_types))
    return _Wanted(
        terms=terms, term_set=frozenset(terms), soft=soft, tags=tags,
        suggested_tags=frozenset(request.suggested_tags) - set(tags),
        ages=frozenset(t for t in tags if t.startswith("age:")),
        interests=frozenset(request.stated_interests),
        numbers=frozenset(t for t in terms if any(ch.isdigit() for ch in t)),
        types=types,
        suggested_types=_kind_phrases(tuple(request.suggested_types)) if request.is_open
        else Phrases(),
        excluded=_phrases(tuple(request.excluded_terms)),
        brands=_phrases(tuple(request.brands)),
        liked_brands=_phrases(tuple(request.liked_brands)),
        avoid_brands=_phrases(tuple(request.avoid_brands)),
        wants_accessory=bool(accessories.intersection(terms).difference(of_devices)),
        kind_accessories=frozenset(w for phrase in types.all for w in phrase
                                   if w in accessories),
        target=target)


def rank(index: CatalogIndex, request: SearchRequest) -> list[RankedProduct]:
    """Score every eligible product the request reaches, then choose the cards."""
    return choose(score_all(index, request), request)


def score_all(index: CatalogIndex, request: SearchRequest) -> list[RankedProduct]:
    """The eligible products the request reaches that could be shown, scored, best first.

    Candidates are visited from the highest possible score down (a product's score never
    exceeds its text part plus every bonus the request allows), and the visit stops once
    none left could enter the diversity window of `choose` or clear the sponsored bar. What
    is returned is exact and in order; products that could not be shown are left out.
    """
    want = _wanted(request, index)
    soft = want.soft + [s for phrase in want.suggested_types.all for s in phrase]
    if request.terms and not want.terms and not (request.soft_terms or want.tags
                                                  or want.suggested_tags):
        # The shopper named a product no shop carries: say so, show nothing random (a colour
        # or a size alone, "caneca azul" without mugs, is no reason to show blue things).
        return []
    found = index.match(want.terms, soft, SOFT_TERM_WEIGHT,
                        want.tags + sorted(want.suggested_tags), currency=request.currency,
                        budget_min=request.budget_min, budget_max=request.budget_max)
    scores, soft_scores, hits = found.scores, found.soft_scores, found.hits
    max_text = max((scores.get(i, 0.0) + soft_scores.get(i, 0.0)
                    for i in found.candidates), default=0.0) or 1.0
    terms = len(want.term_set)

    def text_part(i: int) -> float:
        text = (scores.get(i, 0.0) + soft_scores.get(i, 0.0)) / max_text
        if terms:
            text *= 0.5 + 0.5 * len(hits.get(i, ())) / terms
        if want.numbers and not want.numbers <= hits.get(i, frozenset()):
            text *= NUMBER_MISS_FACTOR  # "TN-670" for "brother tn-2110 toner"
        return text

    # Each candidate's score is bounded by its text, the tags it carries and the most every
    # other part could add: with tags counted per product rather than all at once, the visit
    # below stops early for gift requests too, whose tag bonuses outweigh text differences.
    docs = np.fromiter(sorted(found.candidates), dtype=np.int64, count=len(found.candidates))
    weights = {t: tag_weight(t) for t in want.tags}
    for t in want.suggested_tags:
        weights[t] = weights.get(t, 0.0) + SUGGESTED_TAG_SHARE * tag_weight(t)
    tag_bound = index.tag_sums(docs, weights) if weights else np.zeros(len(docs))
    # Each product's own rating part (the same Bayesian average as `rating_signal`), and a
    # hair more for rounding: a catalog without ratings adds nothing to any bound.
    tag_bound += RATING_WEIGHT * (index.prior()[docs] - RATING_PRIOR) / (1.0 - RATING_PRIOR) \
        + 1e-9
    bonus = _max_bonus(want) + (LIKED_STORE_WEIGHT if request.liked_merchants else 0.0)
    if want.suggested_types:
        # Of a kind gift knowledge suggests only if its text holds every word of one of the
        # kind's phrases: the soft words it matched say so before it is visited. Products
        # share few distinct sets of matched words.
        of_suggested: dict[frozenset[str], float] = {}
        soft_hits = found.soft_hits

        def suggested(i: int) -> float:
            words = soft_hits.get(i, frozenset())
            value = of_suggested.get(words)
            if value is None:
                value = of_suggested[words] = SUGGESTED_TYPE_WEIGHT \
                    if want.suggested_types.found_in(words) else 0.0
            return value
    else:
        def suggested(i: int) -> float:
            return 0.0
    bounded = sorted(((RELEVANCE_WEIGHT * text + bonus + own + suggested(i), i, text)
                      for i, own in zip(docs.tolist(), tag_bound.tolist(), strict=True)
                      for text in (text_part(i),)), reverse=True)
    # What the shopper named, in the catalog's words too: a "notebook case" is an accessory
    # of a "laptop". A brand asked for is no thing to have accessories in its own products:
    # for "samsung", a Samsung phone case is a Samsung product like any other, while a
    # third party's "Suporte para GoPro" stays an accessory for "gopro".
    named = {w for t in want.term_set for w, _ in index.expand(t)} | set(want.term_set)
    brand_words = {w for phrase in want.brands.all for w in phrase}
    named_in_brand = named - brand_words

    def accessory_of_asked(product: IndexedProduct) -> bool:
        if not terms or want.wants_accessory:
            return False
        own = brand_words and product.brand and want.brands.found_in(
            _brand_words(product.brand))
        return product.accessory_of(named_in_brand if own else named, want.kind_accessories)

    # The diversity window, plus room for sponsored products `choose` may pass over.
    needed = max(request.limit, DIVERSITY_WINDOW) + request.limit
    sponsored = index.has_sponsored
    now = time.time()
    ranked: list[RankedProduct] = []
    best: list[float] = []  # a min-heap of the `needed` best scores so far
    # When the cards must fit what was asked (`choose`), the products that fit are ranked
    # among themselves: the visit also goes on until `needed_fit` of them are scored, or
    # none left could pass the worst of those.
    fitting = request.fit_to_ask and bool(
        want.types or (want.interests and index.carries_any(want.interests)))
    best_fit: list[float] = []  # a min-heap of the `needed_fit` best fitting scores so far
    # Enough fitting products for the cards and a choice among them for diversity.
    needed_fit = request.limit + 2 * DIVERSE_CARDS
    extra = 0  # products visited only to find fitting ones; at most FIT_EXTRA_VISITS x needed
    for ceiling, i, text in bounded:
        if len(best) >= needed and ceiling < best[0] and not (
                sponsored and ceiling >= SPONSORED_RATIO * max(best)):
            if not (fitting and (len(best_fit) < needed_fit or ceiling >= best_fit[0])):
                break
            # A catalog that names kinds only in descriptions (Icecat) has few fitting
            # titles: the search for them is bounded, as the request's latency is.
            extra += 1
            if extra > FIT_EXTRA_VISITS * needed:
                break
        product = index.products[i]
        if not eligible(product, request, want):
            continue
        relevance = text
        accessory = accessory_of_asked(product)
        if accessory:
            relevance *= ACCESSORY_FACTOR
        words = product.words
        of_kind = not want.types or (want.types.found_in(words)
                                     and want.types.found_in(product.kind_words()))
        # Its bags are no vacuum cleaner: a chat's cards show the kind itself while the
        # catalog carries it (see `choose`), not what goes with it.
        fits_kind = of_kind and not accessory
        if not of_kind:
            relevance *= OTHER_TYPE_FACTOR
            if product.names_kind:
                # Its title names a kind of its own: a "Gaming mouse" for "gaming pc".
                relevance *= TITLED_OTHER_FACTOR
        product_tags = product.tags
        matched_tags = [t for t in want.tags if t in product_tags]
        score = (RELEVANCE_WEIGHT * relevance
                 + intent_fit(product, want, matched_tags)
                 + brand_fit(product, want)
                 + (LIKED_STORE_WEIGHT if product.merchant_slug in request.liked_merchants
                    else 0.0)
                 + BUDGET_WEIGHT * budget_fit(product.price_amount, want.target)
                 + RATING_WEIGHT * rating_signal(product)
                 - STALENESS_WEIGHT * staleness(product, now)
                 - HEALTH_WEIGHT * (1.0 - product.health))
        if product.ref in request.penalise:
            score -= TURNED_DOWN_PENALTY
        if not want.types and want.interests:
            # Without a kind, "a mãe que ama jardinagem" asks for gardening things.
            fits_kind = any(t in want.interests for t in matched_tags)
        ranked.append(RankedProduct(product, score, [], matched_tags, doc=i, of_kind=fits_kind))
        if len(best) < needed:
            heapq.heappush(best, score)
        elif score > best[0]:
            heapq.heapreplace(best, score)
        if fitting and fits_kind:
            if len(best_fit) < needed_fit:
                heapq.heappush(best_fit, score)
            elif score > best_fit[0]:
                heapq.heapreplace(best_fit, score)
    turned_down = [p for p in map(index.get, request.penalise) if p is not None]
    if turned_down:
        # "Not for me" also lowers products nearly the same as the one turned down (another
        # colour of the same mug). Only the products that could be shown are compared.
        for item in heapq.nlargest(needed, ranked, key=lambda r: r.score):
            if item.product.ref not in request.penalise and any(
                    _near_duplicate(item.product, p) for p in turned_down):
                item.score -= SIMILAR_TURNED_DOWN_PENALTY
    ranked.sort(key=lambda r: (-r.score, r.product.price_amount, r.product.ref))
    # A kind (or, with none, an interest stated) counts as carried when a product that may be
    # shown fits it, or one the request leaves out because it was already shown: then "show
    # more" and "cheaper" can run out, and say so, instead of filling up with what does not
    # fit. (Looking at the products left out, not at every candidate, keeps this cheap.)
    carried = False
    if want.types or want.interests:
        def fits(product: IndexedProduct) -> bool:
            if want.types:
                return want.types.found_in(product.kind_words()) and \
                    not accessory_of_asked(product)
            return bool(want.interests & product.tags)

        carried = any(r.of_kind for r in ranked) or any(
            fits(p) for p in map(index.get, request.exclude) if p is not None)
    if carried:
        for item in ranked:
            item.kind_carried = True
    # Which words matched is only read to explain the cards, all chosen from the first ones.
    for item in ranked[:needed] + [r for r in ranked[needed:] if r.product.sponsored]:
        item.matched_terms = sorted(hits.get(item.doc, frozenset())
                                    | found.soft_hits.get(item.doc, frozenset()))
    return ranked


def brand_fit(product: IndexedProduct, want: _Wanted) -> float:
    """What the product's brand adds: asked for now, or remembered as liked."""
    if not product.brand or not (want.brands or want.liked_brands):
        return 0.0
    words = _brand_words(product.brand)
    if want.brands and want.brands.found_in(words):
        return BRAND_WEIGHT
    return LIKED_BRAND_WEIGHT if want.liked_brands and want.liked_brands.found_in(words) \
        else 0.0


@lru_cache(maxsize=4096)
def _brand_words(brand: str) -> frozenset[str]:
    return frozenset(phrase_words(brand))  # as `Phrases` reads them


def tag_weight(tag: str) -> float:
    """What a matched gift tag adds: by its family ("interest:gardening" -> interest)."""
    return TAG_WEIGHTS.get(tag.split(":", 1)[0], 0.5)


def _max_bonus(want: _Wanted) -> float:
    """The most the parts other than relevance, gift tags, rating and a suggested kind can
    add for this request."""
    return ((BRAND_WEIGHT if want.brands else LIKED_BRAND_WEIGHT if want.liked_brands
             else 0.0)
            + (BUDGET_WEIGHT if want.target else 0.0))


def eligible(product: IndexedProduct, request: SearchRequest, want: _Wanted) -> bool:
    """The hard rules: whether this product may be shown for this request at all."""
    if not product.in_stock or product.currency != request.currency:
        return False
    if product.ref in request.exclude or product.ref in request.given:
        return False
    if product.merchant_slug in request.avoid_merchants or (
            request.merchants and product.merchant_slug not in request.merchants):
        return False
    if request.budget_max is not None and product.price_amount > request.budget_max:
        return False
    if request.budget_min is not None and product.price_amount < request.budget_min:
        return False
    # "Apple" rules out "Apple Inc." too: a brand matches when all its words are there.
    if want.avoid_brands and product.brand and \
            want.avoid_brands.found_in(_brand_words(product.brand)):
        return False
    return not (want.excluded and want.excluded.found_in(product.words))


def intent_fit(product: IndexedProduct, want: _Wanted, matched_tags: list[str]) -> float:
    """How well the product suits the person and occasion, from the merchant's gift tags."""
    fit = sum(tag_weight(t) for t in matched_tags)
    fit += SUGGESTED_TAG_SHARE * sum(tag_weight(t) for t in want.suggested_tags & product.tags)
    if want.suggested_types and want.suggested_types.found_in(product.words):
        fit += SUGGESTED_TYPE_WEIGHT
    if want.ages:
        product_ages = {t for t in product.tags if t.startswith("age:")}
        if product_ages and not (want.ages & product_ages):
            fit -= AGE_MISMATCH_PENALTY
    return fit


def budget_fit(price: int, target: int | None) -> float:
    """1.0 at the price the shopper aims at, falling to 0 at twice or nothing of it."""
    if not target or target <= 0:
        return 0.0
    return max(0.0, 1.0 - abs(price - target) / target)


def rating_signal(product: IndexedProduct) -> float:
    """The rating's Bayesian average, 0 at the prior and 1 at a perfect score.

    Few reviews pull the average towards the prior, so a product with two five-star
    reviews does not outrank one rated 4.7 by hundreds of people.
    """
    if product.rating_value is None or not product.rating_scale:
        return 0.0
    share = min(1.0, max(0.0, product.rating_value / product.rating_scale))
    n = product.rating_count or 0
    mean = (RATING_PRIOR_REVIEWS * RATING_PRIOR + n * share) / (RATING_PRIOR_REVIEWS + n)
    return (mean - RATING_PRIOR) / (1.0 - RATING_PRIOR)


def staleness(product: IndexedProduct, now: float) -> float:
    """0 while the merchant's data is under a week old, growing to 1 after two months."""
    if not product.updated_at:
        return 0.0
    days = (now - product.updated_at) / 86400
    return min(1.0, max(0.0, (days - FRESH_DAYS) / (STALE_DAYS - FRESH_DAYS)))


def choose(ranked: list[RankedProduct], request: SearchRequest) -> list[RankedProduct]:
    """The cards to show: the most relevant products, diverse, at most one of them sponsored.

    A sponsored product competes on its own score like any other, and is labelled when it
    earns a card. When none did, the best sponsored product scoring at least
    `SPONSORED_RATIO` of the first card may take the last card, never the first. Either
    way only one sponsored product is shown.
    """
    if request.fit_to_ask and any(r.kind_carried for r in ranked) and (
            request.product_types or any(r.of_kind for r in ranked)):
        # The few cards of a chat are of the kind asked for when the catalog carries it:
        # once those run out ("mais opções" after the last headphones), no speaker fills
        # in. With no kind named, they fit the interest stated while any that may be shown
        # does; past that the closest ideas stay, and the reply says none fits. A longer
        # list (an evaluation's top 100) is a ranking and keeps its tail.
        ranked = [r for r in ranked if r.of_kind]
    if request.fit_to_ask and request.colours:
        in_colour = [r for r in ranked if names_colour(r.product.title, request.colours)]
        ranked = in_colour or ranked
    passed_over: set[str] = set()
    while True:
        pool = [r for r in ranked if r.product.ref not in passed_over] if passed_over \
            else ranked
        picked = diversify(pool, request.limit, by_kind=request.is_open)
        sponsored = [r for r in picked if r.product.sponsored]
        if len(sponsored) <= 1:
            break
        passed_over.update(r.product.ref for r in sponsored[1:])
    for item in picked:
        item.sponsored = item.product.sponsored
    if request.limit < 2 or not picked or any(r.sponsored for r in picked):
        return picked
    shown = {r.product.ref for r in picked}
    bar = SPONSORED_RATIO * picked[0].score
    for candidate in ranked:
        if not candidate.product.sponsored or candidate.product.ref in shown:
            continue
        if picked[0].score <= 0 or candidate.score < bar:
            break  # ranked is best first: nothing further down clears the bar either
        if any(_near_duplicate(candidate.product, p.product) for p in picked):
            continue
        candidate.sponsored = True
        slot = max(1, min(len(picked), request.limit - 1))
        # It takes the last card, or joins when fewer cards were found than asked for.
        return (picked[:slot] + [candidate]) if len(picked) >= request.limit \
            else picked + [candidate]
    return picked


def names_colour(text: str, colours: list[str]) -> str | None:
    """The first of these (folded) colour words, or its plural, that a text names."""
    found = _colour_re(tuple(colours)).search(fold(text))
    return found.group(0) if found else None


@lru_cache(maxsize=256)
def _colour_re(colours: tuple[str, ...]) -> re.Pattern[str]:
    words = "|".join(map(re.escape, sorted(colours)))
    return re.compile(rf"(?<![a-z])(?:{words})s?(?![a-z])")


def diversify(ranked: list[RankedProduct], limit: int, *, by_kind: bool = False,
              window: int = DIVERSITY_WINDOW) -> list[RankedProduct]:
    """Pick `limit` results, pushing down near-duplicates of a pick among the first
    `DIVERSE_CARDS` and, with `by_kind` (an open request), products of a kind already picked.

    A request that names its kind is not spread over the catalog's categories: where a
    merchant filed one pair of headphones says nothing about how well it fits.
    """
    pool = [(r, _family(r.product) if by_kind else "") for r in ranked[:max(window, limit)]]
    picked: list[RankedProduct] = []
    seen_titles: set[str] = set()
    family_count: dict[str, int] = {}

    def adjusted(entry: tuple[RankedProduct, str]) -> float:
        item, family = entry
        score = item.score
        if family:
            score -= abs(item.score) * family_count.get(family, 0)
        if len(picked) < DIVERSE_CARDS and any(_near_duplicate(item.product, p.product)
                                               for p in picked):
            score -= NEAR_DUPLICATE_PENALTY * abs(item.score) + NEAR_DUPLICATE_PENALTY
        return score

    while pool and len(picked) < limit:
        at = max(range(len(pool)), key=lambda i: adjusted(pool[i]))
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
    return path[-1].casefold() if path else ""


def _near_duplicate(a: IndexedProduct, b: IndexedProduct) -> bool:
    """Nearly the same product: the same brand and almost the same title words
    ("Value Keyboard Black Germany" and "Value Keyboard Black France")."""
    if fold(a.brand or "") != fold(b.brand or ""):
        return False
    wa, wb = set(a.title_stems), set(b.title_stems)
    if not wa or not wb:
        return False
    return len(wa & wb) / min(len(wa), len(wb)) >= NEAR_DUPLICATE_OVERLAP and \
        len(wa & wb) / max(len(wa), len(wb)) >= NEAR_DUPLICATE_OVERLAP - 0.2
