"""Messages checkout sends a shopper outside their own turn (payment confirmed or failed)."""

from __future__ import annotations

from checkout.models import Order
from core.i18n import Translator
from core.markets import Market
from core.money import Money


def paid_text(order: Order, market: Market, t: Translator) -> str:
    return t.gettext("Payment confirmed for order {order}: {title}, {total}. {merchant} will "
                     "prepare the delivery. Thank you!").format(
        order=order.id, title=order.title,
        total=market.format_price(Money(order.total, order.currency)),
        merchant=order.merchant_name)


def failed_text(order: Order, t: Translator) -> str:
    return t.gettext("The payment for order {order} did not go through. You can try again "
                     "from the product card.").format(order=order.id)
