"""The HTTP app: wires routers, static demo media and error responses. Nothing else."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Route

from bot.channels import telegram, web, whatsapp
from bot.channels.mcp import build_vitrine_mcp_app
from catalog import api as merchants_api
from catalog.ucp_server import build_merchant_mcp_app
from checkout import api as orders_api
from checkout import sandbox_page, shopper_pages, webhooks
from core.errors import (
    InvalidInput,
    NotFound,
    PaymentProviderError,
    SignatureError,
    VitrineError,
)
from core.logs import RequestIdMiddleware, configure_logging
from core.markets import get_market
from ops import api as ops_api
from ops import dashboard as ops_dashboard
from ops import metrics as ops_metrics
from vitrine.runtime import DEMO_DIR, Runtime, build_runtime
from vitrine.serving import settle_heap
from vitrine.workers import ChannelWorkers

log = logging.getLogger("vitrine")


def create_worker_app() -> FastAPI:
    """The app of one of `vitrine serve --workers N`'s processes (a uvicorn factory): its own
    runtime from settings, no background jobs, logs in the parent's format."""
    runtime = build_runtime()
    # A spawned worker starts with Python's default logging, not the parent's set-up.
    configure_logging(runtime.settings.log_format)
    app = create_app(runtime, channel_workers=False)
    settle_heap()
    return app


def _error(status: int, code: str, reason: str) -> JSONResponse:
    return JSONResponse({"error": code, "reason": reason}, status_code=status)


def create_app(runtime: Runtime | None = None, *, channel_workers: bool = False) -> FastAPI:
    """Build the FastAPI app around a runtime (one is built from settings if not given).

    `channel_workers`: while the app runs, also poll Telegram or register its webhook, and
    push queued messages to Telegram and WhatsApp (`vitrine serve` asks for them).
    """
    runtime = runtime or build_runtime()
    merchant_mcp = build_merchant_mcp_app(runtime.engine)
    vitrine_mcp = build_vitrine_mcp_app(lambda text, market, limit: runtime.assistant.recommend(
        text, market=get_market(market), limit=limit).as_dict())

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        workers = ChannelWorkers(runtime) if channel_workers else None
        if workers is not None:
            for line in await anyio.to_thread.run_sync(workers.start):
                log.info("%s", line)
        try:
            async with merchant_mcp.lifespan(), vitrine_mcp.lifespan():
                yield
        finally:
            if workers is not None:  # before the runtime's connections close
                await anyio.to_thread.run_sync(workers.stop)
            await anyio.to_thread.run_sync(runtime.close)

    app = FastAPI(title="Vitrine", version="0.1.0", lifespan=lifespan)
    app.state.runtime = runtime
    metrics = app.state.metrics = ops_metrics.Metrics(engine=runtime.engine)
    # The runtime's parts report to the metrics of the last app built around it.
    runtime.assistant.observe_latency = metrics.observe_recommendation
    runtime.federated.observe_call = metrics.observe_live_call

    app.include_router(web.router)
    app.include_router(web.page_router)
    app.include_router(webhooks.router)
    if runtime.whatsapp is not None:
        # Only when configured: an unconfigured deployment exposes no WhatsApp route at all.
        app.include_router(whatsapp.router)
    if runtime.telegram is not None and runtime.settings.telegram_mode == "webhook":
        # Same for Telegram; in polling mode (`vitrine telegram poll`) nothing calls in.
        app.include_router(telegram.router)
    app.include_router(shopper_pages.router)
    app.include_router(sandbox_page.router)
    app.include_router(ops_api.router)
    app.include_router(ops_api.merchant_router)
    app.include_router(ops_dashboard.router)
    app.include_router(ops_metrics.router)
    app.include_router(merchants_api.router)
    app.include_router(orders_api.router)
    app.include_router(orders_api.merchant_router)
    app.mount("/media/demo", StaticFiles(directory=DEMO_DIR / "media"), name="demo-media")
    app.mount("/mcp/merchants", merchant_mcp.app)
    # An exact route: `/mcp` must not redirect to `/mcp/`, MCP clients do not follow it.
    app.router.routes.append(Route("/mcp", vitrine_mcp.app))

    # The middleware added last runs first: the request id is set before anything is timed.
    app.add_middleware(ops_metrics.HttpMetrics, metrics=metrics, routes=app.router.routes,
                       rails=frozenset(runtime.rails))
    app.add_middleware(RequestIdMiddleware)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        """Report that the process is up."""
        return {"status": "ok"}

    @app.exception_handler(SignatureError)
    async def _unauthorized(_: Request, exc: SignatureError) -> JSONResponse:
        return _error(401, "unauthorized", exc.reason)

    @app.exception_handler(NotFound)
    async def _not_found(_: Request, exc: NotFound) -> JSONResponse:
        return _error(404, "not_found", exc.reason)

    @app.exception_handler(InvalidInput)
    async def _invalid(_: Request, exc: InvalidInput) -> JSONResponse:
        return _error(400, "invalid_input", exc.reason)

    @app.exception_handler(PaymentProviderError)
    async def _provider(_: Request, exc: PaymentProviderError) -> JSONResponse:
        # A provider's webhook answered 502 is delivered again later, as it should be.
        log.warning("payment provider failed: %s %s", exc.reason, exc.context)
        return _error(502, "provider_unavailable", exc.reason)

    @app.exception_handler(VitrineError)
    async def _vitrine(_: Request, exc: VitrineError) -> JSONResponse:
        log.error("request failed: %s %s", exc.reason, exc.context)
        return _error(500, "internal_error", "the request could not be completed")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {400: "bad_request", 401: "unauthorized", 404: "not_found",
                405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse({"error": code, "reason": str(exc.detail)},
                            status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
        return JSONResponse({"error": "invalid_request", "reason": f"{where}: {first['msg']}",
                             "detail": [{"loc": list(e.get("loc", ())), "msg": e.get("msg")}
                                        for e in errors]}, status_code=422)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return _error(500, "internal_error", "the request could not be completed")

    return app
