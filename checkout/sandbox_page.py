"""The sandbox provider's hosted payment page, for development and demos.

Paying here produces the same signed webhook a real provider would send, through the same
verification and exactly-once code path. It is not served in production.
"""

from __future__ import annotations

import html

from fastapi import APIRouter, Form, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse
from sqlmodel import Session, select

from checkout.models import Order
from checkout.rails import WebhookRequest
from checkout.webhooks import process_webhook, sandbox_event
from core.errors import NotFound
from core.money import Money

router = APIRouter(prefix="/sandbox", tags=["sandbox"], include_in_schema=False)

PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sandbox payment</title>
<style>body{{font-family:system-ui,sans-serif;max-width:28rem;margin:2rem auto;padding:0 1rem}}
.box{{border:1px solid #ccc;border-radius:12px;padding:1rem 1.25rem}}
button{{font-size:1rem;padding:.6rem 1.2rem;margin:.5rem .5rem 0 0;border-radius:8px;border:0}}
.pay{{background:#0a7d38;color:#fff}}.fail{{background:#eee}}</style></head><body>
<p><strong>Sandbox payment provider</strong> (development only: no money moves)</p>
<div class="box"><p>{title}<br>{merchant}</p><p><strong>{total}</strong></p>
<p>Reference {txid} · status {status}</p>{form}</div></body></html>"""

FORM = """<form method="post"><button class="pay" name="status" value="paid">Pay</button>
<button class="fail" name="status" value="failed">Decline</button></form>"""


def _order(request: Request, txid: str) -> Order:
    runtime = request.app.state.runtime
    if runtime.settings.env == "production":
        raise NotFound("the sandbox provider is not available in production")
    with Session(runtime.engine) as session:
        order = session.exec(select(Order).where(Order.txid == txid)).first()
    # Only payments the sandbox itself hosts: a Pix or cash order is settled elsewhere, and
    # paying it here would let a shopper mark their own order paid.
    if order is None or order.rail != "sandbox":
        raise NotFound(f"no sandbox payment with reference {txid!r}")
    return order


def _page(order: Order, note: str = "") -> HTMLResponse:
    market = order.shopper_market()
    form = FORM if order.status == "awaiting_payment" else ""
    body = PAGE.format(title=html.escape(order.title), merchant=html.escape(order.merchant_name),
                       total=html.escape(market.format_price(Money(order.total, order.currency))),
                       txid=html.escape(order.txid or ""), status=html.escape(order.status),
                       form=form)
    return HTMLResponse(body.replace("</body>", f"<p>{html.escape(note)}</p></body>"))


@router.get("/pay/{txid}", response_class=HTMLResponse)
def payment_page(txid: str, request: Request) -> HTMLResponse:
    """Show the sandbox checkout page for one payment."""
    return _page(_order(request, txid))


@router.post("/pay/{txid}", response_class=HTMLResponse)
async def pay(txid: str, request: Request, status: str = Form(pattern="^(paid|failed)$")
              ) -> HTMLResponse:
    """Pay or decline, which sends the provider's signed webhook to Vitrine."""
    _order(request, txid)
    runtime = request.app.state.runtime
    secret = runtime.settings.sandbox_secret
    body, headers = sandbox_event(secret=secret, txid=txid, status=status)
    request_in = WebhookRequest(body=body, headers={k.lower(): v for k, v in headers.items()})
    outcome = await run_in_threadpool(process_webhook, engine=runtime.engine,
                                      rail=runtime.rails["sandbox"], request=request_in)
    return _page(_order(request, txid), note=f"Webhook delivered: {outcome.value}")
