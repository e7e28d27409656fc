"""Products kept as columns: a million of them in a few hundred megabytes.

Strings are packed UTF-8, brands, categories, currencies and tag sets are interned, numbers
live in arrays; `IndexedProduct` is a small view over one row, made on demand (or kept, for
catalogs up to `KEEP_VIEWS` products). `catalog.index` builds these columns while it reads a
market's products and searches them.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Generic, Protocol, TypeVar, overload

import numpy as np

from catalog.models import Merchant
from catalog.text import indexed_stems
from catalog.titles import after_name_words, not_its_kind
from catalog.vocabulary import vocabulary

ACCESSORY_LINKS = frozenset({"for", "para", "pra", "de", "compatible", "compativel", "with"})
# After the thing itself, what these introduce comes with it ("com Case", "with Accessories").
INCLUDED = frozenset({"com", "with", "con", "incl", "including", "includes", "included"})
NO_COUNT = -(2**63)  # rating_count None in its int64 column
# Up to this many products, every product's view is made at build time and kept (about 1 kB
# each, with its ref and words worked out): ranking then reads plain attributes, as it did of
# the dataclasses this index used to keep. Above, views are made for the candidates only.
KEEP_VIEWS = 50_000


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


def timestamp_of(moment: datetime | None) -> float:
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
class MerchantFacts:
    slug: str
    name: str
    health: float


# Where a title has an accessory word: in its name, or right after its first quantity.
ACCESSORY_IN_NAME = 1
ACCESSORY_AFTER_NAME = 2


class ProductColumns:
    """The products of one index, one column per attribute (see `IndexedProduct`)."""

    def __init__(self) -> None:
        self.product_ids = _Strings()
        self.titles = _Strings()
        self.urls = _Strings()
        self.image_urls = _Strings()
        self.brands: _Interned[str | None] = _Interned()
        self.categories: _Interned[str] = _Interned()
        self.currencies: _Interned[str] = _Interned()
        self.merchants: _Interned[MerchantFacts] = _Interned()
        self.tag_sets: _Interned[frozenset[str]] = _Interned()
        self.prices = array("q")
        self.in_stock = bytearray()
        self.rating_values = array("d")  # NaN where None
        self.rating_scales = array("d")
        self.rating_counts = array("q")  # NO_COUNT where None
        self.updated_at = array("d")
        self.accessory = bytearray()  # ACCESSORY_IN_NAME | ACCESSORY_AFTER_NAME
        self.names_kind = bytearray()  # its title names a kind of product ("mouse")
        self.sponsored: set[int] = set()
        # Stems of the title (word ids, in order, repeats kept) and of each brand and
        # category path (shared by every product that has it); of a title's stems, how many
        # are its name, before the specifications it lists (`catalog.titles.split_specs`).
        self.title_ends = array("q")
        self.title_words = array("I")
        self.name_lengths = array("I")
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

    def __init__(self, columns: ProductColumns, doc: int) -> None:
        self._columns = columns
        self._doc = doc
        self.price_amount: int = columns.prices[doc]
        self.currency: str = columns.currencies[doc]
        self.in_stock: bool = columns.in_stock[doc] == 1
        # Gift tags ("interest:gardening"); free tags only feed the text index.
        self.tags: frozenset[str] = columns.tag_sets[doc]
        # Whether its title has an accessory word (sleeve, case, toner...).
        self.accessory: bool = columns.accessory[doc] != 0
        # Whether its title names a kind of product ("Gaming mouse", "Notebook PC").
        self.names_kind: bool = columns.names_kind[doc] == 1
        rating = columns.rating_values[doc]
        self.rating_value: float | None = None if rating != rating else rating
        scale = columns.rating_scales[doc]
        self.rating_scale: float | None = None if scale != scale else scale
        count = columns.rating_counts[doc]
        self.rating_count: int | None = None if count == NO_COUNT else count
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
    # Stems of the title's name (without the specifications it lists), brand and categories,
    # for kind matching.
    words: frozenset[str]

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

    def _name_stems(self) -> tuple[str, ...]:
        return self.title_stems[:self._columns.name_lengths[self._doc]]

    def _words(self) -> frozenset[str]:
        c, doc = self._columns, self._doc
        return frozenset(self._name_stems()).union(c.brand_words[c.brands.code(doc)],
                                                    c.category_words[c.categories.code(doc)])

    def kind_words(self) -> frozenset[str]:
        """`words` without the title's words that only name what the product serves
        ("FireWire for Laptop", see `catalog.titles.not_its_kind`); its brand and category
        words stay."""
        other = not_its_kind(self.title)
        if not other:
            return self.words
        c, doc = self._columns, self._doc
        return frozenset(self._name_stems()).difference(other).union(
            c.brand_words[c.brands.code(doc)], c.category_words[c.categories.code(doc)])

    def accessory_of(self, terms: set[str], asked: frozenset[str] = frozenset()) -> bool:
        """Whether the title names an accessory of what the terms name: "Laptop Sleeve"
        (the accessory after the thing), or "Capa para Notebook" and "Sleeve for iPad"
        (the accessory first, then a word like for / para / de, then the thing). The title's
        name is read, and of its specifications only the words right after the first
        quantity ("Laptop 17 in Cooling Pad"): "... 256 GB SSD com Carregador" is a notebook
        sold with a charger.

        Accessory words in `asked` name the kind the shopper asked for: "AA Batteries" are
        what "aa" asks for, not an accessory of it. Nor is an accessory word right before
        the thing it describes: a "Bluetooth Speaker ... docking speaker" is a speaker."""
        flags = self._columns.accessory[self._doc]
        if not flags:
            return False
        accessories = vocabulary().accessories - asked if asked else vocabulary().accessories
        name = self._name_stems()
        if flags & ACCESSORY_AFTER_NAME and not terms.isdisjoint(name) and \
                not accessories.isdisjoint(after_name_words(self.title)):
            return True  # "Laptop 17 in Cooling Pad, 5 Fans"
        if "+" in self.title:
            # "Smartphone Galaxy A15 + Capa e Película": what comes with it, not what it is.
            name = name[:len(indexed_stems(self.title.split("+", 1)[0])[0])]
        seen_term = pending = linked = False
        for at, word in enumerate(name):
            if word in terms:
                if pending and linked:
                    return True
                seen_term = True
            elif seen_term and word in INCLUDED:
                return False  # "Fone Bluetooth com Case Carregador": sold with it
            elif word in accessories:
                pending, linked = True, False
                if at + 1 < len(name) and name[at + 1] in terms:
                    continue  # it describes the thing named next: a "docking speaker"
                if seen_term:
                    return True
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

    def __init__(self, columns: ProductColumns) -> None:
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
