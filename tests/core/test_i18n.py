import re

import pytest
from babel.messages.pofile import read_po

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
