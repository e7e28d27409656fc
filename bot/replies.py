"""What the assistant says: reply shapes and the localised sentences they carry."""

from __future__ import annotations

from babel.dates import format_date
from pydantic import BaseModel, Field

from bot.intent import Intent
from catalog.cards import Button, Card
from catalog.explain import INTEREST_LABELS
from checkout.models import Order
from checkout.rails import PaymentInstructions
from checkout.spending import Limit, SpendingCheck
from core.i18n import N_, Translator
from core.markets import Market
from core.money import Money


class Message(BaseModel):
    """One chat bubble: text, optional product cards, optional buttons."""

    text: str
    cards: list[Card] = Field(default_factory=list)
    buttons: list[Button] = Field(default_factory=list)
    # A picture to show with the text: the QR code of a payment (Pix, UPI, a SEPA transfer).
    image_url: str | None = None
    # That QR code's content, for channels that upload the picture rather than link to it
    # (Telegram, when `image_url` is not reachable from the internet). Not part of the API.
    qr: str | None = Field(default=None, exclude=True)


class Reply(BaseModel):
    messages: list[Message]


def unreadable_message(t: Translator) -> Message:
    """The answer to a photo, a sticker or a voice note: what Vitrine reads."""
    return Message(text=t.gettext("I can read only text messages for now. Tell me in words "
                                  "what you are looking for."))


RECIPIENT_PHRASES = {
    "mother": N_("your mother"), "mother_in_law": N_("your mother-in-law"),
    "father": N_("your father"), "father_in_law": N_("your father-in-law"),
    "grandmother": N_("your grandmother"), "grandfather": N_("your grandfather"),
    "wife": N_("your wife"), "husband": N_("your husband"), "partner": N_("your partner"),
    "friend": N_("your friend"), "sister": N_("your sister"), "brother": N_("your brother"),
    "child": N_("the child"), "teen": N_("the teenager"), "baby": N_("the baby"),
    "aunt": N_("your aunt"), "uncle": N_("your uncle"), "cousin": N_("your cousin"),
    "colleague": N_("your colleague"), "self": N_("you"),
}

EXAMPLES = {
    "pt": ["presente para minha mãe de 60 anos até R$200",
           "fone de ouvido bluetooth até R$300",
           "algo para meu pai que gosta de churrasco"],
    "es": ["regalo para mi mamá de 60 años, menos de 50.000 pesos",
           "algo para mi papá que le gusta el asado",
           "un libro para mi abuela"],
    "en": ["birthday gift for my 60-year-old mom under $50",
           "a toy for my 10-year-old nephew",
           "something for my dad who loves coffee"],
}

STATUS_LABELS = {
    "awaiting_confirmation": N_("awaiting your confirmation"),
    "awaiting_payment": N_("awaiting payment"), "pending_collection": N_("confirmed"),
    "paid": N_("paid"), "failed": N_("failed"), "canceled": N_("canceled"),
    "expired": N_("expired"), "refund_pending": N_("being refunded"),
    "refunded": N_("refunded"),
}

RAIL_LABELS = {"pix": N_("Pix"), "cod": N_("cash on delivery"),
               "sandbox": N_("card (secure checkout page)"),
               "stripe": N_("card (secure checkout page)"),
               "mercadopago": N_("Mercado Pago"), "upi": N_("UPI"),
               "sepa_qr": N_("bank transfer (SEPA)"), "oxxo": N_("cash at OXXO")}


def who(intent: Intent, t: Translator) -> str | None:
    if not intent.recipient:
        return None
    return t.gettext(RECIPIENT_PHRASES.get(intent.recipient, intent.recipient))


def facts_text(intent: Intent, t: Translator, kinds: list[str]) -> str:
    """"60 years old, gardening" for the given fact kinds of an intent."""
    parts: list[str] = []
    for entry in kinds:
        kind, _, value = entry.partition(":")
        if kind == "age":
            parts.append(t.ngettext("{n} year old", "{n} years old", int(value))
                         .format(n=value))
        elif kind == "interest":
            parts.append(t.gettext(INTEREST_LABELS.get(value, value)))
    return ", ".join(parts)


