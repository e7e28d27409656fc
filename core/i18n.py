"""Translations: gettext catalogs under `locales/`, loaded with Babel.

The `.po` files are the source of truth; they are compiled in memory when first needed, so a
fresh checkout never depends on generated `.mo` files being present or up to date.
"""

from __future__ import annotations

import io
from functools import lru_cache
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations

LOCALES_DIR = Path(__file__).resolve().parent.parent / "locales"
DOMAIN = "messages"
SUPPORTED_LANGUAGES = ("en", "pt", "es")
_CATALOG_FOR_LANGUAGE = {"en": None, "pt": "pt_BR", "es": "es"}


def N_(message: str) -> str:
    """Mark a string for extraction without translating it yet."""
    return message


def language_of(locale: str | None, default: str = "en") -> str:
    """The two-letter language of a locale ("pt_BR" -> "pt"); `default` if not supported."""
    lang = (locale or "").replace("-", "_").split("_", 1)[0].lower()
    return lang if lang in SUPPORTED_LANGUAGES else default


@lru_cache
def translations(language: str) -> NullTranslations:
    """Translations for a language ("en", "pt" or "es"); English is the source language."""
    folder = _CATALOG_FOR_LANGUAGE.get(language_of(language))
    if folder is None:
        return NullTranslations()
    po_path = LOCALES_DIR / folder / "LC_MESSAGES" / f"{DOMAIN}.po"
    with po_path.open("rb") as fh:
        catalog = read_po(fh, locale=folder)
    buf = io.BytesIO()
    write_mo(buf, catalog)
    buf.seek(0)
    return Translations(fp=buf, domain=DOMAIN)


class Translator:
    """gettext bound to one shopper's language."""

    def __init__(self, language: str) -> None:
        self.language = language_of(language)
        self._t = translations(self.language)

    def gettext(self, message: str) -> str:
        return self._t.gettext(message)

    def ngettext(self, singular: str, plural: str, n: int) -> str:
        return self._t.ngettext(singular, plural, n)
