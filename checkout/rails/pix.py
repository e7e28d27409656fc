"""Pix: BR Codes ("copia e cola") as the Banco Central's EMV QR layout specifies, and the
payment notices of the Banco Central's Pix API (`{"pix": [...]}`), which a payment
service provider (PSP) posts to `/api/payments/pix/webhook`. With a PSP's Pix API
configured, the rail creates dynamic charges instead (`checkout.rails.pix_api`).

The Pix API authenticates its webhook with mutual TLS; behind a proxy that ends TLS, the PSP
signs the body instead: `X-Pix-Signature: sha256=<hex HMAC-SHA256(secret, body)>`.
"""

from __future__ import annotations

import binascii
import unicodedata
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from checkout.models import Order
from checkout.rails import (
    PaymentInstructions,
    RailEvent,
    RailOutcome,
    RefundOutcome,
    RefundResult,
    WebhookRequest,
    read_event,
)
from checkout.signatures import verify_sha256_header
from core.db import utcnow
from core.errors import InvalidInput, SignatureError
from core.money import Money

if TYPE_CHECKING:  # pix_api reads notices' payments with this module's models
    from checkout.rails.pix_api import PixApi

SIGNATURE_HEADER = "X-Pix-Signature"

GUI = "br.gov.bcb.pix"
MAX_AMOUNT_CENTS = 999_999_999_999  # field 54 holds at most 13 characters: "9999999999.99"


def _field(tag: str, value: str) -> str:
    if len(value) > 99:
        raise InvalidInput(f"BR Code field {tag} is longer than 99 characters")
    return f"{tag}{len(value):02d}{value}"


def _plain(text: str, limit: int) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return ascii_text.strip()[:limit]


def crc16(payload: str) -> str:
    """CRC16-CCITT-FALSE (poly 0x1021, init 0xFFFF) as 4 upper-case hex digits."""
    return f"{binascii.crc_hqx(payload.encode('utf-8'), 0xFFFF):04X}"


def static_brcode(*, key: str, merchant_name: str, merchant_city: str,
                  amount: Money | None = None, txid: str | None = None,
                  description: str | None = None) -> str:
    """Build a static Pix BR Code.

    Raises:
        InvalidInput: a currency other than BRL, or a txid that is not 1-25 letters/digits.
    """
    if amount is not None and amount.currency != "BRL":
        raise InvalidInput(f"Pix charges BRL only, not {amount.currency}")
    if amount is not None and not 0 < amount.amount <= MAX_AMOUNT_CENTS:
        raise InvalidInput("a Pix amount is between R$ 0,01 and R$ 9.999.999.999,99")
    if txid is not None and not (txid.isascii() and txid.isalnum() and 1 <= len(txid) <= 25):
        raise InvalidInput("a static Pix txid has 1 to 25 letters and digits")
    account = _field("00", GUI) + _field("01", key)
    if description:
        account += _field("02", _plain(description, 40))
    payload = (
        _field("00", "01")
        + _field("26", account)
        + _field("52", "0000")
        + _field("53", "986")
        + (_field("54", str(amount.to_decimal())) if amount is not None else "")
        + _field("58", "BR")
        + _field("59", _plain(merchant_name, 25))
        + _field("60", _plain(merchant_city, 15))
        + _field("62", _field("05", txid or "***"))
        + "6304"
    )
    return payload + crc16(payload)


class PixRefund(BaseModel):
    id: str = Field(min_length=1, max_length=200)
    valor: str
    status: str = ""


class PixPayment(BaseModel):
    endToEndId: str = Field(min_length=1, max_length=200)
    txid: str | None = Field(default=None, max_length=35)
    valor: str
    devolucoes: list[PixRefund] = Field(default_factory=list)


class PixNotice(BaseModel):
    pix: list[PixPayment] = Field(min_length=1, max_length=1000)


