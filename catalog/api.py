"""Merchant API: registration (admin), health, and products pushed with the merchant's key."""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, StringConstraints
from sqlmodel import Session

from adapters.push import DeleteBatch, UpsertBatch
from catalog.health import MerchantHealth, merchant_health
from catalog.merchants import (
    api_key_matches,
    delete_products,
    upsert_products,
)
from catalog.models import Merchant, MerchantKind, MerchantPublic
from catalog.onboarding import ConformanceFailed, Onboarding
from catalog.sponsorship import MAX_SPONSORED, UnknownProducts, set_sponsored, sponsored_ids
from catalog.store import get_merchant
from catalog.sync import FeedSyncState, queue_sync, sync_state
from core.auth import bearer, require_bearer
from core.db import session_scope
from core.errors import InvalidInput, SignatureError

router = APIRouter(prefix="/api/merchants", tags=["merchants"])


class MerchantRegistration(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    market: str = Field(min_length=2, max_length=2)
    kind: MerchantKind = MerchantKind.PUSH
    slug: str | None = Field(default=None, max_length=64)
    feed_url: str | None = Field(default=None, max_length=2000)
    refresh: str | None = Field(default=None, max_length=10)
    mcp_url: str | None = Field(default=None, max_length=2000)


class Registered(BaseModel):
    merchant: MerchantPublic
    api_key: str
    api_key_note: str = "shown once: store it now, Vitrine keeps only its hash"
    feed: dict[str, Any] | None = None  # the first import: products, rejected rows, reasons
    conformance: dict[str, Any] | None = None  # the MCP server's check, step by step
    # A feed's first sync, queued for the worker: {"job": id, "status": "queued"}.
    sync: dict[str, Any] | None = None


class MerchantHealthReport(MerchantHealth):
    sync: FeedSyncState | None = None  # a feed merchant's latest sync job


def _runtime(request: Request):
    return request.app.state.runtime


def require_admin(request: Request, authorization: Annotated[str | None, Header()] = None
                  ) -> None:
    """Reject requests without `Authorization: Bearer <VITRINE_ADMIN_TOKEN>`."""
    require_bearer(authorization, _runtime(request).settings.admin_token, what="admin")


def _merchant_with_key(session: Session, slug: str, authorization: str | None) -> Merchant:
    merchant = get_merchant(session=session, slug=slug)
    if not api_key_matches(merchant, bearer(authorization)):
        raise SignatureError(f"missing or wrong API key for merchant {slug!r}")
    return merchant


def _merchant_for_admin_or_key(session: Session, slug: str, authorization: str | None,
                               admin_token: str) -> Merchant:
    token = bearer(authorization)
    merchant = get_merchant(session=session, slug=slug)
    is_admin = token is not None and hmac.compare_digest(token.encode(), admin_token.encode())
    if not is_admin and not api_key_matches(merchant, token):
        raise SignatureError("this needs the admin token or the merchant's API key")
    return merchant


def _merchant_for_key(session: Session, slug: str, authorization: str | None) -> Merchant:
    merchant = _merchant_with_key(session, slug, authorization)
    if merchant.kind != MerchantKind.PUSH:
        raise InvalidInput(f"merchant {slug!r} sends its catalog as a {merchant.kind.value}; "
                           "pushed products would never be shown")
    return merchant


@router.post("", status_code=201, response_model=Registered,
             responses={202: {"description": "a feed merchant, its first sync queued"}},
             dependencies=[Depends(require_admin)])
def register(body: MerchantRegistration, request: Request,
             response: Response) -> Registered | JSONResponse:
    """Register a merchant after checking its catalog; the API key is shown only here."""
    onboarding: Onboarding = _runtime(request).onboarding
    if body.kind == MerchantKind.FEED:
        # A path would read the server's own files: over the API, feeds come by URL. The
        # download and import are the worker's: their outcome shows in the health report.
        done = onboarding.queue_feed(name=body.name, market=body.market,
                                     url=body.feed_url or "", slug=body.slug,
                                     refresh=body.refresh)
        response.status_code = 202
    elif body.kind == MerchantKind.MCP:
        try:
            done = onboarding.mcp(name=body.name, market=body.market, url=body.mcp_url or "",
                                  slug=body.slug)
        except ConformanceFailed as exc:
            return JSONResponse({"error": "conformance_failed", "reason": exc.reason,
                                 "conformance": exc.report.as_dict(),
                                 "report": exc.report.as_text()}, status_code=422)
    else:
        done = onboarding.push(name=body.name, market=body.market, slug=body.slug)
    return Registered(
        merchant=MerchantPublic.model_validate(done.merchant, from_attributes=True),
        api_key=done.api_key,
        feed=done.feed_report.as_dict() if done.feed_report else None,
        conformance=done.conformance.as_dict() if done.conformance else None,
        sync={"job": done.sync.id, "status": done.sync.status} if done.sync else None)


@router.get("/{slug}/health", response_model=MerchantHealthReport)
def health(slug: str, request: Request,
           authorization: Annotated[str | None, Header()] = None) -> MerchantHealthReport:
    """A merchant's status, last sync, product count, error rate and p95 latency."""
    runtime = _runtime(request)
    with Session(runtime.engine) as session:
        merchant = _merchant_for_admin_or_key(session, slug, authorization,
                                              runtime.settings.admin_token)
        report = merchant_health(session=session, merchant=merchant)
        sync = sync_state(session, slug=slug) if merchant.kind == MerchantKind.FEED else None
    return MerchantHealthReport(**report.model_dump(), sync=sync)


@router.post("/{slug}/sync", status_code=202)
def sync(slug: str, request: Request,
         authorization: Annotated[str | None, Header()] = None) -> dict[str, Any]:
    """Queue a sync of a feed merchant's catalog (one already queued or running stands)."""
    runtime = _runtime(request)
    with session_scope(runtime.engine) as session:
        merchant = _merchant_for_admin_or_key(session, slug, authorization,
                                              runtime.settings.admin_token)
        job = queue_sync(session, merchant=merchant)
    return {"job": job.id, "status": job.status}


@router.put("/{slug}/products")
def put_products(slug: str, body: UpsertBatch, request: Request,
                 authorization: Annotated[str | None, Header()] = None) -> JSONResponse:
    """Upsert a batch of the merchant's products; each bad item is reported on its own."""
    with session_scope(_runtime(request).engine) as session:
        merchant = _merchant_for_key(session, slug, authorization)
        report = upsert_products(session=session, merchant=merchant, batch=body)
    status = 200 if report.upserted or not report.errors else 422
    return JSONResponse(report.as_dict(), status_code=status)


@router.delete("/{slug}/products")
def remove_products(slug: str, body: DeleteBatch, request: Request,
                    authorization: Annotated[str | None, Header()] = None) -> JSONResponse:
    """Delete some of the merchant's products by their ids."""
    with session_scope(_runtime(request).engine) as session:
        merchant = _merchant_for_key(session, slug, authorization)
        report = delete_products(session=session, merchant=merchant, batch=body)
    return JSONResponse(report.as_dict())


ProductId = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class Sponsorship(BaseModel):
    product_ids: list[ProductId] = Field(max_length=MAX_SPONSORED)


@router.get("/{slug}/sponsored")
def get_sponsored(slug: str, request: Request,
                  authorization: Annotated[str | None, Header()] = None) -> dict[str, Any]:
    """The merchant's sponsored products."""
    with Session(_runtime(request).engine) as session:
        merchant = _merchant_with_key(session, slug, authorization)
        return {"sponsored": sponsored_ids(session=session, merchant=merchant),
                "max": MAX_SPONSORED}


@router.put("/{slug}/sponsored")
def put_sponsored(slug: str, body: Sponsorship, request: Request,
                  authorization: Annotated[str | None, Header()] = None) -> JSONResponse:
    """Replace the merchant's sponsored products; ids not in its catalog are reported."""
    with session_scope(_runtime(request).engine) as session:
        merchant = _merchant_with_key(session, slug, authorization)
        if merchant.kind == MerchantKind.MCP:
            raise InvalidInput(f"merchant {slug!r} is searched live on its own server; "
                               "sponsoring is for catalogs Vitrine holds (feed or push)")
        try:
            sponsored, unknown = set_sponsored(session=session, merchant=merchant,
                                               product_ids=body.product_ids)
        except UnknownProducts as exc:
            return JSONResponse({"reason": exc.reason, "sponsored": sponsored_ids(
                session=session, merchant=merchant), "unknown": exc.product_ids},
                status_code=422)
    return JSONResponse({
        "sponsored": sponsored, "unknown": unknown,
        "note": "a sponsored product is shown only when it is nearly as relevant as the best "
                "result, at most one per answer, always labelled"})
