"""Cash on delivery: the order is confirmed at once and paid to the carrier on delivery."""

from __future__ import annotations

from checkout.models import Order
from checkout.rails import PaymentInstructions


class CashOnDeliveryRail:
    name = "cod"

    def initiate(self, order: Order, *, txid: str) -> PaymentInstructions:
        return PaymentInstructions(rail=self.name, status="pending_collection", txid=txid)