def results_text(intent: Intent, n: int, budget: Money | None, market: Market,
                 t: Translator) -> str:
    person = who(intent, t)
    limit = market.format_price(budget) if budget else None
    if person and limit:
        text = t.ngettext("Here is {n} idea for {who}, up to {budget}:",
                          "Here are {n} ideas for {who}, up to {budget}:", n)
    elif person:
        text = t.ngettext("Here is {n} idea for {who}:", "Here are {n} ideas for {who}:", n)
    elif limit:
        text = t.ngettext("Here is {n} idea up to {budget}:",
                          "Here are {n} ideas up to {budget}:", n)
    else:
        text = t.ngettext("Here is {n} idea:", "Here are {n} ideas:", n)
    return text.format(n=n, who=person, budget=limit)


def cheaper_text(intent: Intent, found: bool, price: Money, market: Market,
                 t: Translator) -> str:
    """The line above cards that answer "mais barato": cheaper than the cheapest shown."""
    person = who(intent, t)
    limit = market.format_price(price)
    if not found:
        return t.gettext("I have nothing cheaper than {price} for that right now.").format(
            price=limit)
    if person:
        return t.gettext("Cheaper ideas for {who}, under {price}:").format(who=person,
                                                                          price=limit)
    return t.gettext("Cheaper ideas, under {price}:").format(price=limit)


def no_results_text(intent: Intent, budget: Money | None, market: Market,
                    t: Translator) -> str:
    if budget:
        return t.gettext("I found nothing in stock up to {budget} for that. Try a higher "
                         "budget or other words.").format(budget=market.format_price(budget))
    return t.gettext("I found nothing in stock for that. Try other words, or tell me who "
                     "the gift is for and what they like.")


def help_message(language: str, t: Translator, *, greeting: bool = False) -> Message:
    text = t.gettext("Tell me who the gift is for, their age or what they like, and your "
                     "budget. For example:")
    if greeting:
        text = t.gettext("Hi! I help you find the right gift.") + " " + text
    return Message(text=text, buttons=[Button(label=example, action=f"say:{example}")
                                       for example in EXAMPLES.get(language, EXAMPLES["en"])])


