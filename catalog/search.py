"""Search over one market's catalogs: one index per market, rebuilt when a catalog changes.

`catalog.index` finds what a request's words match; `catalog.ranking` orders it. This module
keeps the per-market indexes fresh and is what the rest of Vitrine calls.
"""

from __future__ import annotations

import ctypes
import gc
import threading

from sqlalchemy.engine import Engine
from sqlmodel import Session

from catalog.columns import IndexedProduct, product_ref
from catalog.index import CatalogIndex
from catalog.ranking import RankedProduct, SearchRequest, choose, diversify, rank, score_all
from catalog.sponsorship import sponsored_refs
from catalog.store import catalog_revision, iter_products_for_market

# From this many products, building an index is followed by `_settle_memory`.
SETTLE_AFTER = 10_000

__all__ = ["CatalogIndex", "CatalogSearch", "IndexedProduct", "RankedProduct", "SearchRequest",
           "choose", "diversify", "product_ref", "rank", "score_all"]


class CatalogSearch:
    """Search over every merchant of a market, with one index per market kept fresh."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._indexes: dict[str, tuple[tuple[int, ...], CatalogIndex]] = {}
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
                # Let go of the stale index first: at a million products, two side by side
                # would double the memory. Searches wait on the lock meanwhile either way.
                self._indexes.pop(market, None)
                index = CatalogIndex(iter_products_for_market(session=session, market=market),
                                     sponsored=sponsored_refs(session=session, market=market))
                self._indexes[market] = (revision, index)
                if len(index.products) >= SETTLE_AFTER:
                    _settle_memory()
                return index

    def search(self, request: SearchRequest) -> list[RankedProduct]:
        """The cards for a request: scored, then chosen (diverse, at most one sponsored)."""
        return rank(self.index(request.market), request)

    def scored(self, request: SearchRequest) -> list[RankedProduct]:
        """The eligible products that can reach the cards, scored, best first (see
        `catalog.ranking.score_all`), before the cards are chosen."""
        return score_all(self.index(request.market), request)


def _settle_memory() -> None:
    """After building a large index, make the process cheap to keep running.

    What is alive now (the application and the indexes) stays alive for long: frozen, the
    garbage collector stops walking it on every full collection, which otherwise paused
    a chat turn for 60 to 150 ms every few dozen requests. And glibc hands back the
    memory the build freed (at a million products, 0.9 GB resident instead of 1.4 GB).
    """
    gc.collect()
    gc.freeze()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass
