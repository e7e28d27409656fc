"""Buying in a conversation: a card's Buy button, the shopper's one-tap confirmation,
canceling before it, and withdrawing after it while the law allows.

The path from a card to a payment is deterministic: the price is looked up again when a live
merchant's copy is old, a changed price asks to confirm again, and the rail's instructions come
from checkout, never from a language model. An order for a person the request named becomes,
once confirmed, that person's gift history.
"""

from __future__ import annotations

import re
from datetime import timedelta

from babel.dates import format_date
from sqlmodel import Session

from bot import linking, memory
from bot.budgets import parse_amount
from bot.models import Conversation
from bot.privacy import SWITCH_OFF
from bot.replies import (
    RAIL_LABELS,
    STATUS_LABELS,
    Message,
    confirmation_message,
    orders_message,
    over_limit_message,
    payment_message,
)
from catalog.cards import Button
from catalog.live import FederatedSearch
from checkout import service as checkout
from checkout import spending, withdrawal
from checkout.rails import PaymentRail
from core.errors import InvalidInput
from core.i18n import Translator
from core.markets import Market, get_market
from core.money import Money
from core.settings import Settings
from ops.events import EventKind, record_event

# "/limit month 2000", "/limite mês 2000", "/límite mes 2000"; the per-order limit is the default.
MONTH_WORDS = frozenset({"month", "monthly", "mes", "mês", "mensal", "mensual"})
ORDER_WORDS = frozenset({"order", "pedido", "compra"})


