"""Metrics in Prometheus' text format at `GET /metrics`.

Each app keeps its metrics in a registry of its own (`Metrics`), reachable as
`app.state.metrics`; the app hands the conversation and the live merchants' search a
function to report to, so nothing here is global. What is measured:

- `vitrine_http_request_duration_seconds{method, route, status}`: every HTTP request, by the
  route's template (`/api/orders/{order_id}`), never the raw path;
- `vitrine_webhook_failures_total{source, reason}`: payment providers' and channels' webhooks
  answered 401/403 (`signature`), another 4xx (`invalid`) or 5xx (`error`);
- `vitrine_recommendation_duration_seconds`: from a shopper's message to the cards shown;
- `vitrine_live_merchant_duration_seconds{merchant, operation}` and
  `vitrine_live_merchant_errors_total{merchant, operation}`: calls to live merchants' servers;
- `vitrine_orders{status}`: orders by status, counted in the database at each scrape.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Iterable, Sequence
from typing import Any

from fastapi import APIRouter, Header, Request
from fastapi.responses import Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, func, select
from starlette.routing import BaseRoute, Match, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from checkout.models import Order, OrderStatus
from core.auth import require_bearer

router = APIRouter(tags=["ops"])
log = logging.getLogger("vitrine.metrics")

UNMATCHED = "unmatched"  # the route label of a request no route serves
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
PAYMENT_WEBHOOK = "/api/payments/{rail_name}/webhook"
CHANNEL_WEBHOOKS = {"/webhooks/whatsapp": "whatsapp", "/webhooks/telegram": "telegram"}


class OrdersByStatus:
    """`vitrine_orders{status}`: one GROUP BY over orders per scrape; every status is listed,
    at zero when no order has it."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily("vitrine_orders", "Orders by status.", labels=["status"])

    def describe(self) -> Iterable[Metric]:
        return [self._family()]

    def collect(self) -> Iterable[Metric]:
        try:
            with Session(self.engine) as session:
                rows = session.exec(select(Order.status, func.count())
                                    .group_by(Order.status)).all()
        except SQLAlchemyError:
            # The other metrics are still worth a scrape when the database is away.
            log.warning("orders by status could not be counted", exc_info=True)
            return []
        counts = {str(status): count for status, count in rows}
        family = self._family()
        for status in sorted({s.value for s in OrderStatus} | counts.keys()):
            family.add_metric([status], counts.get(status, 0))
        return [family]


class Metrics:
    """One app's metrics, in a registry of their own (tests build many apps)."""

    def __init__(self, *, engine: Engine | None = None) -> None:
        self.registry = CollectorRegistry()
        self.http_duration = Histogram(
            "vitrine_http_request_duration_seconds", "HTTP requests, by route template.",
            ["method", "route", "status"], registry=self.registry)
        self.webhook_failures = Counter(
            "vitrine_webhook_failures", "Webhook calls refused or failed, by source and reason.",
            ["source", "reason"], registry=self.registry)
        self.recommendation_duration = Histogram(
            "vitrine_recommendation_duration_seconds",
            "Time from a shopper's request to the cards shown.", registry=self.registry)
        self.live_duration = Histogram(
            "vitrine_live_merchant_duration_seconds", "Calls to live merchants' servers.",
            ["merchant", "operation"], registry=self.registry)
        self.live_errors = Counter(
            "vitrine_live_merchant_errors",
            "Calls to live merchants that failed or timed out.",
            ["merchant", "operation"], registry=self.registry)
        if engine is not None:
            self.registry.register(OrdersByStatus(engine))

    def observe_request(self, *, method: str, route: str, status: int, seconds: float,
                        webhook: str | None = None) -> None:
        """Count one HTTP request; `webhook` names its source when it came to a webhook."""
        method = method if method in METHODS else "other"
        self.http_duration.labels(method=method, route=route, status=str(status)) \
            .observe(seconds)
        if webhook is not None and status >= 400:
            reason = "signature" if status in (401, 403) else \
                "error" if status >= 500 else "invalid"
            self.webhook_failures.labels(source=webhook, reason=reason).inc()

    def observe_recommendation(self, seconds: float) -> None:
        """Count one answer with cards (or with none: a catalog gap is an answer too)."""
        self.recommendation_duration.observe(seconds)

    def observe_live_call(self, merchant: str, operation: str, seconds: float,
                          ok: bool) -> None:
        """Count one call to a live merchant (`search` or `lookup`), and its failure."""
        self.live_duration.labels(merchant=merchant, operation=operation).observe(seconds)
        if not ok:
            self.live_errors.labels(merchant=merchant, operation=operation).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def mount_of(routes: Sequence[BaseRoute], scope: Scope) -> str | None:
    """The template of the mount that will serve a request (`/media/demo/{path}`), if a mount
    will: the app behind it routes the rest on its own, under its own templates."""
    for route in routes:
        match, _ = route.matches(scope)
        if match == Match.FULL:
            return route.path_format if isinstance(route, Mount) else None
    return None


def template_of(scope: Scope) -> str:
    """The template of the route that served a request, as the router left it in the scope.

    A route that matched the path but not the method (405) still names it; a path no route
    matched is `UNMATCHED`, so that stray paths cannot add labels.
    """
    return getattr(scope.get("route"), "path_format", None) or UNMATCHED


def webhook_source(route: str, params: dict[str, Any], rails: Collection[str]) -> str | None:
    """Who calls a webhook route (a payment rail's name, `whatsapp`, `telegram`), or None
    for any other route."""
    if route == PAYMENT_WEBHOOK:
        name = params.get("rail_name")
        return name if name in rails else "unknown"
    return CHANNEL_WEBHOOKS.get(route)


class HttpMetrics:
    """ASGI middleware: times each HTTP request by route template and counts webhook
    failures from the status answered."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics, routes: Sequence[BaseRoute],
                 rails: Collection[str]) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes  # the app's own list: routes added later are seen
        self.rails = rails

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        mount = mount_of(self.routes, scope)
        status = 500  # unless a response starts: an exception becomes a 500 further out

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_status)
        finally:
            route = mount or template_of(scope)
            self.metrics.observe_request(
                method=scope["method"], route=route, status=status,
                seconds=time.perf_counter() - started,
                webhook=webhook_source(route, scope.get("path_params", {}), self.rails))


@router.get("/metrics", response_class=Response)
def metrics(request: Request, authorization: str | None = Header(default=None)) -> Response:
    """Vitrine's metrics in Prometheus' text format (behind VITRINE_METRICS_TOKEN if set)."""
    token = request.app.state.runtime.settings.metrics_token
    if token:
        require_bearer(authorization, token, what="metrics")
    return Response(request.app.state.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
