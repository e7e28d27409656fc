"""Pages a shopper opens while paying, outside the chat.

- `GET /api/payments/{rail}/return`: where a hosted checkout sends the shopper back. It only
  says where to go next. Coming back proves nothing about the payment (anyone can open this
  address), so the order changes only when the provider's signed webhook arrives.
- `GET /api/payments/qr/{order_id}.png` (or `.svg`): the QR code of an order awaiting
  payment (Pix, UPI, a SEPA transfer), for channels that show images. The order id is a
  64-bit random token the shopper already holds, like a payment link; the code shows what
  the chat already said, and only while the order awaits payment.
"""

from __future__ import annotations

import html

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlmodel import Session, select

from checkout import qr
from checkout.models import Order, OrderStatus
from core.errors import NotFound
from core.i18n import Translator

router = APIRouter(prefix="/api/payments", tags=["payments"], include_in_schema=False)

PAGE = """<!doctype html><html lang="{lang}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>Vitrine</title>
<style>body{{font-family:system-ui,sans-serif;max-width:28rem;margin:3rem auto;padding:0 1rem;
line-height:1.5}}</style></head><body><p>{text}</p></body></html>"""


@router.get("/{rail_name}/return", response_class=HTMLResponse)
def payment_return(rail_name: str, request: Request, txid: str = Query(default="", max_length=40),
                   result: str = Query(default="success", max_length=20)) -> HTMLResponse:
    """Tell a shopper back from a hosted checkout to return to the chat."""
    with Session(request.app.state.runtime.engine) as session:
        order = session.exec(select(Order).where(Order.txid == txid)).first() if txid else None
    language = order.language if order is not None else "en"
    t = Translator(language)
    if result in ("success", "pending"):
        text = t.gettext("Thank you! You can go back to the chat: I will confirm your payment "
                         "there as soon as the payment provider tells me.")
    else:
        text = t.gettext("The payment was not completed and nothing was charged. You can go "
                         "back to the chat and try again.")
    return HTMLResponse(PAGE.format(lang=html.escape(language), text=html.escape(text)))


@router.get("/qr/{order_id}.{kind}")
def payment_qr(order_id: str, kind: str, request: Request) -> Response:
    """Draw the QR code an order awaiting payment is paid with."""
    if kind not in ("png", "svg"):
        raise NotFound("a QR code is a .png or an .svg")
    with Session(request.app.state.runtime.engine) as session:
        order = session.get(Order, order_id)
    text = (order.payment or {}).get("qr") if order is not None else None
    if order is None or order.status != OrderStatus.AWAITING_PAYMENT or not text:
        raise NotFound(f"no payment awaiting a QR code for order {order_id!r}")
    if kind == "png":
        return Response(qr.png(str(text)), media_type="image/png",
                        headers={"Cache-Control": "no-store"})
    return Response(qr.svg(str(text)), media_type="image/svg+xml",
                    headers={"Cache-Control": "no-store"})