class Buying:
    """The buy, confirm and cancel steps of a conversation."""

    def __init__(self, *, search: FederatedSearch, rails: dict[str, PaymentRail],
                 settings: Settings) -> None:
        self.search = search
        self.rails = rails
        self.settings = settings

    def buy(self, session: Session, conv: Conversation, market: Market, merchant_slug: str,
             product_id: str, t: Translator) -> list[Message]:
        conv.awaiting_payer = None  # another purchase: the earlier question is moot
        self._recheck(session, merchant_slug, product_id)
        sponsored = f"{merchant_slug}:{product_id}" in (conv.sponsored_shown or [])
        started = checkout.start_checkout(session=session, user_key=conv.user_key,
                                          conversation_id=conv.conversation_id, market=market,
                                          language=conv.language, merchant_slug=merchant_slug,
                                          product_id=product_id, rails=self.rails,
                                          sponsored=sponsored)
        if started.outcome != checkout.StartOutcome.REOPENED:
            record_event(session, EventKind.CARD_CLICKED, user_key=conv.user_key,
                         conversation_id=conv.conversation_id, market=market.code,
                         language=conv.language, merchant=merchant_slug, product_id=product_id,
                         sponsored=sponsored)
        order = started.order
        if started.outcome == checkout.StartOutcome.NO_RAIL:
            return [Message(text=t.gettext("Sorry, I cannot take payments in {market} yet.")
                            .format(market=market.name))]
        if order is None:
            return [Message(text=t.gettext("Sorry, that product is no longer available. "
                                           "Want to see other options?"))]
        self._note_gift(session, conv, f"{merchant_slug}:{product_id}", order.id)
        quoted = conv.quoted.get(f"{merchant_slug}:{product_id}")
        changed_from = quoted + order.fee if quoted is not None and quoted != order.amount \
            else None
        return [self._confirmation(order, market, t, price_changed_from=changed_from)]

    def _confirmation(self, order: checkout.Order, market: Market, t: Translator, *,
                      price_changed_from: int | None = None) -> Message:
        """The one-tap confirmation card, offering the market's other rails and, where
        allowed, instalments."""
        return confirmation_message(
            order, market, t, price_changed_from=price_changed_from,
            other_rails=[r for r in checkout.offered_rails(market, self.rails)
                         if r != order.rail],
            instalments=spending.instalment_choices(market=order.market, rail=order.rail,
                                                    total=order.total))

    def act(self, session: Session, conv: Conversation, order: checkout.Order,
            market: Market, verb: str, rest: str, t: Translator) -> list[Message]:
        """A button pressed on one of the shopper's orders (`market` is the order's)."""
        if verb == "choose":
            conv.awaiting_payer = None  # the new rail asks again if it needs the payer
            return self.choose(session, order, market, rest, t)
        if verb == "withdraw":
            return self.withdraw(session, order, t)
        if verb == "cancel":
            return self.cancel(session, order, t)
        # "Yes, buy it" over a limit holds for the total and rail it was shown for: after a
        # price change or another rail, the limits are checked again.
        approved = verb == "confirm_over" and rest == f"{order.total}:{order.rail}"
        return self.confirm(session, conv, order, market, t, over_limit_ok=approved)

    def choose(self, session: Session, order: checkout.Order, market: Market, choice: str,
               t: Translator) -> list[Message]:
        """The shopper picked another rail ("pix") or a number of instalments ("3")."""
        if re.fullmatch(r"[0-9]{1,2}", choice):
            changed = checkout.choose_instalments(session=session, order=order,
                                                  count=int(choice))
        else:
            changed = checkout.choose_rail(session=session, order=order, rail=choice,
                                           market=market, rails=self.rails)
        if not changed:
            return [Message(text=t.gettext("That button is no longer valid. Tell me what you "
                                           "are looking for and I will show fresh options."))]
        return [self._confirmation(order, market, t)]

    def _note_gift(self, session: Session, conv: Conversation, ref: str, order_id: str) -> None:
        """Link the order to the person its card was shown for, when the request named one.

        Taken at Buy, not at confirmation: by then the shopper may be asking for someone
        else. Only orders that go through count as gifts given (`memory.gifts`)."""
        active = conv.last_query or {}
        person = (active.get("intent") or {}).get("recipient")
        if person and person != "self" and ref in active.get("seen", []):
            memory.record_gift(session=session,
                               user_key=linking.owner_of(session, conv.user_key),
                               subject=person, order_id=order_id)

    def _recheck(self, session: Session, merchant_slug: str, product_id: str) -> None:
        self.search.recheck(merchant_slug, product_id, session=session,
                            max_age=timedelta(minutes=self.settings.price_max_age_minutes))

    def confirm(self, session: Session, conv: Conversation, order: checkout.Order,
                 market: Market, t: Translator, *, over_limit_ok: bool = False
                 ) -> list[Message]:
        self._recheck(session, order.merchant_slug, order.product_id)
        owner = linking.owner_of(session, conv.user_key)
        result = checkout.confirm_order(
            session=session, order=order, rails=self.rails, over_limit_ok=over_limit_ok,
            spender=checkout.Spender(owner, linking.accounts_of(session, owner)))
        if result.outcome == checkout.ConfirmOutcome.OVER_LIMIT and result.spending:
            return [over_limit_message(order, result.spending, market, t)]
        if result.outcome == checkout.ConfirmOutcome.PAYER_NEEDED:
            conv.awaiting_payer = order.id
            return [Message(text=t.gettext(
                "To pay with {rail} I need the payer's name and e-mail (the voucher is sent "
                "there). Send them in one message, for example: Ana López ana@example.com"
            ).format(rail=t.gettext(RAIL_LABELS.get(order.rail, order.rail))), buttons=[
                Button(label=t.gettext("Cancel"), action=f"cancel:{order.id}")])]
        if result.outcome == checkout.ConfirmOutcome.CONFIRMED and result.instructions:
            qr_url = f"{self.settings.public_url.rstrip('/')}/api/payments/qr/{order.id}.png"
            return [payment_message(order, result.instructions, market, t, qr_url=qr_url)]
        if result.outcome == checkout.ConfirmOutcome.PRICE_CHANGED:
            return [self._confirmation(order, market, t, price_changed_from=result.old_total)]
        if result.outcome == checkout.ConfirmOutcome.PROVIDER_DOWN:
            return [Message(text=t.gettext(
                "I could not reach the payment provider. Nothing was charged; please confirm "
                "again in a few minutes."), buttons=[
                Button(label=t.gettext("Confirm"), action=f"confirm:{order.id}")])]
        if result.outcome == checkout.ConfirmOutcome.RAIL_REFUSED:
            refused = Message(text=t.gettext("Sorry, this order cannot be paid with {rail}. "
                                             "Nothing was charged.").format(
                rail=t.gettext(RAIL_LABELS.get(order.rail, order.rail))))
            card = self._confirmation(order, market, t)
            others = [b for b in card.buttons if b.action.startswith(("choose:", "cancel:"))]
            if len(others) > 1:  # another rail may take it
                return [refused, Message(text=card.text, buttons=others)]
            checkout.cancel_order(session=session, order=order)
            return [refused]
        if result.outcome == checkout.ConfirmOutcome.OUT_OF_STOCK:
            return [Message(text=t.gettext("Sorry, that product sold out before you confirmed. "
                                           "Nothing was charged."))]
        return [Message(text=t.gettext("Order {order} is already {status}.").format(
            order=order.id, status=t.gettext(STATUS_LABELS.get(order.status, order.status))))]

    def cancel(self, session: Session, order: checkout.Order, t: Translator) -> list[Message]:
        if checkout.cancel_order(session=session, order=order):
            return [Message(text=t.gettext("Canceled. Nothing was charged."))]
        return [Message(text=t.gettext("Order {order} can no longer be canceled here.")
                        .format(order=order.id))]

    def payer(self, session: Session, conv: Conversation, text: str, t: Translator
              ) -> list[Message] | None:
        """The shopper's answer to "your name and e-mail, please": the payment starts.

        Returns:
            None when the message is something else (a new request): the question is
            dropped and the message read as usual."""
        order = checkout.find_order(session=session, order_id=conv.awaiting_payer or "",
                                    user_key=conv.user_key)
        if order is None or order.status != checkout.OrderStatus.AWAITING_CONFIRMATION:
            conv.awaiting_payer = None
            return None
        if checkout.set_payer(session=session, order=order, text=text):
            conv.awaiting_payer = None
            return self.confirm(session, conv, order, get_market(order.market).read_by(
                conv.language, conv.home_market), t)
        if "@" not in text:
            # Something else than the answer ("hola", a new request): the question is
            # dropped, and the Confirm button asks it again.
            conv.awaiting_payer = None
            return None
        return [Message(text=t.gettext(
            "I need both a name and an e-mail, in one message, for example: Ana López "
            "ana@example.com"), buttons=[
            Button(label=t.gettext("Cancel"), action=f"cancel:{order.id}")])]

    def withdraw(self, session: Session, order: checkout.Order, t: Translator
                 ) -> list[Message]:
        market = order.shopper_market()  # the law of the market the order was made in
        done = withdrawal.withdraw(session=session, order=order, market=market,
                                   rail=self.rails.get(order.rail))
        outcome = done.outcome
        if outcome == withdrawal.WithdrawalOutcome.CANCELED and (
                order.rail == "cod" or done.stopped):
            text = t.gettext("Order {order} is canceled. Nothing was charged.")
        elif outcome == withdrawal.WithdrawalOutcome.CANCELED:
            # The code or voucher may have been paid a moment ago: that money comes back.
            text = t.gettext("Order {order} is canceled. If you paid it already, the money "
                             "will be refunded to you.")
        elif outcome == withdrawal.WithdrawalOutcome.REFUND_REQUESTED:
            text = t.gettext("Order {order} is canceled. The refund of {total} is on its way "
                             "and I will tell you here when it is done.")
        elif outcome == withdrawal.WithdrawalOutcome.REFUND_BY_MERCHANT:
            text = t.gettext("Order {order} is canceled. {merchant} will refund {total} "
                             "and I will tell you here when it is done.")
        elif outcome == withdrawal.WithdrawalOutcome.WINDOW_CLOSED:
            text = t.gettext("The time to cancel order {order} ended on {date}. {merchant} "
                             "can still help with a return.")
        elif outcome == withdrawal.WithdrawalOutcome.NO_RIGHT:
            text = t.gettext("Order {order} can no longer be canceled here.")
        elif outcome == withdrawal.WithdrawalOutcome.PROVIDER_DOWN:
            text = t.gettext("I could not reach the payment provider to refund order {order}. "
                             "Nothing changed; please try again in a few minutes.")
        else:
            text = t.gettext("Order {order} is already {status}.")
        ends = done.deadline
        return [Message(text=text.format(
            order=order.id, merchant=order.merchant_name,
            total=market.format_price(Money(order.total, order.currency)),
            status=t.gettext(STATUS_LABELS.get(order.status, order.status)),
            date=format_date(ends, format="long", locale=market.locale) if ends else ""))]

    def orders(self, session: Session, user_key: str, t: Translator) -> list[Message]:
        """The shopper's latest orders, with a cancel button on those still in the window."""
        latest = checkout.latest_orders(session=session, user_key=user_key)
        withdrawable = {o.id for o in latest
                        if withdrawal.can_withdraw(o, get_market(o.market))}
        return [orders_message(latest, t, withdrawable)]

    def limits(self, session: Session, conv: Conversation, market: Market, argument: str,
               t: Translator) -> list[Message]:
        """`/limit` shows the spending limits; `/limit 500` sets the one per order, `/limit
        month 2000` the monthly one, `/limit off` goes back to the defaults."""
        owner = linking.owner_of(session, conv.user_key)
        words = argument.casefold().split()
        if words and words[0] in SWITCH_OFF:
            for which in spending.Limit:
                spending.set_limit(session=session, owner_key=owner, currency=market.currency,
                                   limit=which, amount=None)
        elif words:
            which = spending.Limit.PER_MONTH if words[0] in MONTH_WORDS \
                else spending.Limit.PER_ORDER
            number = " ".join(words[1:] if words[0] in MONTH_WORDS | ORDER_WORDS else words)
            try:
                amount = parse_amount(number, market)
            except InvalidInput:
                return [Message(text=t.gettext(
                    "I did not understand that amount. For example: /limit 500 (per order) "
                    "or /limit month 2000."))]
            spending.set_limit(session=session, owner_key=owner, currency=market.currency,
                               limit=which, amount=amount.amount)
        per_order, per_month = spending.limits_of(session=session, owner_key=owner,
                                                  market=market.code, currency=market.currency)
        spent = spending.spent_this_month(session=session,
                                          user_keys=linking.accounts_of(session, owner),
                                          currency=market.currency)
        return [Message(text=t.gettext(
            "Your limits: {per_order} per order and {per_month} per month ({spent} spent "
            "this month). Over a limit I ask you to confirm twice.").format(
            per_order=market.format_price(Money(per_order, market.currency)),
            per_month=market.format_price(Money(per_month, market.currency)),
            spent=market.format_price(Money(spent, market.currency))))]
