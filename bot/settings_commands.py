"""`/language` and `/market`: the shopper chooses how Vitrine speaks and where they shop.

Without an argument each lists the choices as buttons; with one ("/language es", "/idioma
português", "/market AR", "/mercado Argentina") it switches. A chosen language then wins
over the language a channel reports for the device.
"""

from __future__ import annotations

from bot.models import Conversation
from bot.privacy import Command
from bot.replies import Message
from catalog.cards import Button
from catalog.text import fold
from core.i18n import Translator
from core.markets import all_markets

LANGUAGES = {"pt": "Português", "es": "Español", "en": "English"}
LANGUAGE_WORDS = {
    "pt": "pt", "pt_br": "pt", "portugues": "pt", "portuguese": "pt", "portugues brasil": "pt",
    "es": "es", "espanol": "es", "spanish": "es", "castellano": "es", "espanhol": "es",
    "en": "en", "english": "en", "ingles": "en", "inglesa": "en",
}


def settings_command(conv: Conversation, command: Command, t: Translator) -> list[Message]:
    if command.name == "language":
        return _language(conv, command.argument, t)
    return _market(conv, command.argument, t)


def _language(conv: Conversation, argument: str, t: Translator) -> list[Message]:
    chosen = LANGUAGE_WORDS.get(fold(argument).replace("-", "_").strip())
    if chosen is None:
        return [Message(text=t.gettext("Which language should I speak?"), buttons=[
            Button(label=name, action=f"say:/language {code}")
            for code, name in LANGUAGES.items()])]
    conv.language, conv.language_chosen = chosen, True
    return [Message(text=Translator(chosen).gettext(
        "From now on I speak {language}.").format(language=LANGUAGES[chosen]))]


def _market(conv: Conversation, argument: str, t: Translator) -> list[Message]:
    wanted = fold(argument).strip()
    markets = all_markets()
    code = next((c for c, m in markets.items()
                 if wanted and wanted in (c.lower(), fold(m.name))), None)
    if code is None:
        return [Message(text=t.gettext("Where do you shop? Prices, stores and ways to pay "
                                       "follow the country."), buttons=[
            Button(label=m.name, action=f"say:/market {c}") for c, m in markets.items()])]
    if code != conv.market:
        conv.market = code
        # What was shown belongs to the other country's stores.
        conv.shown, conv.excluded, conv.last_query, conv.quoted = [], [], {}, {}
    return [Message(text=t.gettext("Now shopping in {market}, in {currency}.").format(
        market=markets[code].name, currency=markets[code].currency))]
