"""Payment provider webhooks: signature first, then exactly-once application."""

from __future__ import annotations

import json
import secrets

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError
from sqlalchemy.engine import Engine

from checkout.models import OrderStatus
from checkout.notices import failed_text, paid_text
from checkout.rails import RailOutcome
from checkout.service import EventOutcome, apply_payment_event
from checkout.signatures import hmac_sha256_hex, verify_sha256_header
from core.db import session_scope
from core.errors import InvalidInput, SignatureError
from core.i18n import Translator
from core.markets import get_market
from core.outbox import notify

router = APIRouter(prefix="/api/payments", tags=["payments"])

SANDBOX_SIGNATURE_HEADER = "X-Vitrine-Signature"


class SandboxEvent(BaseModel):
    event_id: str = Field(min_length=1, max_length=200)
    txid: str = Field(min_length=1, max_length=40)
    status: str = Field(pattern=r"^(paid|failed)$")


SANDBOX_OUTCOMES = {"paid": RailOutcome.CAPTURED, "failed": RailOutcome.FAILED}


def sandbox_event(*, secret: str, txid: str, status: str,
                  event_id: str | None = None) -> tuple[bytes, dict[str, str]]:
    """The body and headers the sandbox provider sends for a payment's outcome."""
    body = json.dumps({"event_id": event_id or "evt_" + secrets.token_hex(8), "txid": txid,
                       "status": status}).encode()
    return body, {"Content-Type": "application/json",
                  SANDBOX_SIGNATURE_HEADER: "sha256=" + hmac_sha256_hex(secret, body)}


def process_sandbox_webhook(*, engine: Engine, secret: str, body: bytes,
                            signature: str | None) -> EventOutcome:
    """Verify, parse and apply one sandbox provider event; tell the shopper the result.

    Raises:
        SignatureError: the signature is missing or wrong (nothing is read or stored).
        InvalidInput: the body is not a sandbox event.
    """
    if not verify_sha256_header(secret=secret, body=body, header=signature):
        raise SignatureError("missing or invalid X-Vitrine-Signature")
    try:
        event = SandboxEvent.model_validate(json.loads(body))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        raise InvalidInput("body is not JSON") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        raise InvalidInput(f"{'.'.join(map(str, first['loc'])) or 'body'}: {first['msg']}") \
            from None
    with session_scope(engine) as session:
        result = apply_payment_event(session=session, provider="sandbox",
                                     event_id=event.event_id, txid=event.txid,
                                     outcome=SANDBOX_OUTCOMES[event.status])
        order = result.order
        if result.outcome == EventOutcome.APPLIED and order is not None:
            t = Translator(order.language)
            text = paid_text(order, get_market(order.market), t) \
                if order.status == OrderStatus.PAID else failed_text(order, t)
            notify(session, user_key=order.user_key, text=text)
    return result.outcome


@router.post("/sandbox/webhook")
async def sandbox_webhook(request: Request) -> JSONResponse:
    """Receive a signed event from the sandbox payment provider."""
    runtime = request.app.state.runtime
    body = await request.body()
    outcome = await run_in_threadpool(
        process_sandbox_webhook, engine=runtime.engine, secret=runtime.settings.sandbox_secret,
        body=body, signature=request.headers.get(SANDBOX_SIGNATURE_HEADER))
    if outcome == EventOutcome.UNKNOWN_TXID:
        return JSONResponse({"error": "unknown_txid", "reason": "no order has this txid"},
                            status_code=404)
    return JSONResponse({"status": outcome.value})
