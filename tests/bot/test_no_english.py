"""No English reaches a Portuguese or Spanish conversation.

Whole conversations are played in each language, through every command and button a shopper
meets: a search, more like this, not for me, buying and paying, orders, withdrawal, memory,
limits, language and market, bad input, a request nothing matches. Every word Vitrine itself
wrote (everything but the merchants' product titles and shop names) is checked three ways:
- each string looked up had a translation (a string built at run time and never extracted
  would come back in English);
- no English message of the catalog appears in it (a string not passed through gettext);
- no common English word appears in it (anything else written in English by hand).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from babel.messages.pofile import read_po

from bot.privacy import COMMANDS
from bot.replies import Message
from core import i18n
from core.i18n import LOCALES_DIR

# Words that are English and neither Portuguese nor Spanish.
ENGLISH_WORDS = frozenset("""
the your you with and this that these those here there what which please thanks
order orders payment pay paid buy cancel confirm more like not delivery shipping price
gift gifts looking found nothing sorry try again tell show see memory forget
limit month language market now will would can could should about from into
""".split())
WORD = re.compile(r"[^\W\d_]+", re.UNICODE)
# Data, not prose: payment codes, links, e-mail addresses, order numbers.
DATA = re.compile(r"^000201\S*$|\S+://\S+|\S+@\S+|\bord_\w+", re.MULTILINE)
PLACEHOLDER = re.compile(r"\{[a-z_]+\}")

FORGET = {"pt": "/esquecer", "es": "/olvidar"}
CONVERSATIONS = {
    ("pt", "BR"): ["/start", "presente para minha mãe de 60 anos que ama jardinagem, até R$200",
                   "mais barato", "/ajuda", "/memoria", "/limite 300", "/lembretes desligar",
                   "/pedidos", "/mercado", "/idioma", "asdfgh qwerty zxcv",
                   "um iate de luxo com heliponto", "x" * 3000],
    ("es", "AR"): ["/start", "regalo para mi mamá que ama la jardinería", "más barato",
                   "/ayuda", "/memoria", "/limite 300000", "/pedidos", "/mercado",
                   "/idioma", "un yate de lujo con helipuerto", "x" * 3000],
    ("es", "MX"): ["hola", "regalo para mi papá, hasta 500 pesos", "/pedidos"],
}


@pytest.fixture
def misses(monkeypatch) -> Iterator[list[tuple[str, str]]]:
    """Every (language, message) looked up without a translation, while the test runs."""
    found: list[tuple[str, str]] = []
    catalogs = {lang: _msgids(folder) for lang, folder in (("pt", "pt_BR"), ("es", "es"))}
    gettext, ngettext = i18n.Translator.gettext, i18n.Translator.ngettext

    def checked_gettext(self, message: str) -> str:
        if self.language in catalogs and message not in catalogs[self.language]:
            found.append((self.language, message))
        return gettext(self, message)

    def checked_ngettext(self, singular: str, plural: str, n: int) -> str:
        if self.language in catalogs and singular not in catalogs[self.language]:
            found.append((self.language, singular))
        return ngettext(self, singular, plural, n)

    monkeypatch.setattr(i18n.Translator, "gettext", checked_gettext)
    monkeypatch.setattr(i18n.Translator, "ngettext", checked_ngettext)
    yield found


def _msgids(folder: str) -> set[str]:
    with (LOCALES_DIR / folder / "LC_MESSAGES" / "messages.po").open("rb") as fh:
        catalog = read_po(fh)
    ids = set()
    for message in catalog:
        if message.fuzzy:  # compiled catalogs leave fuzzy entries out: English is shown
            continue
        if message.id and message.string and (
                all(message.string) if isinstance(message.string, tuple) else True):
            ids.add(message.id[0] if isinstance(message.id, tuple) else message.id)
    return ids


def _english_fragments() -> list[str]:
    """Pieces of the catalog's English messages long enough to be unmistakable."""
    with (LOCALES_DIR / "messages.pot").open("rb") as fh:
        template = read_po(fh)
    pieces = []
    for message in template:
        for text in (message.id if isinstance(message.id, tuple) else (message.id,)):
            pieces += [p.strip() for p in PLACEHOLDER.split(text or "") if len(p.strip()) >= 16]
    return pieces