def cents(valor: str) -> int:
    """A Pix API amount ("110.00") in centavos.

    Raises:
        InvalidInput: not an amount with two decimals.
    """
    try:
        amount = Decimal(valor)
    except InvalidOperation:
        raise InvalidInput(f"valor {valor!r} is not an amount") from None
    if not amount.is_finite() or not 0 <= amount <= MAX_AMOUNT_CENTS / 100 or \
            amount != amount.quantize(Decimal("0.01")):
        raise InvalidInput(f"valor {valor!r} is not an amount in centavos")
    return int(amount * 100)


class PixRail:
    """Pix: the shopper pastes the code in their bank app (or scans its QR code); the PSP's
    webhook confirms the payment by the code's txid.

    The code is static (built here, for `key`) unless `api` is given: then each order gets
    a dynamic charge at the PSP, which expires, can be asked about and can be refunded.
    """

    name = "pix"

    def __init__(self, *, key: str, merchant_name: str, merchant_city: str,
                 webhook_secret: str, api: PixApi | None = None,
                 valid_for: timedelta = timedelta(hours=24)) -> None:
        self.key = key
        self.merchant_name = merchant_name
        self.merchant_city = merchant_city
        self.webhook_secret = webhook_secret
        self.api = api
        # A static code never expires at the bank: after this the order is expired (money
        # that still arrives pays it all the same), so abandoned ones stop waiting.
        self.valid_for = valid_for

    @property
    def polls(self) -> bool:
        """Whether `status` can ask the PSP (dynamic charges only; see `checkout.sweep`)."""
        return self.api is not None

    def close(self) -> None:
        if self.api is not None:
            self.api.close()

    def initiate(self, order: Order, *, txid: str) -> PaymentInstructions:
        if self.api is not None:
            return self.api.initiate(order, txid=txid)
        code = static_brcode(key=self.key, merchant_name=self.merchant_name,
                             merchant_city=self.merchant_city,
                             amount=Money(order.total, order.currency), txid=txid)
        return PaymentInstructions(rail=self.name, status="awaiting_payment", txid=txid,
                                   copy_code=code, qr=code,
                                   expires_at=utcnow() + self.valid_for)

    def parse_webhook(self, request: WebhookRequest) -> list[RailEvent]:
        if not verify_sha256_header(secret=self.webhook_secret, body=request.body,
                                    header=request.header(SIGNATURE_HEADER)):
            raise SignatureError(f"missing or invalid {SIGNATURE_HEADER}")
        notice = read_event(PixNotice, request.body)
        events = []
        for paid in notice.pix:
            # A payment's end-to-end id is unique across the Pix system; each refund has
            # its own id, so the news of a refund applies once too.
            events.append(RailEvent(event_id=paid.endToEndId, txid=paid.txid,
                                    outcome=RailOutcome.CAPTURED, amount=cents(paid.valor),
                                    currency="BRL", provider_ref=paid.endToEndId))
            events.extend(RailEvent(event_id=f"{paid.endToEndId}:{back.id}", txid=paid.txid,
                                    outcome=RailOutcome.REFUNDED, amount=cents(back.valor),
                                    currency="BRL", provider_ref=back.id,
                                    refunds=paid.endToEndId)
                          for back in paid.devolucoes if back.status == "DEVOLVIDO")
        return events

    def status(self, order: Order) -> RailEvent | None:
        if self.api is not None:
            return self.api.status(order)
        return None  # a static code's payment is only known from the PSP's notice

    def cancel(self, order: Order) -> bool:
        if order.txid is None:
            return True  # no code was ever shown
        if self.api is not None:
            return self.api.cancel(order)
        # A static code is registered nowhere that could void it: any bank app still
        # pays it, and money that arrives is refunded.
        return False

    def refund(self, order: Order) -> RefundResult:
        if self.api is not None:
            return self.api.refund(order)
        # Returning a static Pix payment (a "devolução") is the receiving bank's operation:
        # the merchant's PSP does it, and its notice reports it here.
        return RefundResult(RefundOutcome.NOT_SUPPORTED)
