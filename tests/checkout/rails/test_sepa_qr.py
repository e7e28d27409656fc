import json
from decimal import Decimal

import pytest
import segno.helpers

from checkout import qr
from checkout.models import Order
from checkout.rails import RailOutcome, RefundOutcome, WebhookRequest
from checkout.rails.sepa_qr import (
    SepaQrRail,
    epc_amount,
    epc_payload,
    reference_from_rf,
    rf_reference,
)
from checkout.signatures import hmac_sha256_hex
from core.errors import InvalidInput, SignatureError
from core.money import Money

# EPC069-12 v2.1, example 2 (segno tests/test_helpers_epcqr.py), charset 2 (ISO-8859-1).
EXAMPLE_2 = (b"BCD\n002\n2\nSCT\n\nFran\xe7ois D'Alsace S.A.\nFR1420041010050500013M02606\n"
             b"EUR12.3\n\n\nClient:Marie Louise La Lune")
IBAN = "DE89370400440532013000"
SECRET = "bank-notifier-secret"
NOW = 1_717_171_717
TXID = "VT3K9ABCDEFGHJKLMNPQRSTUV"  # 25 characters, as checkout.service.payment_txid makes


def make_order(*, total: int = 4990, currency: str = "EUR") -> Order:
    return Order(id="ord_1", user_key="web:1", conversation_id="c1", market="DE",
                 language="de", merchant_slug="garten", merchant_name="Gartenhaus",
                 product_id="P-1", title="Gießkanne 10 L", amount=total, total=total,
                 currency=currency, rail="sepa_qr", txid=TXID)


def make_rail() -> SepaQrRail:
    return SepaQrRail(beneficiary_name="Gartenhaus GmbH", iban="DE89 3704 0044 0532 0130 00",
                      bic="COBADEFFXXX", webhook_secret=SECRET)


def notice(*, secret: str = SECRET, received_at: float = NOW + 5, **fields: object
           ) -> WebhookRequest:
    body = json.dumps({"event_id": "bank-tx-1", "reference": rf_reference(TXID[:21]),
                       "amount": 4990, "currency": "EUR", "status": "credited",
                       "sent_at": NOW, **fields}).encode()
    return WebhookRequest(body=body, received_at=received_at, headers={
        "x-vitrine-signature": "sha256=" + hmac_sha256_hex(secret, body)})


def test_payload_reproduces_epc_example_2_byte_for_byte():
    payload = epc_payload(name="François D'Alsace S.A.", iban="FR1420041010050500013M02606",
                          amount=Money(1230, "EUR"), text="Client:Marie Louise La Lune")
    assert payload.encode("iso-8859-1") == EXAMPLE_2
    assert qr.payload_bytes(payload) == EXAMPLE_2


@pytest.mark.parametrize(("cents", "text"), [(1230, "EUR12.3"), (1000, "EUR10"), (5, "EUR0.05"),
                                             (100_00, "EUR100"), (1, "EUR0.01"),
                                             (99_999_999_999, "EUR999999999.99")])
def test_amounts_are_written_from_cents_without_floats(cents, text):
    assert epc_amount(cents) == text


def test_rf_reference_matches_the_iso_11649_example():
    assert rf_reference("539007547034") == "RF18539007547034"
    assert reference_from_rf("RF18 5390 0754 7034") == "539007547034"
    assert reference_from_rf("rf18539007547034") == "539007547034"
    assert reference_from_rf("RF18539007547035") is None  # one digit off
    assert reference_from_rf("RF1") is None
    assert reference_from_rf("Client:Marie") is None


def test_initiate_gives_a_girocode_whose_rf_reference_carries_the_txid():
    instructions = make_rail().initiate(make_order(), txid=TXID)
    assert instructions.rail == "sepa_qr" and instructions.status == "awaiting_payment"
    assert instructions.txid == TXID[:21]  # what an RF reference holds
    assert instructions.reference == rf_reference(TXID[:21])
    assert reference_from_rf(instructions.reference) == instructions.txid
    assert instructions.qr == ("BCD\n002\n2\nSCT\nCOBADEFFXXX\nGartenhaus GmbH\n"
                               f"{IBAN}\nEUR49.9\n\n{instructions.reference}")
    assert len(qr.payload_bytes(instructions.qr)) <= 331
    theirs = segno.helpers.make_epc_qr(name="Gartenhaus GmbH", iban=IBAN, bic="COBADEFFXXX",
                                       amount=Decimal("49.90"),
                                       reference=instructions.reference)
    assert qr.qr_code(instructions.qr).matrix == theirs.matrix


