"""A bot `Message` as Telegram Bot API messages: product cards as photos with captions, text
split within Telegram's limits, a Pix code as copyable monospace. All text is HTML (Telegram's
`parse_mode=HTML`), everything but the markup added here escaped."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field

from bot.channels.cards import card_caption, split_text
from bot.channels.media import shareable_image
from bot.replies import Message
from catalog.cards import Button, Card
from checkout import qr

# The Bot API's limits, counted after entities are parsed ("sendMessage", "sendPhoto").
TEXT_MAX = 4096
CAPTION_MAX = 1024
# Formats sendPhoto accepts by URL; SVG and the like are sent as text instead.
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif")
# A Pix "copia e cola" code (EMV BR Code) on a line of its own: starts with the payload format
# indicator, carries the Pix GUI, ends with its CRC16 field. Names inside it have spaces.
PIX_CODE = re.compile(r"^000201.*br\.gov\.bcb\.pix.*6304[0-9A-F]{4}$",
                      re.MULTILINE | re.IGNORECASE)


@dataclass(frozen=True)
class Outgoing:
    """One Bot API call: `sendPhoto` when `photo` is set (the text is its caption), else
    `sendMessage`; `buttons` become its inline keyboard."""

    html: str
    photo: str | None = None
    # A picture to upload (a PNG) when there is no URL Telegram can fetch.
    upload: bytes | None = None
    buttons: list[Button] = field(default_factory=list)
    # Buttons laid out in rows of these sizes (the last size repeats), as aiogram's `adjust`.
    rows: tuple[int, ...] = (1,)


def photo_url(url: str | None) -> str | None:
    """`url` when Telegram's servers can fetch it as a photo; else None, and the card goes
    as text."""
    return shareable_image(url, PHOTO_SUFFIXES)


def card_message(card: Card, locale: str) -> Outgoing:
    caption = html.escape(card_caption(card, locale, CAPTION_MAX))
    if card.label:  # "Sponsored" stands out from the product's own words
        label = html.escape(card.label)
        caption = f"<i>{label}</i>" + caption[len(label):]
    # Buy alone on the first row, the other choices two by two.
    return Outgoing(html=caption, photo=photo_url(card.image_url), buttons=card.buttons,
                    rows=(1, 2))


def text_html(text: str) -> str:
    """Escaped text with payment codes as `<code>`: a tap copies them in Telegram."""
    out, at = [], 0
    for match in PIX_CODE.finditer(text):
        out += [html.escape(text[at:match.start()]),
                f"<code>{html.escape(match.group())}</code>"]
        at = match.end()
    out.append(html.escape(text[at:]))
    return "".join(out)


def render(message: Message, *, locale: str = "en") -> list[Outgoing]:
    """A bot message as Telegram messages, in the order they are sent: its text (the last
    part carries the buttons), its picture (a payment's QR code), then one per card."""
    sent = [Outgoing(html=text_html(part)) for part in split_text(message.text, TEXT_MAX)]
    if message.buttons:
        last = sent.pop() if sent else Outgoing(html="…")
        sent.append(Outgoing(html=last.html, buttons=message.buttons))
    if message.image_url and (photo := photo_url(message.image_url)):
        sent.append(Outgoing(html="", photo=photo))
    elif message.qr:
        # Telegram cannot fetch it (served by a development server): the picture goes along.
        sent.append(Outgoing(html="", upload=qr.png(message.qr)))
    elif message.image_url:
        sent.append(Outgoing(html=html.escape(message.image_url)))
    sent += [card_message(card, locale) for card in message.cards]
    return sent
