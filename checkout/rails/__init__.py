"""Payment rails: the `PaymentRail` protocol, and the values rails hand back.

A rail is one way to pay in a market (Pix, UPI, a SEPA transfer QR, an OXXO voucher, cash on
delivery, a hosted card checkout). Rails are registered explicitly by stable name in
`vitrine.runtime.build_rails`; which ones a market offers, and in what order, is data
(`core/markets.json`; those configured are offered). Every provider event a rail reads is
reduced to the closed set of `RailOutcome`s; an event the rail does not know is
`NOT_SUPPORTED`, never an error.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Protocol, TypeVar

from pydantic import BaseModel, ValidationError

from checkout.models import Order
from checkout.signatures import verify_sha256_header
from core.errors import InvalidInput, SignatureError

EventModel = TypeVar("EventModel", bound=BaseModel)


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
    url: str | None = None  # a page or deep link to pay on (card checkout, UPI)
    qr: str | None = None  # the text a QR code shows, when paying by scanning one
    reference: str | None = None  # a voucher or transfer reference read out at the till
    expires_at: datetime | None = None
    provider_ref: str | None = None  # the provider's id for this payment (session, charge)
    details: dict[str, object] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {"rail": self.rail, "txid": self.txid, "copy_code": self.copy_code,
                "url": self.url, "qr": self.qr, "reference": self.reference,
                "expires_at": self.expires_at.isoformat() if self.expires_at else None,
                "provider_ref": self.provider_ref, **self.details}


@dataclass(frozen=True)
class WebhookRequest:
    """A provider's webhook call as received, before anything in it is trusted."""

    body: bytes
    headers: Mapping[str, str]  # keys in lower case
    query: Mapping[str, str] = field(default_factory=dict)
    received_at: float = 0.0  # Unix time, for checking the provider's timestamp

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass(frozen=True)
class RailEvent:
    """One provider event, verified and reduced to an outcome.

    `txid` is the reference Vitrine gave the provider when the payment started (see
    `PaymentRail.initiate`); `reason` says more about a failure ("expired", "rejected").
    """

    event_id: str
    txid: str | None
    outcome: RailOutcome
    reason: str | None = None
    amount: int | None = None  # minor units, when the provider says how much was paid
    currency: str | None = None
    provider_ref: str | None = None  # the provider's id of the payment (or refund)
    refunds: str | None = None  # for a refund: the provider's id of the payment it returns


def read_event(model: type[EventModel], body: bytes) -> EventModel:
    """A webhook body, already verified, read as the provider's event shape.

    Raises:
        InvalidInput: not JSON, or not that shape (the first problem, by field).
    """
    try:
        return model.model_validate(json.loads(body))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        raise InvalidInput("body is not JSON") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        raise InvalidInput(f"{'.'.join(map(str, first['loc'])) or 'body'}: {first['msg']}") \
            from None


SIGNED_NOTICE_HEADER = "X-Vitrine-Signature"


class TimedNotice(BaseModel):
    """A signed notice that carries its own delivery time, so a replay can be refused."""

    sent_at: int  # Unix time the sender signed this delivery


def read_signed_notice(request: WebhookRequest, model: type[EventModel], *, secret: str,
                       replay_window: int | None = None, what: str = "notice"
                       ) -> EventModel:
    """A notice signed `X-Vitrine-Signature: sha256=<hex HMAC-SHA256(secret, body)>` (the
    sandbox, a bank's or a UPI provider's), read as `model` once the signature holds; with
    `replay_window`, its signed `sent_at` (Unix time) must be that close to its arrival.

    Raises:
        SignatureError: the signature is missing or wrong, or the notice is stale.
        InvalidInput: signed, but not the notice's shape.
    """
    if not verify_sha256_header(secret=secret, body=request.body,
                                header=request.header(SIGNED_NOTICE_HEADER)):
        raise SignatureError(f"missing or invalid {SIGNED_NOTICE_HEADER}")
    if replay_window is not None and not issubclass(model, TimedNotice):
        raise TypeError(f"{model.__name__} carries no sent_at to check a replay window on")
    notice = read_event(model, request.body)
    if isinstance(notice, TimedNotice) and replay_window is not None and \
            abs(request.received_at - notice.sent_at) > replay_window:
        raise SignatureError(f"{what} is outside the replay window",
                             event=getattr(notice, "event_id", None))
    return notice


class RefundOutcome(StrEnum):
    REFUNDED = "refunded"  # the provider has taken the refund (it may settle later)
    NOT_SUPPORTED = "not_supported"  # the rail cannot send money back: the merchant does


@dataclass(frozen=True)
class RefundResult:
    outcome: RefundOutcome
    provider_ref: str | None = None


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
            PaymentProviderError: the provider could not be reached or refused the request.
        """
        ...

    def parse_webhook(self, request: WebhookRequest) -> list[RailEvent]:
        """Verify a provider's webhook and reduce it to its events (most providers send
        one per call; the Pix API may batch several payments).

        The signature is checked on the raw body (and the provider's timestamp against a
        replay window) before anything is parsed. An event type the rail does not know is
        a `NOT_SUPPORTED` event, not an error.

        Raises:
            SignatureError: the signature is missing, wrong or too old; nothing was read.
            InvalidInput: signed, but not an event this rail's provider sends.
            PaymentProviderError: the event names a payment whose state must be fetched
                from the provider (Mercado Pago), and the provider could not be reached:
                the webhook answers 502 and the provider delivers it again.
        """
        ...

    def status(self, order: Order) -> RailEvent | None:
        """Ask the provider what became of an order's payment (when a webhook may have been
        missed).

        Returns:
            The payment's current outcome as an event (its `event_id` names the provider's
            state, so that asking twice applies it once), or None when this rail's
            provider can only tell by webhook, or nothing has happened yet.

        Raises:
            PaymentProviderError: the provider could not be reached.
        """
        ...

    def cancel(self, order: Order) -> bool:
        """Stop a payment not made yet, so that its page, code or voucher can no longer be
        paid (the shopper canceled or withdrew the order).

        Returns:
            True when the provider will take no money for it (or there was nothing to
            stop); False where a payment cannot be stopped (a static Pix code, a UPI link,
            a transfer QR): money that still arrives is refunded (`checkout.payments`).

        Raises:
            PaymentProviderError: the provider could not be reached, or refused because
                the payment was made meanwhile.
        """
        ...

    def refund(self, order: Order) -> RefundResult:
        """Send a paid order's total back to the shopper through the provider.

        Returns:
            `REFUNDED` once the provider accepted it, or `NOT_SUPPORTED` when the rail has
            no way to send money back (a static Pix code, a cash voucher): the merchant
            refunds by other means.

        Raises:
            PaymentProviderError: the provider could not be reached or refused the refund.
        """
        ...