def _own_words(message: Message, merchant_words: set[str]) -> list[str]:
    """What Vitrine wrote in a message: its text, buttons and cards, minus merchant data."""
    parts = [message.text, *(b.label for b in message.buttons)]
    for card in message.cards:
        parts += [card.price_text, card.reason, card.label or "",
                  *(b.label for b in card.buttons)]
    text = DATA.sub(" ", "\n".join(parts))
    for name in sorted(merchant_words, key=len, reverse=True):
        text = text.replace(name, " ")
    return [text]


def _play(bot, user_key: str, market: str, turns: list[str]) -> list[Message]:
    messages: list[Message] = []
    first = True
    for text in turns:
        reply = bot.handle(user_key=user_key, text=text, market=market if first else None)
        first = False
        messages += reply.messages
    # Then the buttons a shopper meets: more like this, not for me, buy, the rails, confirm,
    # the orders list's cancel.
    cards = [c for m in messages for c in m.cards]
    if cards:
        for verb in ("more", "skip"):
            messages += bot.handle(user_key=user_key,
                                   action=f"{verb}:{cards[-1].ref}").messages
        bought = bot.handle(user_key=user_key, action=cards[0].buttons[0].action).messages
        messages += bought
        for button in [b for m in bought for b in m.buttons if b.action.startswith(
                ("choose:", "confirm:"))][:3]:
            messages += bot.handle(user_key=user_key, action=button.action).messages
        listed = bot.handle(user_key=user_key, text="/pedidos").messages
        messages += listed
        for button in [b for m in listed for b in m.buttons][:1]:
            messages += bot.handle(user_key=user_key, action=button.action).messages
    messages += bot.handle(user_key=user_key, action="buy:nowhere:nothing").messages
    messages += bot.handle(user_key=user_key, text=FORGET[user_key.split("-")[1]]).messages
    return messages


@pytest.mark.parametrize(("language", "market"), list(CONVERSATIONS))
def test_no_english_reaches_a_portuguese_or_spanish_conversation(
        demo_runtime, misses, language, market):
    bot = demo_runtime.assistant
    user_key = f"web:lang-{language}-{market}"
    messages = _play(bot, user_key, market, CONVERSATIONS[(language, market)])
    assert len(messages) > (4 if market == "MX" else 20)  # Mexico has no demo shop
    merchant_words = {c.title for m in messages for c in m.cards} | \
        {c.merchant for m in messages for c in m.cards}
    # The orders list names each product: "ord_1f…: <title>, R$ 89,90, pago".
    merchant_words |= {line.split(": ", 1)[1].rsplit(",", 2)[0]
                       for m in messages for line in m.text.splitlines()
                       if re.match(r"^ord_\w+: ", line)}
    fragments = _english_fragments()
    leaks = []
    for message in messages:
        for text in _own_words(message, merchant_words):
            leaks += [f"catalog text {f!r} in {text[:80]!r}" for f in fragments
                      if f in text and f not in _translated(language, f)]
            words = {w.lower() for w in WORD.findall(text)} & ENGLISH_WORDS
            leaks += [f"English {sorted(words)} in {text[:120]!r}"] if words else []
    assert not misses, misses
    assert not leaks, "\n".join(leaks)


def _translated(language: str, fragment: str) -> str:
    """The fragment's own translation, for the few identical in both (brand names)."""
    return i18n.Translator(language).gettext(fragment)


@pytest.mark.parametrize("folder", ["pt_BR", "es"])
def test_every_command_a_translation_names_is_one_vitrine_understands(folder):
    with (LOCALES_DIR / folder / "LC_MESSAGES" / "messages.po").open("rb") as fh:
        catalog = read_po(fh)
    named = {word for message in catalog if message.id
             for text in (message.string if isinstance(message.string, tuple)
                          else (message.string,))
             for word in re.findall(r"(?<![\w/])/(\w+)", text or "")}
    assert named and named <= set(COMMANDS), named - set(COMMANDS)
