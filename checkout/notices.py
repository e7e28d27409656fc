"""Messages checkout sends a shopper outside their own turn (payment confirmed, failed or
expired, a refund)."""

from __future__ import annotations

from sqlmodel import Session

from checkout.models import Order, OrderStatus
from core.i18n import Translator
from core.markets import Market
from core.money import Money
from core.outbox import notify

# The WhatsApp template sent when the shopper last wrote more than 24 hours ago; its body
# takes the order's number and the message ("Update on order {{1}}: {{2}}"). See README.
ORDER_TEMPLATE = "order_update"


def paid_text(order: Order, market: Market, t: Translator) -> str:
    return t.gettext("Payment confirmed for order {order}: {title}, {total}. {merchant} will "
                     "prepare the delivery. Thank you!").format(
        order=order.id, title=order.title,
        total=market.format_price(Money(order.total, order.currency)),
        merchant=order.merchant_name)


def failed_text(order: Order, t: Translator) -> str:
    return t.gettext("The payment for order {order} did not go through. You can try again "
                     "from the product card.").format(order=order.id)


def expired_text(order: Order, t: Translator) -> str:
    return t.gettext("The time to pay order {order} ran out. If you paid already, I will tell "
                     "you here as soon as the payment arrives; if not, you can buy it again "
                     "from the product card.").format(order=order.id)


def refunded_text(order: Order, market: Market, t: Translator) -> str:
    return t.gettext("Order {order} was refunded: {total} is on its way back to you.").format(
        order=order.id, total=market.format_price(Money(order.total, order.currency)))


def owed_back_text(order: Order, market: Market, t: Translator) -> str:
    return t.gettext("A payment of {total} arrived for order {order}, which was canceled. "
                     "It will be refunded to you, and I will tell you here when it is done."
                     ).format(order=order.id,
                              total=market.format_price(Money(order.total, order.currency)))


def status_text(order: Order, market: Market, t: Translator) -> str:
    """What to tell the shopper about the status an order just reached."""
    if order.status == OrderStatus.PAID:
        return paid_text(order, market, t)
    if order.status == OrderStatus.EXPIRED:
        return expired_text(order, t)
    if order.status == OrderStatus.REFUNDED:
        return refunded_text(order, market, t)
    if order.status == OrderStatus.REFUND_PENDING:
        return owed_back_text(order, market, t)
    return failed_text(order, t)


def notify_status(session: Session, order: Order) -> None:
    """Queue the message about the status an order just reached, in the shopper's language."""
    text = status_text(order, order.shopper_market(), Translator(order.language))
    notify(session, user_key=order.user_key, text=text, template=ORDER_TEMPLATE,
           template_params=[order.id, text])
