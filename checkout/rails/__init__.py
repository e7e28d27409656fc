"""Payment rails: the `PaymentRail` protocol and the registry of rails by stable name."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from checkout.models import Order


class RailOutcome(StrEnum):
    """The closed set of outcomes any provider event is reduced to."""

    AUTHORIZED = "authorized"
    CAPTURED = "captured"
    FAILED = "failed"
    REFUNDED = "refunded"
    NOT_SUPPORTED = "not_supported"


@dataclass(frozen=True)
class PaymentInstructions:
    """What the shopper needs to pay, and the order's state once they have it."""

    rail: str
    status: str  # "awaiting_payment" or "pending_collection"
    txid: str | None = None
    copy_code: str | None = None  # a code the shopper pastes in their bank app (Pix)
    url: str | None = None
    details: dict[str, object] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {"rail": self.rail, "txid": self.txid, "copy_code": self.copy_code,
                "url": self.url, **self.details}


class PaymentRail(Protocol):
    """A way to pay in a market (Pix, cash on delivery, a hosted card checkout...)."""

    name: str

    def initiate(self, order: Order, *, txid: str) -> PaymentInstructions:
        """Start the payment of a confirmed order.

        Args:
            order: the order the shopper just confirmed; its `total` and `currency` are
                final (already re-checked against the merchant's data).
            txid: a unique alphanumeric reference (at most 25 characters) that the provider
                will quote back in its webhook.

        Returns:
            The instructions to show the shopper and the status the order moves to.

        Raises:
            InvalidInput: the rail cannot take this order (currency, amount limits).
        """
        ...
