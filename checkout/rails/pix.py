"""Pix: static BR Codes ("copia e cola") as the Banco Central's EMV QR layout specifies."""

from __future__ import annotations

import binascii
import unicodedata

from checkout.models import Order
from checkout.rails import PaymentInstructions
from core.errors import InvalidInput
from core.money import Money

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


class PixRail:
    """Static Pix: the shopper pastes the code in their bank app; the provider's webhook
    confirms the payment."""

    name = "pix"

    def __init__(self, *, key: str, merchant_name: str, merchant_city: str) -> None:
        self.key = key
        self.merchant_name = merchant_name
        self.merchant_city = merchant_city

    def initiate(self, order: Order, *, txid: str) -> PaymentInstructions:
        code = static_brcode(key=self.key, merchant_name=self.merchant_name,
                             merchant_city=self.merchant_city,
                             amount=Money(order.total, order.currency), txid=txid)
        return PaymentInstructions(rail=self.name, status="awaiting_payment", txid=txid,
                                   copy_code=code)
