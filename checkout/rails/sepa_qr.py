"""SEPA credit transfer by QR code (EPC069-12, the "GiroCode"), and the receiving bank's
notice that the transfer arrived.

The shopper scans the code with their banking app, which fills in a transfer to the
merchant's account: beneficiary, IBAN, amount, and a structured ISO 11649 creditor reference
("RF" + two check digits + the txid) that the banks carry through to the statement. Nothing
tells Vitrine of the transfer but the receiving bank, so a notifier watching the account (the
bank's own notification service, or a reconciler reading its statements) posts one JSON
object per transfer to `/api/payments/sepa_qr/webhook`, signed over the raw body:

    X-Vitrine-Signature: sha256=<hex HMAC-SHA256(webhook_secret, body)>

    {"event_id": "bank-tx-2024-000123",  unique per credit or return (the bank's entry id)
     "reference": "RF18VT3K9...",        the creditor reference as received (spaces allowed)
     "txid": "VT3K9...",                 or the txid itself, when the notifier already knows it
     "amount": 1230,                     euro cents credited (or returned)
     "currency": "EUR",
     "status": "credited" | "returned",  any other status is not_supported
     "bank_ref": "...",                  optional: the bank's transaction reference
     "sent_at": 1717171717}              Unix time of this delivery, inside the replay window

`credited` is a captured payment; `returned` is the transfer sent back (an R-transaction,
or the merchant's own refund transfer), so the order is refunded.
"""

from __future__ import annotations

from datetime import timedelta

import segno.helpers
from pydantic import Field, model_validator

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
from core.money import Money

SIGNATURE_HEADER = SIGNED_NOTICE_HEADER
MAX_CENTS = 99_999_999_999  # EUR 999,999,999.99, the largest amount EPC069-12 allows
MAX_PAYLOAD_BYTES = 331
RF_REFERENCE_CHARS = 21  # ISO 11649: "RF" + 2 check digits + at most 21 characters
OUTCOMES = {"credited": RailOutcome.CAPTURED, "returned": RailOutcome.REFUNDED}


def _mod97(text: str) -> int:
    """ISO 7064 MOD 97-10 over letters and digits (A=10 ... Z=35), as IBAN and RF use it."""
    return int("".join(str(int(char, 36)) for char in text)) % 97


def rf_reference(reference: str) -> str:
    """The ISO 11649 creditor reference of a reference ("539007547034" -> "RF18539007547034").

    Raises:
        InvalidInput: not 1 to 21 letters and digits.
    """
    ref = reference.upper()
    if not (ref.isascii() and ref.isalnum() and 1 <= len(ref) <= RF_REFERENCE_CHARS):
        raise InvalidInput("an RF creditor reference carries 1 to 21 letters and digits")
    return f"RF{98 - _mod97(ref + 'RF00'):02d}{ref}"


def reference_from_rf(text: str) -> str | None:
    """The reference inside an RF creditor reference ("RF18 5390 0754 7034" ->
    "539007547034"), or None when it is not one or its check digits are wrong."""
    rf = "".join(text.split()).upper()
    if not (rf.startswith("RF") and 5 <= len(rf) <= 25 and rf.isascii() and rf.isalnum()
            and rf[2:4].isdigit()):
        return None
    return rf[4:] if _mod97(rf[4:] + rf[:4]) == 1 else None


def valid_iban(iban: str) -> bool:
    return (15 <= len(iban) <= 34 and iban.isascii() and iban.isalnum()
            and iban[:2].isalpha() and iban[2:4].isdigit() and _mod97(iban[4:] + iban[:4]) == 1)


def epc_amount(cents: int) -> str:
    """Euro cents as EPC069-12 writes them: "EUR12.3", "EUR10", "EUR0.05" (no floats)."""
    euros, rest = divmod(cents, 100)
    return f"EUR{euros}" + (f".{rest:02d}".rstrip("0") if rest else "")


