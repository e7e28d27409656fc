"""Translations: gettext catalogs under `locales/`, loaded with Babel.

Translators edit the `.po` files; `make` compiles them into `.mo` files (never committed),
which are what Vitrine reads. A `.mo` missing or older than its `.po` (an install without
`make`, a `.po` edited since) is not trusted: the `.po` is then compiled in memory instead,
so a shopper never sees a stale or missing translation.
"""

from __future__ import annotations

import io
import logging
from functools import lru_cache
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations

log = logging.getLogger(__name__)
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
    mo_path = po_path.with_suffix(".mo")
    if mo_path.exists() and mo_path.stat().st_mtime >= po_path.stat().st_mtime:
        with mo_path.open("rb") as fh:
            return Translations(fp=fh, domain=DOMAIN)
    log.info("%s is missing or older than its .po (run make): compiled in memory", mo_path)
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
