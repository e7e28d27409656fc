import json
import urllib.parse

import pytest

from checkout.models import Order
from checkout.rails import RailOutcome, RefundOutcome, WebhookRequest
from checkout.rails.upi import UpiRail, rupees, upi_link
from checkout.signatures import hmac_sha256_hex
from core.errors import InvalidInput, SignatureError

SECRET = "upi-psp-secret"
NOW = 1_717_171_717
TXID = "VT3K9ABCDEFGHJKLMNPQRSTUV"


def make_order(*, total: int = 149900, currency: str = "INR",
               title: str = "Steel Water Bottle 1 L") -> Order:
    return Order(id="ord_1", user_key="wa:1", conversation_id="c1", market="IN",
                 language="en", merchant_slug="ghar", merchant_name="Ghar Store",
                 product_id="P-1", title=title, amount=total, total=total, currency=currency,
                 rail="upi", txid=TXID)


def make_rail(**overrides: object) -> UpiRail:
    args: dict = {"vpa": "vitrine@okaxis", "payee_name": "Vitrine India",
                  "webhook_secret": SECRET, **overrides}
    return UpiRail(**args)


def notice(*, secret: str = SECRET, received_at: float = NOW + 5, **fields: object
           ) -> WebhookRequest:
    body = json.dumps({"event_id": "psp-evt-1", "txid": TXID, "amount": 149900,
                       "currency": "INR", "status": "SUCCESS", "utr": "412345678901",
                       "sent_at": NOW, **fields}).encode()
    return WebhookRequest(body=body, received_at=received_at, headers={
        "x-vitrine-signature": "sha256=" + hmac_sha256_hex(secret, body)})


@pytest.mark.parametrize(("paise", "text"), [(12345, "123.45"), (100, "1.00"), (5, "0.05"),
                                             (1_00_000_00, "100000.00")])
def test_rupees_are_written_from_paise_without_floats(paise, text):
    assert rupees(paise) == text


def test_link_is_the_npci_layout_with_spaces_as_percent_20():
    link = upi_link(vpa="vitrine@okaxis", payee_name="Vitrine India", txid=TXID,
                    note="Steel Water Bottle 1 L", paise=12345)
    assert link == ("upi://pay?pa=vitrine@okaxis&pn=Vitrine%20India&tr=VT3K9ABCDEFGHJKLMNPQRSTUV"
                    "&tn=Steel%20Water%20Bottle%201%20L&am=123.45&cu=INR")


def test_reserved_characters_in_names_are_escaped():
    link = upi_link(vpa="shop.1@ybl", payee_name="Tom & Jerry's", txid="T1",
                    note="50% off = deal?", paise=100, merchant_code="5411")
    query = urllib.parse.urlsplit(link).query
    assert "+" not in query
    assert urllib.parse.parse_qs(query) == {
        "pa": ["shop.1@ybl"], "pn": ["Tom & Jerry's"], "tr": ["T1"], "tn": ["50% off = deal?"],
        "am": ["1.00"], "cu": ["INR"], "mc": ["5411"]}


def test_initiate_returns_the_link_to_open_and_to_scan():
    instructions = make_rail().initiate(make_order(), txid=TXID)
    assert instructions.rail == "upi" and instructions.status == "awaiting_payment"
    assert instructions.txid == TXID
    assert instructions.url == instructions.qr
    assert instructions.url.startswith("upi://pay?pa=vitrine@okaxis&pn=Vitrine%20India&tr=")
    assert "&am=1499.00&cu=INR" in instructions.url


def test_long_titles_make_a_short_note():
    instructions = make_rail().initiate(make_order(title="Bottle " * 20), txid=TXID)
    note = urllib.parse.parse_qs(urllib.parse.urlsplit(instructions.url).query)["tn"][0]
    assert len(note) <= 50


@pytest.mark.parametrize(("total", "currency"), [(149900, "USD"), (0, "INR"),
                                                 (1_00_000_01, "INR")])
def test_other_currencies_and_out_of_range_amounts_are_refused(total, currency):
    with pytest.raises(InvalidInput):
        make_rail().initiate(make_order(total=total, currency=currency), txid=TXID)


def test_the_limit_is_configurable():
    rail = make_rail(max_paise=2_00_000_00)
    assert rail.initiate(make_order(total=1_50_000_00), txid=TXID).url


@pytest.mark.parametrize("vpa", ["vitrine", "@okaxis", "vitrine@", "vit rine@okaxis"])
def test_addresses_that_are_not_vpas_are_refused(vpa):
    with pytest.raises(InvalidInput):
        make_rail(vpa=vpa)


@pytest.mark.parametrize(("status", "outcome", "reason"), [
    ("SUCCESS", RailOutcome.CAPTURED, None),
    ("FAILURE", RailOutcome.FAILED, None),
    ("EXPIRED", RailOutcome.FAILED, "expired"),
    ("PENDING", RailOutcome.NOT_SUPPORTED, None),
])
def test_each_status_is_reduced(status, outcome, reason):
    [event] = make_rail().parse_webhook(notice(status=status))
    assert (event.outcome, event.reason) == (outcome, reason)
    assert (event.event_id, event.txid) == ("psp-evt-1", TXID)
    assert (event.amount, event.currency, event.provider_ref) == (149900, "INR", "412345678901")


def test_currency_defaults_to_inr():
    body = json.dumps({"event_id": "e", "txid": TXID, "amount": 1, "status": "SUCCESS",
                       "sent_at": NOW}).encode()
    [event] = make_rail().parse_webhook(WebhookRequest(
        body=body, received_at=NOW,
        headers={"x-vitrine-signature": "sha256=" + hmac_sha256_hex(SECRET, body)}))
    assert event.currency == "INR" and event.provider_ref is None


@pytest.mark.parametrize("request_", [
    notice(secret="forged"),
    WebhookRequest(body=notice().body, headers={}, received_at=NOW),
    WebhookRequest(body=notice().body, received_at=NOW,
                   headers={"x-vitrine-signature": hmac_sha256_hex(SECRET, notice().body)}),
    notice(received_at=NOW + 301),
])
def test_forged_missing_and_stale_notices_are_refused(request_):
    with pytest.raises(SignatureError):
        make_rail().parse_webhook(request_)


@pytest.mark.parametrize("request_", [notice(txid=None), notice(amount=-1),
                                      notice(sent_at=None)])
def test_signed_notices_of_another_shape_are_invalid(request_):
    with pytest.raises(InvalidInput):
        make_rail().parse_webhook(request_)


def test_only_the_provider_tells_and_the_merchant_refunds():
    rail = make_rail()
    assert rail.status(make_order()) is None
    assert rail.refund(make_order()).outcome == RefundOutcome.NOT_SUPPORTED


def test_a_link_cannot_be_canceled():
    # Nothing registers the link: the shopper's app can still pay it.
    assert make_rail().cancel(make_order()) is False
