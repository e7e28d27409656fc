"""The page a hosted checkout sends the shopper back to: `GET /api/payments/{rail}/return`.

It only says where to go next. Coming back proves nothing about the payment (anyone can open
this address), so the order changes only when the provider's signed webhook arrives.
"""

from __future__ import annotations

import html

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from sqlmodel import Session, select

from checkout.models import Order
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
