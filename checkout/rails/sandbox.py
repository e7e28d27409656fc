"""The development payment provider: a hosted checkout page whose payment arrives as a
signed webhook, exactly like a real provider's would."""

from __future__ import annotations

from checkout.models import Order
from checkout.rails import PaymentInstructions


class SandboxRail:
    name = "sandbox"

    def __init__(self, *, public_url: str) -> None:
        self.public_url = public_url.rstrip("/")

    def initiate(self, order: Order, *, txid: str) -> PaymentInstructions:
        return PaymentInstructions(rail=self.name, status="awaiting_payment", txid=txid,
                                   url=f"{self.public_url}/sandbox/pay/{txid}")
