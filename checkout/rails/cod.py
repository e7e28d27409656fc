"""Cash on delivery: the order is confirmed at once and paid to the carrier on delivery.

No provider is involved: the merchant marks the collection over the API
(`POST /api/orders/{id}/collected`), and a withdrawal before delivery simply cancels it.
"""

from __future__ import annotations

from checkout.models import Order
from checkout.rails import (
    PaymentInstructions,
    RailEvent,
    RefundOutcome,
    RefundResult,
    WebhookRequest,
)
from core.errors import InvalidInput


class CashOnDeliveryRail:
    name = "cod"

    def initiate(self, order: Order, *, txid: str) -> PaymentInstructions:
        return PaymentInstructions(rail=self.name, status="pending_collection", txid=txid)

    def parse_webhook(self, request: WebhookRequest) -> list[RailEvent]:
        raise InvalidInput("cash on delivery has no payment provider to send webhooks; the "
                           "merchant marks the collection over the orders API")

    def status(self, order: Order) -> RailEvent | None:
        return None

    def cancel(self, order: Order) -> bool:
        return True  # nothing is paid until delivery: a canceled order is not delivered

    def refund(self, order: Order) -> RefundResult:
        return RefundResult(RefundOutcome.NOT_SUPPORTED)  # cash goes back by the merchant