def confirmation_message(order: Order, market: Market, t: Translator,
                         *, price_changed_from: int | None = None,
                         other_rails: list[str] | None = None,
                         instalments: list[int] | None = None) -> Message:
    total = market.format_price(Money(order.total, order.currency))
    lines = []
    if price_changed_from is not None:
        lines.append(t.gettext("The price changed from {old} to {new}. Please confirm again.")
                     .format(old=market.format_price(Money(price_changed_from, order.currency)),
                             new=total))
    lines += [
        t.gettext("Please confirm your order:"),
        order.title,
        t.gettext("Sold by {merchant}").format(merchant=order.merchant_name),
    ]
    if order.shipping:
        lines.append(t.gettext("Delivery: {shipping}").format(
            shipping=market.format_price(Money(order.shipping, order.currency))))
    if order.fee:
        lines.append(t.gettext("Cash on delivery fee: {fee}").format(
            fee=market.format_price(Money(order.fee, order.currency))))
    lines += [
        t.gettext("Total: {total}").format(total=total),
        t.gettext("Payment: {rail}").format(rail=t.gettext(RAIL_LABELS.get(order.rail,
                                                                          order.rail))),
    ]
    if order.instalments > 1:
        each = market.format_price(Money(-(-order.total // order.instalments), order.currency))
        lines.append(t.ngettext("In {n} instalment of {each}", "In {n} instalments of {each}",
                                order.instalments).format(n=order.instalments, each=each))
    lines.append(t.gettext("Delivery is arranged by {merchant}.").format(
        merchant=order.merchant_name))
    buttons = [Button(label=t.gettext("Confirm"), action=f"confirm:{order.id}"),
               Button(label=t.gettext("Cancel"), action=f"cancel:{order.id}")]
    buttons += [Button(label=t.gettext("Pay with {rail}").format(
        rail=t.gettext(RAIL_LABELS.get(rail, rail))), action=f"choose:{order.id}:{rail}")
        for rail in other_rails or ()]
    buttons += [Button(label=t.gettext("{n}x").format(n=n), action=f"choose:{order.id}:{n}")
                for n in ([1] if order.instalments > 1 else []) + [
                    n for n in instalments or () if n != order.instalments]]
    return Message(text="\n".join(lines), buttons=buttons)


def over_limit_message(order: Order, check: SpendingCheck, market: Market,
                       t: Translator) -> Message:
    """The extra step an order over a spending limit needs: which limit, and a second
    confirmation."""
    lines = []
    for over in check.exceeded:
        limit = market.format_price(Money(over.allowed, order.currency))
        if over.limit == Limit.PER_ORDER:
            lines.append(t.gettext("This order ({total}) is over your limit of {limit} per "
                                   "order.").format(
                total=market.format_price(Money(order.total, order.currency)), limit=limit))
        else:
            lines.append(t.gettext("With this order you would spend {spent} this month, over "
                                   "your monthly limit of {limit}.").format(
                spent=market.format_price(Money(over.spent + order.total, order.currency)),
                limit=limit))
    lines.append(t.gettext("Do you want to buy it anyway? You can change your limits with "
                           "/limit."))
    return Message(text="\n".join(lines), buttons=[
        Button(label=t.gettext("Yes, buy it"),
               action=f"confirm_over:{order.id}:{order.total}:{order.rail}"),
        Button(label=t.gettext("Cancel"), action=f"cancel:{order.id}"),
    ])


def withdraw_button(order: Order, market: Market, t: Translator) -> list[Button]:
    """The cancel button the law of the shopper's market gives them after buying (in
    Argentina, the mandatory "botón de arrepentimiento")."""
    if not market.withdrawal_days:
        return []
    return [Button(label=t.gettext("Cancel this purchase"), action=f"withdraw:{order.id}")]


def orders_message(orders: list[Order], t: Translator, withdrawable: set[str]) -> Message:
    """`/orders`: the shopper's latest orders, with the cancel button where it still works."""
    if not orders:
        return Message(text=t.gettext("You have no orders yet."))
    lines = [t.gettext("Your latest orders:")]
    buttons = []
    for order in orders:
        lines.append(t.gettext("{order}: {title}, {total}, {status}").format(
            order=order.id, title=order.title,
            total=order.shopper_market().format_price(Money(order.total, order.currency)),
            status=t.gettext(STATUS_LABELS.get(order.status, order.status))))
        if order.id in withdrawable:
            buttons.append(Button(label=t.gettext("Cancel {order}").format(order=order.id),
                                  action=f"withdraw:{order.id}"))
    return Message(text="\n".join(lines), buttons=buttons)


def payment_message(order: Order, instructions: PaymentInstructions, market: Market,
                    t: Translator, *, qr_url: str | None = None) -> Message:
    """How to pay a confirmed order, on its rail; `qr_url` draws the rail's QR code."""
    total = market.format_price(Money(order.total, order.currency))
    waiting = t.gettext("I will tell you here as soon as the payment is confirmed.")
    rail = instructions.rail
    if rail == "pix":
        lines = [
            t.gettext("Order {order} is reserved. Pay {total} with Pix: copy the code below "
                      "and paste it in your bank app (Pix copia e cola).")
            .format(order=order.id, total=total),
            "",
            instructions.copy_code or "",
            "",
            t.gettext("Reference: {txid}").format(txid=instructions.txid),
            waiting,
        ]
    elif rail == "cod":
        lines = [t.gettext("Order {order} is confirmed! You will pay {total} in cash on "
                           "delivery. {merchant} will contact you to arrange the delivery.")
                 .format(order=order.id, total=total, merchant=order.merchant_name)]
    elif rail == "upi":
        lines = [t.gettext("Order {order} is reserved. Pay {total} with UPI: open the link in "
                           "your UPI app, or scan the QR code.").format(order=order.id,
                                                                      total=total),
                 instructions.url or "", waiting]
    elif rail == "sepa_qr":
        lines = [t.gettext("Order {order} is reserved. Pay {total} by bank transfer: scan the "
                           "QR code with your banking app, or transfer to {iban} ({name}) "
                           "with the reference {reference}.").format(
            order=order.id, total=total, iban=instructions.details.get("iban", ""),
            name=instructions.details.get("beneficiary", ""),
            reference=instructions.reference or instructions.txid), waiting]
    elif rail == "oxxo":
        expires = format_date(instructions.expires_at, format="long", locale=market.locale) \
            if instructions.expires_at else ""
        lines = [t.gettext("Order {order} is reserved. Pay {total} in cash at any OXXO store "
                           "by {date}, with the reference {reference}.").format(
            order=order.id, total=total, date=expires, reference=instructions.reference),
            instructions.url or "", waiting]
    else:
        lines = [t.gettext("Order {order} is reserved. Pay {total} on the secure checkout "
                           "page:").format(order=order.id, total=total),
                 instructions.url or "", waiting]
    return Message(text="\n".join(lines), buttons=withdraw_button(order, market, t),
                   image_url=qr_url if instructions.qr else None, qr=instructions.qr)
