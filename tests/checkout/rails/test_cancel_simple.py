"""Canceling on the rails with no provider to ask: the sandbox and cash on delivery."""

from checkout.models import Order
from checkout.rails.cod import CashOnDeliveryRail
from checkout.rails.sandbox import SandboxRail


def make_order(**fields: object) -> Order:
    values: dict = dict(id="ord_1", user_key="tg:1", conversation_id="conv_1", market="BR",
                        language="pt_BR", merchant_slug="jardim", merchant_name="Jardim",
                        product_id="P-1", title="Regador de Metal 2 L", amount=13990,
                        total=13990, currency="BRL", rail="sandbox", txid="VT0123456789")
    values.update(fields)
    return Order(**values)


def test_the_sandbox_page_takes_nothing_once_the_order_is_canceled():
    rail = SandboxRail(public_url="https://vitrine.example/", secret="sandbox-secret")
    instructions = rail.initiate(make_order(), txid="VT0123456789")
    assert instructions.url == "https://vitrine.example/sandbox/pay/VT0123456789"
    assert rail.cancel(make_order(payment=instructions.as_dict())) is True


def test_the_sandbox_cancels_an_order_it_never_started():
    rail = SandboxRail(public_url="https://vitrine.example", secret="sandbox-secret")
    assert rail.cancel(make_order(txid=None)) is True


def test_cash_on_delivery_has_nothing_to_stop():
    rail = CashOnDeliveryRail()
    instructions = rail.initiate(make_order(rail="cod"), txid="VT0123456789")
    assert instructions.status == "pending_collection"
    assert rail.cancel(make_order(rail="cod", status="pending_collection")) is True
