"""UPI: an NPCI deep link (`upi://pay?...`, UPI Linking Specs 1.6) that opens the shopper's
UPI app with the payee, amount and reference filled in, shown as a QR code on a desktop.

The link has no callback: the payee's payment provider (the PSP behind the merchant's VPA)
alone knows whether the money arrived, and posts one JSON object per outcome to
`/api/payments/upi/webhook`, signed over the raw body:

    X-Vitrine-Signature: sha256=<hex HMAC-SHA256(webhook_secret, body)>

    {"event_id": "psp-evt-81723",        unique per notification
     "txid": "VT3K9...",                 the link's `tr`, as the provider quotes it back
     "amount": 149900,                   paise
     "currency": "INR",                  optional; INR when absent
     "status": "SUCCESS" | "FAILURE" | "EXPIRED",   any other status is not_supported
     "utr": "412345678901",              optional: the UPI transaction reference (RRN)
     "sent_at": 1717171717}              Unix time of this delivery, inside the replay window
"""

from __future__ import annotations

import urllib.parse
from datetime import timedelta

from pydantic import Field

from checkout.models import Order
from checkout.rails import (
    SIGNED_NOTICE_HEADER,
    PaymentInstructions,
    RailEvent,
    RailOutcome,
    RefundOutcome,
    RefundResult,
    TimedNotice,
    WebhookRequest,
    read_signed_notice,
)
from core.db import utcnow
from core.errors import InvalidInput

SIGNATURE_HEADER = SIGNED_NOTICE_HEADER
UPI_TXN_LIMIT_PAISE = 1_00_000_00  # NPCI's general per-transaction limit: ₹1,00,000
NOTE_CHARS = 50  # a note the payer's app shows on one line
OUTCOMES: dict[str, tuple[RailOutcome, str | None]] = {
    "SUCCESS": (RailOutcome.CAPTURED, None),
    "FAILURE": (RailOutcome.FAILED, None),
    "EXPIRED": (RailOutcome.FAILED, "expired"),
}


def rupees(paise: int) -> str:
    """Paise as the `am` parameter writes them: 12345 -> "123.45", 100 -> "1.00"."""
    whole, rest = divmod(paise, 100)
    return f"{whole}.{rest:02d}"


def upi_link(*, vpa: str, payee_name: str, txid: str, note: str, paise: int,
             merchant_code: str | None = None) -> str:
    """A `upi://pay` link, spaces as %20 ("+" for a space is form encoding, not a URI's)."""
    params = {"pa": vpa, "pn": payee_name, "tr": txid, "tn": note, "am": rupees(paise),
              "cu": "INR"}
    if merchant_code:
        params["mc"] = merchant_code
    # "@" is legal in a query (RFC 3986 pchar); VPAs are written with it, never as %40.
    return "upi://pay?" + urllib.parse.urlencode(params, safe="@", quote_via=urllib.parse.quote)


class UpiNotice(TimedNotice):
    event_id: str = Field(min_length=1, max_length=200)
    txid: str = Field(min_length=1, max_length=40)
    amount: int = Field(ge=0)
    currency: str = Field(default="INR", pattern=r"^[A-Z]{3}$")
    status: str = Field(min_length=1, max_length=40)
    utr: str | None = Field(default=None, max_length=64)


class UpiRail:
    """A UPI collect-by-link: the payee's PSP confirms the payment by webhook."""

    name = "upi"

    def __init__(self, *, vpa: str, payee_name: str, webhook_secret: str,
                 merchant_code: str | None = None, max_paise: int = UPI_TXN_LIMIT_PAISE,
                 replay_window: int = 300, valid_for: timedelta = timedelta(hours=24)
                 ) -> None:
        """Raises InvalidInput for a VPA that is not `handle@psp`."""
        user, _, psp = vpa.strip().partition("@")
        if not user or not psp or " " in vpa.strip():
            raise InvalidInput(f"not a UPI virtual payment address: {vpa!r}")
        self.vpa = vpa.strip()
        self.payee_name = payee_name.strip()
        self.webhook_secret = webhook_secret
        self.merchant_code = merchant_code
        self.max_paise = max_paise
        self.replay_window = replay_window
        # A link carries no expiry: after this the order is expired (money that still
        # arrives pays it all the same), so abandoned ones stop waiting and counting.
        self.valid_for = valid_for

    def initiate(self, order: Order, *, txid: str) -> PaymentInstructions:
        if order.currency != "INR":
            raise InvalidInput(f"UPI charges INR only, not {order.currency}")
        if not 1 <= order.total <= self.max_paise:
            raise InvalidInput(f"a UPI payment is between ₹0.01 and ₹{rupees(self.max_paise)}")
        link = upi_link(vpa=self.vpa, payee_name=self.payee_name, txid=txid,
                        note=order.title[:NOTE_CHARS].strip(), paise=order.total,
                        merchant_code=self.merchant_code)
        return PaymentInstructions(rail=self.name, status="awaiting_payment", txid=txid,
                                   url=link, qr=link, expires_at=utcnow() + self.valid_for)

    def parse_webhook(self, request: WebhookRequest) -> list[RailEvent]:
        notice = read_signed_notice(request, UpiNotice, secret=self.webhook_secret,
                                    replay_window=self.replay_window, what="UPI notice")
        outcome, reason = OUTCOMES.get(notice.status.upper(), (RailOutcome.NOT_SUPPORTED, None))
        return [RailEvent(event_id=notice.event_id, txid=notice.txid, outcome=outcome,
                          reason=reason, amount=notice.amount, currency=notice.currency,
                          provider_ref=notice.utr)]

    def status(self, order: Order) -> RailEvent | None:
        return None  # only the payee's PSP knows, and it tells by webhook

    def cancel(self, order: Order) -> bool:
        # A `upi://pay` link is not registered anywhere that could void it: the shopper's
        # app can still pay it, and money that arrives is refunded.
        return False

    def refund(self, order: Order) -> RefundResult:
        # A UPI refund is a payment back from the merchant's PSP account, which the PSP
        # (not this link) initiates.
        return RefundResult(RefundOutcome.NOT_SUPPORTED)
