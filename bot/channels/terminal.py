"""`vitrine chat`: the conversation in a terminal, buttons as numbers.

`/pay` plays the payment provider for the latest order awaiting payment: it sends a signed
sandbox webhook through the real HTTP route, in process.
"""

from __future__ import annotations

import json
import secrets
import sys
from typing import TextIO

import httpx
from sqlmodel import Session, select

from bot.replies import Message, Reply
from checkout.models import Order, OrderStatus
from checkout.signatures import hmac_sha256_hex


def render(reply: Reply, out: TextIO) -> list[str]:
    """Print a reply; returns the actions of its buttons, numbered from 1."""
    actions: list[str] = []

    def button(label: str, action: str) -> str:
        actions.append(action)
        return f"[{len(actions)}] {label}"

    for message in reply.messages:
        print(message.text, file=out)
        for card in message.cards:
            print(f"\n  {card.position}. {card.title}", file=out)
            print(f"     {card.price_text} · {card.merchant}", file=out)
            print(f"     {card.reason}", file=out)
            print("     " + "  ".join(button(b.label, b.action) for b in card.buttons), file=out)
        if message.buttons:
            print("  " + "\n  ".join(button(b.label, b.action) for b in message.buttons),
                  file=out)
        print(file=out)
    return actions


def _pay_latest(runtime, user_key: str) -> str:
    from vitrine.app import create_app

    with Session(runtime.engine) as session:
        order = session.exec(
            select(Order).where(Order.user_key == user_key,
                                Order.status == OrderStatus.AWAITING_PAYMENT)
            .order_by(Order.created_at.desc())  # type: ignore[attr-defined]
        ).first()
    if order is None or not order.txid:
        return "(no order is awaiting payment)"
    body = json.dumps({"event_id": "evt_" + secrets.token_hex(8), "txid": order.txid,
                       "status": "paid"}).encode()
    signature = "sha256=" + hmac_sha256_hex(runtime.settings.sandbox_secret, body)
    transport = httpx.ASGITransport(app=create_app(runtime))

    async def send() -> httpx.Response:
        async with httpx.AsyncClient(transport=transport, base_url="http://vitrine") as client:
            return await client.post("/api/payments/sandbox/webhook", content=body,
                                     headers={"X-Vitrine-Signature": signature})

    import anyio

    response = anyio.run(send)
    return f"(sandbox provider: webhook for {order.txid} -> {response.status_code})"


def run_terminal_chat(runtime, *, user: str, market: str | None, locale: str | None,
                      stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout) -> int:
    """Chat until end of input; a number presses that button, `/pay` simulates a payment."""
    user_key = f"terminal:{user}"
    print("Vitrine — type a request, a button number, /pay (sandbox payment) or /quit.",
          file=stdout)
    actions: list[str] = []
    first = True
    for line in stdin:
        text = line.strip()
        if text in ("/quit", "/exit"):
            break
        if text == "/pay":
            print(_pay_latest(runtime, user_key), file=stdout)
            reply = runtime.assistant.pending(user_key=user_key)
        elif text.isdigit() and 1 <= int(text) <= len(actions):
            reply = runtime.assistant.handle(user_key=user_key, action=actions[int(text) - 1],
                                             market=market if first else None, locale=locale)
        else:
            reply = runtime.assistant.handle(user_key=user_key, text=text,
                                             market=market if first else None, locale=locale)
        first = False
        new_actions = render(reply, stdout)
        actions = new_actions or actions
        stdout.flush()
    return 0


__all__ = ["Message", "render", "run_terminal_chat"]
