"""The rule parser: understanding a message in pt, es and en without a language model.

`RuleIntentParser` reads, from the word lists in `lexicon.json` and the kinds of product in
`catalog/product_types.json`: who the gift is for and their name and age (`bot.ages`),
gender when the words imply it, occasion, budget (`bot.budgets`), kinds of product
("tênis" -> sneakers), what is ruled out ("nada de perfume", "sin ropa"), brands wanted or
avoided, interests, colour, material and size.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from bot.ages import AgeReader, take_name
from bot.budgets import take_budget
from bot.intent import Intent, lexicon
from catalog.product_types import KindMatch, product_types
from catalog.text import fold
from core.markets import Market

LANGUAGE_SWITCH_MARGIN = 2


Span = tuple[int, int]


def _alternation(words: Iterable[str]) -> str:
    """A regex alternation of folded phrases, longest first, any run of spaces between words."""
    folded = sorted({fold(w) for w in words}, key=len, reverse=True)
    return "|".join(re.escape(w).replace(r"\ ", r"\s+") for w in folded)


def _phrases_re(words: Iterable[str], suffix: str = "") -> re.Pattern[str]:
    return re.compile(rf"(?<![a-z0-9])(?:{_alternation(words)}){suffix}(?![a-z0-9])")


def _brand_key(text: str) -> str:
    return "".join(re.findall(r"[a-z0-9]+", fold(text)))


def _inside(span: Span, spans: Iterable[Span]) -> bool:
    return any(a <= span[0] and span[1] <= b for a, b in spans)


def _cut(text: str, spans: Iterable[Span]) -> str:
    """The text with each span replaced by a space (spans may come in any order)."""
    out, pos = [], 0
    for a, b in sorted(spans):
        if a < pos:
            a = pos
        if a >= b:
            continue
        out += [text[pos:a], " "]
        pos = b
    out.append(text[pos:])
    return "".join(out)


def _capitalised(text: str) -> dict[str, str]:
    """Words written with a capital, folded -> as written; none when the whole message is in
    Title Case or capitals, where a capital says nothing about names."""
    words = re.findall(r"[^\W_][\w'’&+.-]*", text)
    long_words = [w for w in words if w[0].isalpha() and len(w) >= 3]
    upper = [w for w in long_words if w[0].isupper()]
    if len(long_words) >= 3 and len(upper) * 5 >= len(long_words) * 3:
        return {}
    return {fold(w).strip(".-'’"): w.strip(".-'’") for w in words if w[0].isupper()}


def _conjunction_re(conjunctions: list[str]) -> re.Pattern[str]:
    words = [c for c in conjunctions if c[0].isalpha()]
    marks = "".join(re.escape(c) for c in conjunctions if not c[0].isalpha())
    return re.compile(rf"\s*(?:[{marks}]|(?:{_alternation(words)})(?![a-z0-9]))\s*")


def _model_of(previous: str, filler: set[str]) -> bool:
    """Whether a lone letter or digit after `previous` names its model ("iphone 7")."""
    return len(previous) > 1 and previous.isalpha() and previous not in filler


_WORD_RE = re.compile(r"\s*([a-z0-9][a-z0-9'&+-]*)")
MAX_BRAND_WORDS = 3
INTEREST_CONTEXT_GAP = 2  # words allowed between "gosta de" and what she likes ("de tomar café")


class RuleIntentParser:
    """Deterministic parser for pt, es and en built on `lexicon.json`."""

    def __init__(self) -> None:
        lex = lexicon()
        self._kinds = product_types()
        self._phrases: dict[str, tuple[str, str]] = {}
        for kind in ("occasions", "recipients", "interests"):
            for concept, words in lex[kind].items():
                for word in words:
                    self._phrases.setdefault(fold(word), (kind, concept))
        alternation = "|".join(re.escape(p) for p in sorted(self._phrases, key=len, reverse=True))
        self._phrase_re = re.compile(rf"(?<![a-z0-9])(?:{alternation})(?![a-z0-9])")
        self._accents = {re.compile(rf"(?<!\w){re.escape(k)}(?!\w)"): v
                         for k, v in lex["accent_significant"].items()}
        self._filler = {fold(w) for words in lex["filler"].values() for w in words}
        # Filler in one language can be a product word in another: Spanish "fan", Portuguese
        # "pro" ("ps4 pro"). Leftover words are judged by the message's own language.
        self._filler_in = {lang: {fold(w) for w in words}
                           for lang, words in lex["filler"].items()}
        thanks = "|".join(re.escape(fold(w)) for w in sorted(lex["thanks"], key=len, reverse=True))
        self._thanks_re = re.compile(rf"(?<![a-z])(?:{thanks})(?![a-z])")
        self._markers = {lang: {fold(w) for w in words}
                         for lang, words in lex["language_markers"].items()}
        number_words = lex["number_words"]
        self._ages = AgeReader(number_words)

        # What is ruled out, and what may sit between the marker and it.
        self._exclusion_re = _phrases_re(lex["exclusion_markers"])
        self._exclusion_after_re = re.compile(
            rf"\s*(?:{_alternation(lex['exclusion_after'])})\s*(?=[,.;:!?]|$)")
        self._determiners_re = re.compile(
            rf"\s*(?:(?:{_alternation(lex['determiners'])})(?![a-z0-9])\s*)*")
        self._nor_re = _conjunction_re(lex["conjunctions"]["negative"])

        # Brands: the known ones by name, then capitalised words after a marker.
        self._brands: dict[str, tuple[str, bool]] = {}
        for group, anywhere in (("anywhere", True), ("after_marker", False)):
            for name in lex["brands"][group]:
                self._brands.setdefault(_brand_key(name), (name, anywhere))
        names = sorted(lex["brands"]["anywhere"] + lex["brands"]["after_marker"],
                       key=lambda n: len(fold(n)), reverse=True)
        flexible = "|".join(r"[\s'&+.-]*".join(re.findall(r"[a-z0-9]+", fold(n))) for n in names)
        self._brand_re = re.compile(rf"(?<![a-z0-9])(?:{flexible})(?![a-z0-9])")
        self._brand_marker_re = _phrases_re(lex["brand_markers"])
        self._brand_known_marker_re = _phrases_re(lex["brand_markers_known_only"])
        self._not_names = self._filler | {fold(w) for w in number_words} | {
            word for phrase in self._phrases for word in phrase.split()}

        # Likes: after "gosta de" a product word is an interest, not the product wanted.
        self._interest_marker_re = _phrases_re(lex["interest_markers"])
        self._interest_context_re = re.compile(
            rf"(?<![a-z0-9])(?:{_alternation(lex['interest_markers'])})"
            rf"(?:\s+[a-z0-9']+){{0,{INTEREST_CONTEXT_GAP}}}\s*$")
        self._continuation_re = re.compile(
            rf"(?:{_conjunction_re(lex['conjunctions']['list']).pattern})?"
            rf"{self._determiners_re.pattern}\s*")

        self._gender = {fold(w): g for g, ws in lex["gender"].items() for w in ws}
        self._gender_re = _phrases_re(self._gender)
        self._gender_explicit = {fold(w): g for g, ws in lex["gender_explicit"].items()
                                 for w in ws}
        self._gender_explicit_re = _phrases_re(self._gender_explicit)

        self._attributes = {fold(w): value for value, ws in lex["attributes"].items()
                            for w in ws}
        self._attribute_re = _phrases_re(self._attributes, suffix="(?:es|s)?")
        self._gift_nouns_re = re.compile(rf"\s*(?:{_alternation(lex['gift_nouns'])})(?![a-z0-9])")
        self._size_letters = lex["size_letters"]
        letters = "|".join(sorted(self._size_letters, key=len, reverse=True))
        self._size_re = re.compile(
            rf"(?<![a-z0-9])(?:{_alternation(lex['size_markers'])})\.?\s*:?\s*"
            rf"(?P<size>{letters}|\d{{1,2}}(?:[.,]5)?)(?![a-z0-9])")

    def parse(self, text: str, *, market: Market, language: str | None = None) -> Intent:
        low = text.lower()
        for pattern, replacement in self._accents.items():
            low = pattern.sub(replacement, low)
        s = fold(low)
        s = self._ages.spell_numbers(s)
        lang = self._language(s, language or market.language)
        intent = Intent(text=text, language=lang, thanks=bool(self._thanks_re.search(s)))

        s = take_name(s, low, intent)
        s, birthday = self._ages.take_age(s, intent)
        s = take_budget(s, intent, market)
        s = self._take_sizes(s, intent)
        caps = _capitalised(text)
        s = self._take_exclusions(s, intent, caps, lang)
        s, qualifiers = self._take_explicit_gender(s, intent)
        noise: set[str] = set()
        if intent.age is None and self._phrase_re.search(s):
            s = self._ages.take_bare_age(s, intent, (
                m.end() for m in self._phrase_re.finditer(s)
                if self._phrases[m.group(0)][0] == "recipients"))

        rest: list[str] = []
        pos = 0
        # Where words name who, when, or what someone likes: no product kind is read there.
        occasions: list[Span] = []
        protected: list[Span] = [m.span() for m in self._interest_marker_re.finditer(s)]
        liked_until = -1
        for match in self._phrase_re.finditer(s):
            rest.append(s[pos:match.start()])
            rest.append(" ")
            pos = match.end()
            kind, concept = self._phrases[match.group(0)]
            if kind != "interests":
                protected.append(match.span())
                if kind == "occasions":
                    occasions.append(match.span())
            elif (self._interest_context_re.search(s, 0, match.start())
                  or (liked_until >= 0
                      and self._continuation_re.fullmatch(s, liked_until, match.start()))):
                # "ama vinho", "le gusta el café y el té": what she likes, not what to buy.
                protected.append(match.span())
                liked_until = match.end()
            if kind == "occasions" and intent.occasion is None:
                intent.occasion = concept
            elif kind == "recipients" and intent.recipient is None:
                intent.recipient = concept
            elif kind == "recipients" and concept in ("teen", "baby") and intent.age is None:
                # "my teenage son": the second word says how old, not who.
                intent.age_hint = lexicon()["recipient_age"][concept]
            elif (kind == "recipients" and intent.recipient in ("teen", "baby")
                  and concept not in ("teen", "baby")):
                # "my teenage daughter": the first word said how old, this one says who.
                if intent.age is None:
                    intent.age_hint = lexicon()["recipient_age"][intent.recipient]
                intent.recipient = concept
            elif kind == "interests":
                # The words themselves still describe the product ("gaming keyboard").
                intent.interest_words.append(match.group(0))
                if concept not in intent.interests:
                    intent.interests.append(concept)
        rest.append(s[pos:])
        if birthday and intent.occasion is None:
            intent.occasion = "birthday"

        kinds = self._kinds.scan(s)
        ruled_out = self._ruled_out(intent)
        for found in kinds:
            if (not _inside((found.start, found.end), protected)
                    and found.name not in ruled_out and found.name not in intent.product_types):
                intent.product_types.append(found.name)
        qualifiers |= self._take_attributes(s, intent, kinds, protected, noise)
        self._take_brands(s, intent, caps)
        if intent.gender is None:
            intent.gender = self._implied_gender(s, kinds, occasions)

        remaining = "".join(rest)
        # "big fan of" is not a product, nor is a kind ruled out a second time.
        drop = [m.span() for m in self._interest_marker_re.finditer(remaining)]
        drop += [(k.start, k.end) for k in self._kinds.scan(remaining) if k.name in ruled_out]
        remaining = _cut(remaining, drop)
        avoided = {w for brand in intent.avoid_brands for w in re.findall(r"[a-z0-9]+",
                                                                         fold(brand))}
        # Model numbers stay ("windows 10", "rtx 2060"); ages and budgets were taken out above.
        # A lone letter or digit is chat shorthand or a count ("p minha mãe", "2 canecas"),
        # unless a kind's name holds it ("d battery") or it follows a product word as its
        # model ("iphone 7", "iphone x").
        filler = self._filler_in.get(intent.language, self._filler)
        in_kinds = {w for k in self._kinds.scan(remaining)
                    for w in re.findall(r"[a-z0-9]+", remaining[k.start:k.end])}
        words = re.findall(r"[a-z0-9]+", remaining)
        terms = [
            t for at, t in enumerate(words)
            if t not in filler and t not in avoided and t not in noise
            and (len(t) > 1 or t in in_kinds or _model_of(words[at - 1] if at else "", filler))
        ]
        # A colour or size alone ("algo azul") does not name a product: it stays a soft
        # attribute, and the request stays open for gift knowledge.
        intent.product_terms = [] if all(t in qualifiers for t in terms) else terms
        return intent

    # -- kinds, brands, gender, attributes ------------------------------------------------

    def _ruled_out(self, intent: Intent) -> set[str]:
        """Excluded names and every type they cover."""
        return set(intent.exclusions) | {t for name in intent.exclusions
                                         for t in self._kinds.expand(name)}

    def _take_exclusions(self, s: str, intent: Intent, caps: dict[str, str], lang: str) -> str:
        cuts: list[Span] = []
        for marker in self._exclusion_re.finditer(s):
            if cuts and marker.start() < cuts[-1][1]:
                continue
            # Portuguese "no" is "in the" ("no Natal", "no Boticário"): it rules out a kind
            # ("no perfume" is rare enough), never a brand.
            brands = not (lang == "pt" and marker.group(0) == "no")
            end = self._excluded_objects(s, marker.end(), intent, caps, brands=brands)
            if end is not None:
                cuts.append((marker.start(), end))
        for found in self._kinds.scan(s):  # "perfume não", "ropa no"
            after = self._exclusion_after_re.match(s, found.end)
            if after and not _inside((found.start, found.end), cuts):
                if found.name not in intent.exclusions:
                    intent.exclusions.append(found.name)
                cuts.append((found.start, after.end()))
        return _cut(s, cuts)

    def _excluded_objects(self, s: str, pos: int, intent: Intent, caps: dict[str, str], *,
                          brands: bool) -> int | None:
        """Read "perfume", "roupa nem perfume", "Samsung ni Apple" after an exclusion marker;
        returns where the last one ends, or None when nothing ruled out follows."""
        end: int | None = None
        while True:
            start = self._determiners_re.match(s, pos)
            at = start.end() if start else pos
            found = self._kinds.match_at(s, at)
            if found is not None:
                if found.name not in intent.exclusions:
                    intent.exclusions.append(found.name)
                end = found.end
            else:
                brand = self._brand_at(s, at, caps, strong=True) if brands else None
                if brand is None:
                    return end
                if brand[0] not in intent.avoid_brands:
                    intent.avoid_brands.append(brand[0])
                end = brand[1]
            joined = self._nor_re.match(s, end)
            if joined is None:
                return end
            pos = joined.end()

    def _brand_at(self, s: str, pos: int, caps: dict[str, str], *,
                  strong: bool) -> tuple[str, int] | None:
        """The brand named right at `pos`: a known one, or (after a strong marker such as
        "marca", "from", "sin") capitalised words that are not ordinary words."""
        known = self._brand_re.match(s, pos)
        if known:
            name, anywhere = self._brands[_brand_key(known.group(0))]
            first = known.group(0).split()[0]
            if anywhere or strong or first in caps:
                return name, known.end()
        if not strong or not caps:
            return None
        written: list[str] = []
        end = pos
        while len(written) < MAX_BRAND_WORDS:
            word = _WORD_RE.match(s, end)
            if (word is None or word.group(1) not in caps or word.group(1) in self._not_names
                    or word.group(1).isdigit()
                    or self._kinds.match_at(s, word.start(1)) is not None):
                break
            written.append(caps[word.group(1)])
            end = word.end()
        return (" ".join(written), end) if written else None

    def _take_brands(self, s: str, intent: Intent, caps: dict[str, str]) -> None:
        found: list[tuple[int, str]] = []
        for marker_re, strong in ((self._brand_marker_re, True),
                                  (self._brand_known_marker_re, False)):
            for marker in marker_re.finditer(s):
                start = self._determiners_re.match(s, marker.end()) if strong else None
                brand = self._brand_at(s, start.end() if start else marker.end(), caps,
                                       strong=strong)
                if brand:
                    found.append((marker.start(), brand[0]))
        for known in self._brand_re.finditer(s):
            name, anywhere = self._brands[_brand_key(known.group(0))]
            if anywhere:
                found.append((known.start(), name))
        for _, name in sorted(found):
            if name not in intent.brands and name not in intent.avoid_brands:
                intent.brands.append(name)

    def _take_explicit_gender(self, s: str, intent: Intent) -> tuple[str, set[str]]:
        """"perfume para mujer", "for him", "relógio feminino": the gender said outright.

        Phrases go ("mujer" there is not a wife); single words such as "feminino" stay, as
        qualifiers of the product ("Relógio Feminino").
        """
        cuts: list[Span] = []
        qualifiers: set[str] = set()
        for match in self._gender_explicit_re.finditer(s):
            phrase = re.sub(r"\s+", " ", match.group(0))
            intent.gender = intent.gender or self._gender_explicit[phrase]
            if " " in phrase:
                cuts.append(match.span())
            else:
                qualifiers.update(re.findall(r"[a-z0-9]+", phrase))
        return _cut(s, cuts), qualifiers

    def _implied_gender(self, s: str, kinds: list[KindMatch], occasions: list[Span]) -> str | None:
        # "amigo secreto" says nothing about anyone, nor does "placa-mãe".
        ignore = occasions + [(k.start, k.end) for k in kinds]
        seen = {self._gender[re.sub(r"\s+", " ", m.group(0))]
                for m in self._gender_re.finditer(s) if not _inside(m.span(), ignore)}
        return seen.pop() if len(seen) == 1 else None  # "my son and his wife": unknown

    def _take_sizes(self, s: str, intent: Intent) -> str:
        cuts: list[Span] = []
        for match in self._size_re.finditer(s):
            size = match.group("size").replace(",", ".")
            value = f"size:{self._size_letters.get(size, size)}"
            if value not in intent.attributes:
                intent.attributes.append(value)
            cuts.append(match.span())
        return _cut(s, cuts)

    def _take_attributes(self, s: str, intent: Intent, kinds: list[KindMatch],
                         protected: list[Span], noise: set[str]) -> set[str]:
        """Colours, materials and size words; returns the words used, which qualify a
        product but do not name one. Size words about the gift itself ("a small gift") go
        into `noise`."""
        words: set[str] = set()
        # "vinho branco" and "té negro" are kinds of product, not colours.
        ignore = protected + [(k.start, k.end) for k in kinds]
        for match in self._attribute_re.finditer(s):
            if _inside(match.span(), ignore):
                continue
            phrase = re.sub(r"\s+", " ", match.group(0))
            value = self._attributes.get(phrase) or self._attributes.get(
                re.sub(r"(?:es|s)$", "", phrase)) or self._attributes.get(phrase[:-1])
            if value is None:
                continue
            if value.startswith("size:") and self._describes_the_gift(s, match.end()):
                noise.update(re.findall(r"[a-z0-9]+", phrase))
                continue
            words.update(re.findall(r"[a-z0-9]+", phrase))
            if value not in intent.attributes:
                intent.attributes.append(value)
        return words

    def _describes_the_gift(self, s: str, pos: int) -> bool:
        """"a small gift", "um grande amigo": the size word is about the gesture or the
        person, not the product."""
        if self._gift_nouns_re.match(s, pos):
            return True
        after = _WORD_RE.match(s, pos)
        if after is None:
            return False
        person = self._phrase_re.match(s, after.start(1))
        return person is not None and self._phrases[person.group(0)][0] == "recipients"

    # -- language -----------------------------------------------------------------------

    def _language(self, folded: str, fallback: str) -> str:
        words = re.findall(r"[a-z']+", folded)
        scores = {lang: sum(1 for w in words if w in markers)
                  for lang, markers in self._markers.items()}
        # Stay in the shopper's language unless the text clearly speaks another: a shared
        # word like "no" or "para" must not flip a Brazilian conversation into Spanish.
        best_lang = max(scores, key=lambda lang: (scores[lang], lang == fallback))
        if scores[best_lang] >= scores.get(fallback, 0) + LANGUAGE_SWITCH_MARGIN:
            return best_lang
        return fallback
