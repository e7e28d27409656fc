"""Search over one market's catalogs: one index per market, rebuilt when a catalog changes.

`catalog.index` finds what a request's words match; `catalog.ranking` orders it. This module
keeps the per-market indexes fresh and is what the rest of Vitrine calls.
"""

from __future__ import annotations

import ctypes
import gc
import threading
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session as OrmSession
from sqlmodel import Session, select

from catalog.columns import IndexedProduct, product_ref
from catalog.index import CatalogIndex
from catalog.models import Merchant, MerchantKind
from catalog.ranking import RankedProduct, SearchRequest, choose, diversify, rank, score_all
from catalog.sponsorship import sponsored_refs
from catalog.store import catalog_revision, iter_products_for_market
from core.db import joined_or_own
from core.turns import needs_a_thread

# From this many products, building an index is followed by `_settle_memory`.
SETTLE_AFTER = 10_000

# session.info key: the revisions a transaction read, by market (see `CatalogSearch.revision`).
_REVISIONS = "vitrine_catalog_revisions"

__all__ = ["CatalogIndex", "CatalogSearch", "IndexedProduct", "MarketMerchants",
           "RankedProduct", "SearchRequest", "choose", "diversify", "product_ref", "rank",
           "score_all"]


@dataclass(frozen=True)
class MarketMerchants:
    """Who sells in a market, as of one catalog revision."""

    names: dict[str, str]  # every merchant's name, by slug
    live: bool  # whether any is a live merchant (asked at query time over MCP)


class CatalogSearch:
    """Search over every merchant of a market, with one index per market kept fresh."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._indexes: dict[str, tuple[tuple[int, ...], CatalogIndex]] = {}
        self._merchants: dict[str, tuple[tuple[int, ...], MarketMerchants]] = {}
        self._lock = threading.Lock()

    def revision(self, market: str, session: Session | None = None) -> tuple[int, ...]:
        """The market's catalog revision (`catalog.store.catalog_revision`). Within a caller's
        transaction it is read once: a chat turn needs it for the store names, the index and
        the live merchants, and what the turn itself changes is not committed before it ends
        (an index built from its own connection never saw it either)."""
        if session is None:
            with Session(self._engine) as own:
                return catalog_revision(session=own, market=market)
        seen = session.info.setdefault(_REVISIONS, {})
        revision = seen.get(market)
        if revision is None:
            revision = seen[market] = catalog_revision(session=session, market=market)
        return revision

    @staticmethod
    def knew_revision(session: Session, market: str, revision: tuple[int, ...]) -> None:
        """Keep for this transaction a revision read with other things
        (`catalog.store.revision_of`), so `revision` asks the database nothing."""
        session.info.setdefault(_REVISIONS, {})[market] = revision

    def merchants(self, market: str, session: Session | None = None) -> MarketMerchants:
        """The market's merchants, read again only when its catalogs change (a merchant added
        or removed changes the revision's count and largest id)."""
        revision = self.revision(market, session)
        cached = self._merchants.get(market)
        if cached is not None and cached[0] == revision:
            return cached[1]
        with joined_or_own(self._engine, session) as reader:
            rows = reader.exec(select(Merchant.slug, Merchant.name, Merchant.kind)
                               .where(Merchant.market == market)).all()
        found = MarketMerchants(names={slug: name for slug, name, _ in rows},
                                live=any(kind == MerchantKind.MCP for _, _, kind in rows))
        self._merchants[market] = (revision, found)
        return found

    def index(self, market: str, session: Session | None = None) -> CatalogIndex:
        """The market's index, built again when its revision changed."""
        cached = self._indexes.get(market)
        if cached and cached[0] == self.revision(market, session):
            return cached[1]
        needs_a_thread()  # a big catalog's index takes seconds to build
        with Session(self._engine) as own:
            # Keyed by what its own connection reads, never by a caller's uncommitted change.
            revision = catalog_revision(session=own, market=market)
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
                index = CatalogIndex(iter_products_for_market(session=own, market=market),
                                     sponsored=sponsored_refs(session=own, market=market))
                self._indexes[market] = (revision, index)
                if len(index.products) >= SETTLE_AFTER:
                    _settle_memory()
                return index

    def search(self, request: SearchRequest) -> list[RankedProduct]:
        """The cards for a request: scored, then chosen (diverse, at most one sponsored)."""
        return rank(self.index(request.market), request)

    def scored(self, request: SearchRequest,
               session: Session | None = None) -> list[RankedProduct]:
        """The eligible products that can reach the cards, scored, best first (see
        `catalog.ranking.score_all`), before the cards are chosen."""
        return score_all(self.index(request.market, session), request)


@event.listens_for(OrmSession, "after_transaction_end")
def _forget_revisions(session: OrmSession, transaction: Any) -> None:
    if transaction.parent is None:  # the next transaction reads what was committed since
        session.info.pop(_REVISIONS, None)


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
