"""Federated search: the local index plus every live merchant of the market, one ranking.

Live merchants' products are validated, checked against the market's rules, ranked with the
same scoring as local products, lowered by the merchant's recent error rate, and kept in the
catalog table as a cache so that checkout can price them from merchant data and re-check
them when they are old.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, timedelta
from typing import TypeVar

import anyio
from anyio.from_thread import BlockingPortal
from sqlalchemy import case
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, func, select

from adapters.base import AdapterResult, CatalogAdapter, CatalogQuery, ShopperContext
from catalog.federation import Federation, LiveAnswer
from catalog.health import WINDOW, record_call
from catalog.merchants import rejection_reason
from catalog.models import CatalogProduct, Merchant, MerchantCall, MerchantKind
from catalog.search import (
    CatalogIndex,
    CatalogSearch,
    IndexedProduct,
    RankedProduct,
    SearchRequest,
    choose,
    score_all,
)
from catalog.store import find_merchant, product_row, upsert_rows
from core.db import joined_or_own, utcnow
from core.errors import AdapterError
from core.markets import get_market
from core.turns import waiting

T = TypeVar("T")
FLAKY_PENALTY = 1.5  # score lost by a merchant that failed every recent call
LIVE_LIMIT = 20  # products asked of each live merchant
RECENT_LIVE = 5000  # live products remembered for "more like this" and buying


class LiveLoop:
    """One long-lived event loop, on its own daemon thread, for every call to live merchants.

    Searches come from worker threads; running each fan-out on a fresh loop would throw away
    the HTTP connections to merchants every time. Started on first use; being a daemon, it
    never keeps the process from exiting, even if nobody closes it.
    """

    def __init__(self) -> None:
        self._portal: BlockingPortal | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def _start(self) -> BlockingPortal:
        ready = threading.Event()
        box: list[BlockingPortal] = []

        async def serve() -> None:
            async with BlockingPortal() as portal:
                box.append(portal)
                ready.set()
                await portal.sleep_until_stopped()

        self._thread = threading.Thread(target=anyio.run, args=(serve,), daemon=True,
                                        name="vitrine-live")
        self._thread.start()
        if not ready.wait(timeout=10):
            raise RuntimeError("the live merchants' event loop did not start")
        return box[0]

    def call(self, func: Callable[..., Awaitable[T]], *args: object) -> T:
        with self._lock:
            if self._portal is None:
                self._portal = self._start()
            portal = self._portal
        # A turn waiting on merchants lets another turn work meanwhile (`core.turns`).
        with waiting():
            return portal.call(func, *args)

    @property
    def started(self) -> bool:
        return self._portal is not None

    def close(self) -> None:
        with self._lock:
            portal, thread = self._portal, self._thread
            self._portal = self._thread = None
        if portal is not None:
            portal.call(portal.stop)
        if thread is not None:
            thread.join(timeout=10)


@dataclass
class FederatedResult:
    ranked: list[RankedProduct]
    unanswered: list[str] = field(default_factory=list)  # names of merchants that did not answer
    dropped: int = 0  # live items that failed validation or the market's rules


class FederatedSearch:
    """One search over local catalogs and live merchants."""

    def __init__(self, *, engine: Engine, local: CatalogSearch,
                 adapter_for: Callable[[Merchant], CatalogAdapter] | None = None,
                 federation: Federation | None = None) -> None:
        self.engine = engine
        self.local = local
        self.adapter_for = adapter_for
        self.federation = federation or Federation()
        self.loop = LiveLoop()
        # Told of each call to a live merchant: slug, operation, seconds, whether it answered.
        self.observe_call: Callable[[str, str, float, bool], None] = lambda *_: None
        self._recent: OrderedDict[str, IndexedProduct] = OrderedDict()
        self._lock = threading.Lock()

    def recheck(self, merchant_slug: str, product_id: str, *, max_age: timedelta,
                session: Session | None = None) -> None:
        """Ask a live merchant again for a product whose cached price is older than `max_age`.

        The cached row is replaced by the merchant's answer, or marked out of stock if the
        merchant no longer has it; if the merchant cannot answer, the row is left as it was
        and checkout decides with what it has (it re-prices from the row before charging).
        Writes go into `session` when given (the caller's transaction), else into their own.
        """
        with Session(self.engine) as reader:
            merchant = find_merchant(session=reader, slug=merchant_slug)
            if merchant is None or merchant.kind != MerchantKind.MCP or self.adapter_for is None:
                return
            row = reader.exec(select(CatalogProduct).where(
                CatalogProduct.merchant_id == merchant.id,
                CatalogProduct.product_id == product_id)).first()
            updated = row.updated_at if row is not None else None
        if updated is not None:
            updated = updated if updated.tzinfo else updated.replace(tzinfo=UTC)
            if utcnow() - updated <= max_age:
                return
        market = get_market(merchant.market)
        adapter = self.adapter_for(merchant)
        context = ShopperContext(country=market.code, language=market.language,
                                 currency=market.currency)
        started = time.monotonic()

        async def lookup() -> AdapterResult:
            return await adapter.lookup([product_id], context=context,
                                        deadline=time.monotonic() + self.federation.per_merchant_s)

        try:
            result = self.loop.call(lookup)
        except AdapterError:
            self.observe_call(merchant.slug, "lookup", time.monotonic() - started, False)
            with joined_or_own(self.engine, session) as writer:
                record_call(writer, merchant=merchant, operation="lookup", ok=False,
                            latency_ms=(time.monotonic() - started) * 1000)
            return
        self.observe_call(merchant.slug, "lookup", time.monotonic() - started, True)
        with joined_or_own(self.engine, session) as session:
            record_call(session, merchant=merchant, operation="lookup", ok=True,
                        latency_ms=(time.monotonic() - started) * 1000, dropped=result.dropped)
            found = [p for p in result.products if p.id == product_id
                     and not rejection_reason(p, market)]
            if found:
                upsert_rows(session=session, merchant=merchant, reindex=False,
                            rows=[product_row(merchant_id=merchant.id or 0, product=found[0])])
            elif row is not None:
                stale = session.get(CatalogProduct, row.id)
                if stale is not None:
                    stale.in_stock = False
                    session.add(stale)

    def product(self, market: str, ref: str,
                session: Session | None = None) -> IndexedProduct | None:
        """A product shown recently, local or live, by its ref."""
        found = self.local.index(market, session).get(ref)
        if found is not None:
            return found
        with self._lock:
            return self._recent.get(ref)

    def search(self, request: SearchRequest, *, language: str,
               session: Session | None = None) -> FederatedResult:
        wide = SearchRequest(**{**request.__dict__, "limit": max(request.limit * 3, 10)})
        local = self.local.scored(wide, session)
        if not self.local.merchants(request.market, session).live:
            return FederatedResult(ranked=choose(local, request))
        with Session(self.engine) as reader:
            live = list(reader.exec(select(Merchant).where(
                Merchant.market == request.market, Merchant.kind == MerchantKind.MCP)))
            error_rates = _error_rates(reader, [m.id for m in live if m.id is not None])
        if not live:
            return FederatedResult(ranked=choose(local, request))
        if self.adapter_for is None:
            return FederatedResult(ranked=choose(local, request),
                                   unanswered=[m.name for m in live])
        query = CatalogQuery(
            text=request.text or " ".join(request.terms + request.soft_terms),
            context=ShopperContext(country=request.market, language=language,
                                   currency=request.currency, intent=request.text or None),
            price_min=request.budget_min, price_max=request.budget_max, limit=LIVE_LIMIT)
        adapters = [self.adapter_for(m) for m in live]
        answers = self.loop.call(self.federation.search, adapters, query)
        ranked, dropped = self._rank_live(live, answers, wide, error_rates, session)
        merged = sorted(local + ranked, key=lambda r: (-r.score, r.product.price_amount,
                                                        r.product.ref))
        return FederatedResult(
            ranked=choose(merged, request), dropped=dropped,
            unanswered=[m.name for m, a in zip(live, answers, strict=True) if not a.ok])

    def _rank_live(self, merchants: list[Merchant], answers: list[LiveAnswer],
                   request: SearchRequest, error_rates: dict[int, float],
                   session: Session | None) -> tuple[list[RankedProduct], int]:
        market = get_market(request.market)
        rows: list[tuple[CatalogProduct, Merchant]] = []
        dropped = 0
        with joined_or_own(self.engine, session) as writer:
            for merchant, answer in zip(merchants, answers, strict=True):
                if not answer.cached and not answer.skipped:
                    record_call(writer, merchant=merchant, operation="search", ok=answer.ok,
                                latency_ms=answer.latency_ms, dropped=answer.dropped)
                    self.observe_call(merchant.slug, "search", answer.latency_ms / 1000, answer.ok)
                dropped += answer.dropped
                fresh = []
                seen: set[str] = set()
                for product in answer.products:
                    if product.id in seen or rejection_reason(product, market):
                        dropped += 1
                        continue
                    seen.add(product.id)
                    fresh.append(product_row(merchant_id=merchant.id or 0, product=product))
                if fresh and not answer.cached:
                    # Kept as a cache for checkout; the local index never lists live merchants.
                    upsert_rows(session=writer, merchant=merchant, rows=fresh, reindex=False)
                rows.extend((CatalogProduct(**row), merchant) for row in fresh)
        index = CatalogIndex(rows)
        ranked = score_all(index, request)
        for item in ranked:
            merchant_id = next(m.id for m in merchants if m.slug == item.product.merchant_slug)
            item.score -= FLAKY_PENALTY * error_rates.get(merchant_id or 0, 0.0)
        with self._lock:
            for shown in index.products:
                self._recent[shown.ref] = shown
                self._recent.move_to_end(shown.ref)
            while len(self._recent) > RECENT_LIVE:
                self._recent.popitem(last=False)
        return ranked, dropped


def _error_rates(session: Session, merchant_ids: list[int]) -> dict[int, float]:
    """Each merchant's share of failed calls among its recent ones."""
    rates = {}
    for merchant_id in merchant_ids:
        recent = select(MerchantCall.ok).where(MerchantCall.merchant_id == merchant_id) \
            .order_by(col(MerchantCall.id).desc()).limit(WINDOW).subquery()
        failures = func.sum(case((recent.c.ok.is_(False), 1), else_=0))
        total, failed = session.exec(select(func.count(), failures)).one()
        if total:
            rates[merchant_id] = float(failed or 0) / total
    return rates