def epc_payload(*, name: str, iban: str, amount: Money, bic: str | None = None,
                reference: str | None = None, text: str | None = None,
                purpose: str | None = None) -> str:
    """The text of an EPC069-12 version 002 QR code.

    The character set is ISO-8859-1 (2) when every character fits, as in the standard's
    own examples, and UTF-8 (1) otherwise; `checkout.qr` encodes the code in the set the
    payload declares. Name, IBAN and BIC are checked when the rail is built.

    Raises:
        InvalidInput: not EUR, an amount outside 0.01..999,999,999.99, neither or both of
            reference and text, or a payload over 331 bytes.
    """
    if amount.currency != "EUR":
        raise InvalidInput(f"a SEPA transfer QR code is in EUR, not {amount.currency}")
    if not 1 <= amount.amount <= MAX_CENTS:
        raise InvalidInput("a SEPA transfer QR code is for EUR 0.01 to EUR 999,999,999.99")
    if bool(reference) == bool(text):
        raise InvalidInput("a SEPA transfer QR code has a creditor reference or a text")
    if (reference and len(reference) > 35) or (text and len(text) > 140):
        raise InvalidInput("remittance: a reference has at most 35 characters, a text 140")
    lines = ["BCD", "002", "", "SCT", bic or "", name, iban, epc_amount(amount.amount),
             purpose or "", reference or ""]
    if text:
        lines.append(text)
    try:
        "\n".join(lines).encode("iso-8859-1")
        lines[2] = "2"
    except UnicodeEncodeError:
        lines[2] = "1"
    payload = "\n".join(lines)
    size = len(payload.encode("iso-8859-1" if lines[2] == "2" else "utf-8"))
    if size > MAX_PAYLOAD_BYTES:
        raise InvalidInput(f"EPC payload is {size} bytes; at most {MAX_PAYLOAD_BYTES}")
    return payload


class BankNotice(TimedNotice):
    event_id: str = Field(min_length=1, max_length=200)
    reference: str | None = Field(default=None, max_length=40)
    txid: str | None = Field(default=None, min_length=1, max_length=40)
    amount: int = Field(ge=0)
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    status: str = Field(min_length=1, max_length=40)
    bank_ref: str | None = Field(default=None, max_length=200)

    @model_validator(mode="after")
    def _names_the_payment(self) -> BankNotice:
        if not self.reference and not self.txid:
            raise ValueError("a notice carries the creditor reference or the txid")
        return self


class SepaQrRail:
    """A GiroCode for EUR orders; the receiving bank's signed notice confirms the transfer."""

    name = "sepa_qr"

    def __init__(self, *, beneficiary_name: str, iban: str, webhook_secret: str,
                 bic: str | None = None, replay_window: int = 300,
                 valid_for: timedelta = timedelta(days=5)) -> None:
        """Raises InvalidInput for a name, IBAN or BIC a GiroCode cannot carry.

        `valid_for`: a transfer QR carries no expiry; after this (long enough for a transfer
        made on a Friday to arrive) the order is expired, and money that still arrives
        pays it all the same."""
        self.valid_for = valid_for
        self.beneficiary_name = beneficiary_name.strip()
        self.iban = "".join(iban.split()).upper()
        self.bic = "".join(bic.split()).upper() if bic else None
        if not valid_iban(self.iban):
            raise InvalidInput("the beneficiary IBAN is not valid (format or check digits)")
        try:  # segno checks the fields' lengths as EPC069-12 sets them
            segno.helpers.make_epc_qr(name=self.beneficiary_name, iban=self.iban,
                                      amount=1, reference=rf_reference("0"), bic=self.bic)
        except ValueError as exc:
            raise InvalidInput(f"SEPA beneficiary: {exc}") from None
        self.webhook_secret = webhook_secret
        self.replay_window = replay_window

    def initiate(self, order: Order, *, txid: str) -> PaymentInstructions:
        # An RF reference holds 21 characters; Vitrine's 25-character txids keep 21 of their
        # random characters, and the instructions hand back that shorter txid to key on.
        quoted = txid[:RF_REFERENCE_CHARS].upper()
        reference = rf_reference(quoted)
        payload = epc_payload(name=self.beneficiary_name, iban=self.iban, bic=self.bic,
                              amount=Money(order.total, order.currency), reference=reference)
        return PaymentInstructions(rail=self.name, status="awaiting_payment", txid=quoted,
                                   qr=payload, reference=reference,
                                   expires_at=utcnow() + self.valid_for,
                                   details={"iban": self.iban,
                                            "beneficiary": self.beneficiary_name})

    def parse_webhook(self, request: WebhookRequest) -> list[RailEvent]:
        notice = read_signed_notice(request, BankNotice, secret=self.webhook_secret,
                                    replay_window=self.replay_window, what="bank notice")
        txid = notice.txid.upper() if notice.txid else reference_from_rf(notice.reference or "")
        outcome = OUTCOMES.get(notice.status, RailOutcome.NOT_SUPPORTED)
        return [RailEvent(event_id=notice.event_id, txid=txid, outcome=outcome,
                          amount=notice.amount, currency=notice.currency,
                          provider_ref=notice.bank_ref)]

    def status(self, order: Order) -> RailEvent | None:
        return None  # a transfer is only known from the receiving bank's notice

    def cancel(self, order: Order) -> bool:
        # The QR is only a filled-in transfer form: any bank app can still send it, and
        # money that arrives is refunded.
        return False

    def refund(self, order: Order) -> RefundResult:
        # A credit transfer cannot be pulled back: the merchant sends one the other way, and
        # the notifier reports it as "returned".
        return RefundResult(RefundOutcome.NOT_SUPPORTED)
