"""Kinds of product ("sneakers", "laptop", "perfume") named in any of the three languages.

The words live in `product_types.json` beside this module. Understanding uses them to read what
a shopper asks for ("tênis", "zapatillas" and "running shoes" are all `sneakers`) and what they
rule out ("sem roupa" is the `clothing` group); ranking uses them to tell what kind of product
a title or a category names, so that "laptop" finds laptops before laptop bags.

Matching works on `catalog.text.stems` tokens, so case, accents and regular plurals do not
matter, and the longest phrase wins at each position: "laptop bag" is a laptop bag, not a
laptop, and "roupa de cama" is bedding, not clothing. The phrases sit in a token trie, so a
scan costs a few dictionary look-ups per word whatever the number of types.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from catalog.text import TOKEN_RE, fold, stem
from core.errors import InvalidInput

PRODUCT_TYPES_PATH = Path(__file__).with_name("product_types.json")
LANGUAGES = ("en", "pt", "es")
_END = ""  # trie key under which a node stores the name its phrase ends on; never a stem


class InvalidProductTypes(InvalidInput):
    """`product_types.json` contradicts itself (a phrase with two kinds, an unknown member)."""


@dataclass(frozen=True)
class KindMatch:
    """One phrase naming a kind, found in a folded text.

    `start` and `end` are character offsets into the folded text that was scanned.
    """

    name: str
    group: bool  # a group ("clothing") rather than a single type ("t-shirt")
    start: int
    end: int


class ProductTypes:
    """The kinds of product and the words that name them; see the module docstring."""

    def __init__(self, types: dict[str, dict[str, list[str]]], groups: dict[str, list[str]],
                 group_words: dict[str, dict[str, list[str]]] | None = None) -> None:
        """Build the matcher.

        Raises:
            InvalidProductTypes: a language is missing, a phrase names two kinds, a group lists
                an unknown type, or a group has the name of a type.
        """
        self._words: dict[str, tuple[str, ...]] = {}
        self._words_in: dict[tuple[str, str], tuple[str, ...]] = {}
        self._labels: dict[tuple[str, str], str] = {}
        self._groups: dict[str, tuple[str, ...]] = {}
        self._groups_of: dict[str, list[str]] = {name: [] for name in types}
        self._trie: dict[str, Any] = {}
        for name, by_language in types.items():
            missing = [lang for lang in LANGUAGES if not by_language.get(lang)]
            if missing:
                raise InvalidProductTypes(f"type {name!r} has no words in {', '.join(missing)}")
            words = [w for lang in LANGUAGES for w in by_language[lang]]
            self._labels.update(((name, lang), by_language[lang][0]) for lang in LANGUAGES)
            self._words[name] = tuple(dict.fromkeys(words))
            self._words_in.update(((name, lang), tuple(by_language[lang])) for lang in LANGUAGES)
            for word in words:
                self._add_phrase(word, name, group=False)
        for group, members in groups.items():
            if group in types:
                raise InvalidProductTypes(f"group {group!r} has the name of a type")
            unknown = [m for m in members if m not in types]
            if unknown:
                raise InvalidProductTypes(f"group {group!r} lists unknown types: {unknown}")
            self._groups[group] = tuple(dict.fromkeys(members))
            for member in self._groups[group]:
                self._groups_of[member].append(group)
        for group, by_language in (group_words or {}).items():
            if group not in groups:
                raise InvalidProductTypes(f"words given for unknown group {group!r}")
            for lang in by_language:
                if lang not in LANGUAGES:
                    raise InvalidProductTypes(f"group {group!r}: unknown language {lang!r}")
            self._labels.update(((group, lang), by_language[lang][0]) for lang in LANGUAGES
                                if by_language.get(lang))
            for word in (w for lang in LANGUAGES for w in by_language.get(lang, [])):
                self._add_phrase(word, group, group=True)

    def _add_phrase(self, phrase: str, name: str, *, group: bool) -> None:
        keys = [stem(t) for t in TOKEN_RE.findall(fold(phrase))]
        if not keys:
            raise InvalidProductTypes(f"{name!r}: the phrase {phrase!r} has no letters or digits")
        node = self._trie
        for key in keys:
            node = node.setdefault(key, {})
        existing = node.get(_END)
        if existing is not None and existing != (name, group):
            raise InvalidProductTypes(
                f"the phrase {phrase!r} names both {existing[0]!r} and {name!r}")
        node[_END] = (name, group)

    # -- what the data holds ----------------------------------------------------------------

    @property
    def type_names(self) -> tuple[str, ...]:
        """Every canonical type, in file order."""
        return tuple(self._words)

    @property
    def group_names(self) -> tuple[str, ...]:
        """Every group, in file order."""
        return tuple(self._groups)

    def is_type(self, name: str) -> bool:
        return name in self._words

    def is_group(self, name: str) -> bool:
        return name in self._groups

    def expand(self, name: str) -> list[str]:
        """The types a name covers: a type is itself, a group its members, anything else none."""
        if name in self._words:
            return [name]
        return list(self._groups.get(name, ()))

    def words(self, type_name: str, language: str | None = None) -> list[str]:
        """Every word and phrase naming a type, in en, pt and es (or in one `language`), as
        written in the data file.

        A group name gives the words of all its types; an unknown name gives none.
        """
        types = [type_name] if type_name in self._words else self._groups.get(type_name, ())
        if language is None:
            return list(dict.fromkeys(w for t in types for w in self._words[t]))
        return list(dict.fromkeys(w for t in types for w in self._words_in[(t, language)]))

    def label(self, name: str, language: str) -> str:
        """How a type or group is called in a language ("clothing", "pt" -> "roupa"): the
        first word the data lists for it; an unknown name stands for itself."""
        return self._labels.get((name, language)) or self._labels.get((name, "en")) or name

    def groups_of(self, type_name: str) -> list[str]:
        """The groups a type belongs to ("sneakers" -> ["footwear", "sports"])."""
        return list(self._groups_of.get(type_name, ()))

    # -- finding kinds in text --------------------------------------------------------------

    def find(self, text: str) -> list[str]:
        """The canonical types a text names, in order of appearance, without duplicates.

        Words naming a whole group ("roupa", "electronics") are not types and are left out;
        `scan` reports them.
        """
        return list(dict.fromkeys(m.name for m in self.scan(fold(text)) if not m.group))

    def scan(self, folded: str) -> list[KindMatch]:
        """Every type and group phrase in an already folded text (see `catalog.text.fold`),
        leftmost first, the longest phrase at each position, non-overlapping."""
        spans = [(m.start(), m.end(), stem(m.group(0))) for m in TOKEN_RE.finditer(folded)]
        found: list[KindMatch] = []
        i = 0
        while i < len(spans):
            node = self._trie
            best: tuple[int, tuple[str, bool]] | None = None
            j = i
            while j < len(spans):
                child = node.get(spans[j][2])
                if child is None:
                    break
                node = child
                j += 1
                if _END in node:
                    best = (j, node[_END])
            if best is None:
                i += 1
                continue
            end, (name, group) = best
            found.append(KindMatch(name=name, group=group, start=spans[i][0],
                                   end=spans[end - 1][1]))
            i = end
        return found

    def names_a_type(self, stems: Sequence[str]) -> bool:
        """Whether these stems, in order (a title's, as `catalog.text.stems` gives them),
        hold a phrase naming a type. A trie walk, cheap enough to run on every title
        while an index is built."""
        for i in range(len(stems)):
            node: dict[str, Any] | None = self._trie
            for key in stems[i:]:
                node = node.get(key) if node is not None else None
                if node is None:
                    break
                found = node.get(_END)
                if found is not None and not found[1]:
                    return True
        return False

    def match_at(self, folded: str, pos: int) -> KindMatch | None:
        """The kind named by the phrase starting at the first word at or after `pos`, if any."""
        rest = folded[pos:]
        first = TOKEN_RE.search(rest)
        if first is None or rest[:first.start()].strip():
            return None
        matches = self.scan(rest)
        if not matches or matches[0].start != first.start():
            return None
        m = matches[0]
        return KindMatch(name=m.name, group=m.group, start=m.start + pos, end=m.end + pos)


def load_product_types(path: Path = PRODUCT_TYPES_PATH) -> ProductTypes:
    """Read and check a product-types file.

    Raises:
        InvalidProductTypes: the file contradicts itself (see `ProductTypes`).
    """
    raw = json.loads(path.read_text("utf-8"))
    return ProductTypes(raw["types"], raw.get("groups", {}), raw.get("group_words", {}))


@lru_cache
def product_types() -> ProductTypes:
    """The shipped product types, loaded once."""
    return load_product_types()
