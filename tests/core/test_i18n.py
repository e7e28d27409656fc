import os
import re

import pytest
from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po, write_po

from core import i18n
from core.i18n import LOCALES_DIR, Translator

PLACEHOLDER = re.compile(r"\{[a-z_]+\}")


def _catalog(folder):
    with (LOCALES_DIR / folder / "LC_MESSAGES" / "messages.po").open("rb") as fh:
        return read_po(fh)


@pytest.mark.parametrize("folder", ["pt_BR", "es"])
def test_every_message_is_translated_with_the_same_placeholders(folder):
    with (LOCALES_DIR / "messages.pot").open("rb") as fh:
        template = read_po(fh)
    catalog = _catalog(folder)
    for message in template:
        if not message.id:
            continue
        translated = catalog.get(message.id)
        assert translated is not None, message.id
        ids = message.id if isinstance(message.id, tuple) else (message.id,)
        strings = translated.string if isinstance(translated.string, tuple) \
            else (translated.string,)
        assert all(strings), message.id
        for text in strings:
            assert set(PLACEHOLDER.findall(text)) == set(PLACEHOLDER.findall(ids[-1])), text


def test_plural_rules_follow_each_language():
    assert Translator("pt").ngettext("{n} review", "{n} reviews", 0).format(n=0) == \
        "0 avaliação"
    assert Translator("es").ngettext("{n} review", "{n} reviews", 0).format(n=0) == \
        "0 reseñas"
    assert Translator("en").ngettext("{n} review", "{n} reviews", 1).format(n=1) == "1 review"


def test_unknown_languages_fall_back_to_english():
    assert Translator("de").gettext("Buy") == "Buy"
    assert Translator("pt_BR").gettext("Buy") == "Comprar"


def _write_catalog(path, buy: str, *, compiled: bool) -> None:
    catalog = Catalog(locale="pt_BR")
    catalog.add("Buy", buy)
    with path.open("wb") as fh:
        (write_mo if compiled else write_po)(fh, catalog)


def test_the_compiled_catalog_is_read_unless_its_po_was_edited_since(tmp_path, monkeypatch):
    folder = tmp_path / "pt_BR" / "LC_MESSAGES"
    folder.mkdir(parents=True)
    po, mo = folder / "messages.po", folder / "messages.mo"
    _write_catalog(po, "Comprar", compiled=False)
    _write_catalog(mo, "Compre já", compiled=True)
    os.utime(po, (1_000_000, 1_000_000))
    monkeypatch.setattr(i18n, "LOCALES_DIR", tmp_path)
    i18n.translations.cache_clear()
    try:
        assert i18n.translations("pt").gettext("Buy") == "Compre já"
        os.utime(po)  # edited after the last `make`: the .mo is stale
        i18n.translations.cache_clear()
        assert i18n.translations("pt").gettext("Buy") == "Comprar"
        mo.unlink()  # never compiled
        i18n.translations.cache_clear()
        assert i18n.translations("pt").gettext("Buy") == "Comprar"
    finally:
        i18n.translations.cache_clear()