def test_names_beyond_latin_1_switch_the_payload_to_utf_8():
    payload = epc_payload(name="Łukasz Żółw", iban=IBAN, amount=Money(100, "EUR"),
                          reference="RF18539007547034")
    assert payload.split("\n")[2] == "1"
    assert qr.payload_bytes(payload) == payload.encode("utf-8")


@pytest.mark.parametrize(("total", "currency"), [(4990, "USD"), (0, "EUR"),
                                                 (100_000_000_000, "EUR")])
def test_other_currencies_and_out_of_range_amounts_are_refused(total, currency):
    with pytest.raises(InvalidInput):
        make_rail().initiate(make_order(total=total, currency=currency), txid=TXID)


def test_reference_and_text_are_one_or_the_other():
    with pytest.raises(InvalidInput):
        epc_payload(name="N", iban=IBAN, amount=Money(100, "EUR"))
    with pytest.raises(InvalidInput):
        epc_payload(name="N", iban=IBAN, amount=Money(100, "EUR"), reference="RF18539007547034",
                    text="both")


@pytest.mark.parametrize("fields", [
    {"iban": "DE89370400440532013001"},  # check digits wrong
    {"iban": "not an iban"},
    {"bic": "COBADE"},  # neither 8 nor 11 characters
    {"beneficiary_name": "x" * 71},
    {"beneficiary_name": " "},
])
def test_beneficiaries_a_girocode_cannot_carry_are_refused(fields):
    args = {"beneficiary_name": "Gartenhaus GmbH", "iban": IBAN, "webhook_secret": SECRET,
            **fields}
    with pytest.raises(InvalidInput):
        SepaQrRail(**args)


def test_a_credit_is_a_captured_payment_of_its_amount():
    [event] = make_rail().parse_webhook(notice(bank_ref="BANK-REF-9"))
    assert event.outcome == RailOutcome.CAPTURED
    assert (event.event_id, event.txid) == ("bank-tx-1", TXID[:21])
    assert (event.amount, event.currency, event.provider_ref) == (4990, "EUR", "BANK-REF-9")


def test_a_reference_as_printed_on_a_statement_still_names_the_order():
    spaced = " ".join(rf_reference(TXID[:21])[i:i + 4] for i in range(0, 25, 4))
    [event] = make_rail().parse_webhook(notice(reference=spaced))
    assert event.txid == TXID[:21]


def test_a_notice_may_name_the_txid_instead():
    [event] = make_rail().parse_webhook(notice(reference=None, txid=TXID[:21]))
    assert event.txid == TXID[:21]


def test_a_return_is_a_refund():
    [event] = make_rail().parse_webhook(notice(status="returned", event_id="bank-tx-2"))
    assert event.outcome == RailOutcome.REFUNDED and event.amount == 4990


def test_other_statuses_are_not_supported():
    [event] = make_rail().parse_webhook(notice(status="pending"))
    assert event.outcome == RailOutcome.NOT_SUPPORTED


def test_a_reference_with_wrong_check_digits_names_no_order():
    [event] = make_rail().parse_webhook(notice(reference="RF00" + TXID[:21]))
    assert event.txid is None


@pytest.mark.parametrize("request_", [
    notice(secret="forged"),
    WebhookRequest(body=notice().body, headers={}, received_at=NOW),
    WebhookRequest(body=notice().body + b" ", headers=notice().headers, received_at=NOW),
    notice(received_at=NOW + 301),  # replayed after the window
    notice(received_at=NOW - 301),
])
def test_forged_missing_and_stale_notices_are_refused(request_):
    with pytest.raises(SignatureError):
        make_rail().parse_webhook(request_)


@pytest.mark.parametrize("request_", [
    notice(reference=None),  # names no payment
    notice(amount="49.90"),
    WebhookRequest(body=b"not json", received_at=NOW, headers={
        "x-vitrine-signature": "sha256=" + hmac_sha256_hex(SECRET, b"not json")}),
])
def test_signed_notices_of_another_shape_are_invalid(request_):
    with pytest.raises(InvalidInput):
        make_rail().parse_webhook(request_)


def test_only_the_bank_tells_and_the_merchant_refunds():
    rail = make_rail()
    assert rail.status(make_order()) is None
    assert rail.refund(make_order()).outcome == RefundOutcome.NOT_SUPPORTED


def test_a_transfer_qr_cannot_be_canceled():
    # The QR is a filled-in transfer form: any bank app can still send it.
    assert make_rail().cancel(make_order()) is False
