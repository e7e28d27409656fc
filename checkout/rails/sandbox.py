"""The development payment provider: a hosted checkout page whose payment arrives as a
signed webhook, exactly like a real provider's would.

It also stands in for the payment provider behind the push rails (Pix, UPI, a SEPA
transfer, an OXXO voucher) while developing: its webhook may settle their orders by txid.
"""

from __future__ import annotations

import json
import secrets
import time

from pydantic import BaseModel, Field

from checkout.models import Order
from checkout.rails import (
    SIGNED_NOTICE_HEADER,
    PaymentInstructions,
    RailEvent,
    RailOutcome,
    RefundOutcome,
    RefundResult,
    WebhookRequest,
    read_signed_notice,
)
from checkout.signatures import hmac_sha256_hex
from core.errors import SignatureError

SIGNATURE_HEADER = SIGNED_NOTICE_HEADER
OUTCOMES = {"paid": RailOutcome.CAPTURED, "failed": RailOutcome.FAILED,
            "expired": RailOutcome.FAILED, "refunded": RailOutcome.REFUNDED}


class SandboxEvent(BaseModel):
    event_id: str = Field(min_length=1, max_length=200)
    txid: str = Field(min_length=1, max_length=40)
    status: str = Field(pattern=r"^(paid|failed|expired|refunded)$")
    amount: int | None = Field(default=None, ge=0)
    currency: str | None = Field(default=None, min_length=3, max_length=3)
    # When the provider signed this delivery (Unix time). Optional, as the first version of
    # this webhook had none; when present it must be within the replay window.
    sent_at: int | None = None


REPLAY_WINDOW = 300


def sandbox_event(*, secret: str, txid: str, status: str, event_id: str | None = None,
                  amount: int | None = None, currency: str | None = None
                  ) -> tuple[bytes, dict[str, str]]:
    """The body and headers the sandbox provider sends for a payment's outcome."""
    event: dict[str, object] = {"event_id": event_id or "evt_" + secrets.token_hex(8),
                                "txid": txid, "status": status, "sent_at": int(time.time())}
    if amount is not None:
        event.update(amount=amount, currency=currency)
    body = json.dumps(event).encode()
    return body, {"Content-Type": "application/json",
                  SIGNATURE_HEADER: "sha256=" + hmac_sha256_hex(secret, body)}


class SandboxRail:
    name = "sandbox"

    def __init__(self, *, public_url: str, secret: str,
                 settles: frozenset[str] = frozenset()) -> None:
        self.public_url = public_url.rstrip("/")
        self.secret = secret
        # The rails whose payments this provider confirms, besides its own.
        self.settles = settles | {self.name}

    def initiate(self, order: Order, *, txid: str) -> PaymentInstructions:
        return PaymentInstructions(rail=self.name, status="awaiting_payment", txid=txid,
                                   url=f"{self.public_url}/sandbox/pay/{txid}")

    def parse_webhook(self, request: WebhookRequest) -> list[RailEvent]:
        event = read_signed_notice(request, SandboxEvent, secret=self.secret)
        if event.sent_at is not None and \
                abs((request.received_at or time.time()) - event.sent_at) > REPLAY_WINDOW:
            raise SignatureError("sandbox event is outside the replay window",
                                 event=event.event_id)
        return [RailEvent(event_id=event.event_id, txid=event.txid,
                          outcome=OUTCOMES[event.status],
                          reason="expired" if event.status == "expired" else None,
                          amount=event.amount, currency=event.currency)]

    def status(self, order: Order) -> RailEvent | None:
        return None  # the sandbox only tells by webhook

    def cancel(self, order: Order) -> bool:
        # Its hosted page takes only orders awaiting payment: once the order is canceled,
        # nothing is left to pay there.
        return True

    def refund(self, order: Order) -> RefundResult:
        # The sandbox moves no money: the refund is accepted at once, and confirmed like a
        # real provider's by its webhook ("refunded").
        return RefundResult(RefundOutcome.REFUNDED, provider_ref=f"re_{order.txid}")
