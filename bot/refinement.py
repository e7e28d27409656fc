"""Follow-ups to the cards just shown ("mais barato", "otra opción", "the second one", "e para o
meu pai?") and merging a change into the request the shopper is refining.

`read_follow_up` tells what a message does to the conversation (cheaper, pricier, other cards,
more cards, a pick, or a change of the request) from the markers in `refinement.json`, in pt-BR,
es and en, with or without accents, in chat spelling and with small typos. What the message
says besides the follow-up words comes back as `FollowUp.rest`, for the intent parser to read;
`merge` applies the intent parsed from it to the active request.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import TypeVar

from rapidfuzz import process
from rapidfuzz.distance import DamerauLevenshtein

from bot.intent import LEXICON_PATH, Intent, lexicon
from catalog.product_types import product_types
from catalog.text import fold

MARKERS_PATH = Path(__file__).with_name("refinement.json")
MAX_CARDS = 10  # ordinals and numbers past this name no card
MAX_PHRASE_WORDS = 6
NEGATION_WINDOW = 3  # words before "too expensive" that may negate it ("nothing too expensive")
COMPARISON_WINDOW = 3  # words after "cheaper than" where a number makes it a budget
MIN_TYPO_LENGTH = 5  # shorter words are too close to one another to guess at
LONG_WORD = 8  # from this length two edits are still a typo

V = TypeVar("V")
Phrase = tuple[str, ...]


class FollowUpKind(StrEnum):
    """What a follow-up does to the cards shown."""

    CHEAPER = "cheaper"
    PRICIER = "pricier"
    OTHER = "other"
    MORE = "more"
    PICK = "pick"
    REFINE = "refine"


@dataclass(frozen=True)
class FollowUp:
    """What a follow-up message does to the cards shown."""

    kind: FollowUpKind
    position: int | None = None  # PICK: 0-based card index; -1 means the last one
    buy: bool = False  # PICK said with a purchase verb ("quero comprar o segundo", "I'll take")
    rest: str = ""  # the message without the follow-up words: "cheaper, in blue" -> "in blue"


@dataclass(frozen=True)
class _Token:
    word: str  # folded, with chat spelling and typos corrected
    start: int  # where it is in the message as written
    end: int
    clause: int  # punctuation between words starts a new clause


_TOKEN_RE = re.compile(r"[^\W_]+°?|[+#]")
_NUMBER_RE = re.compile(r"([a-z]*)(\d{1,2})([a-z]*)")
_REPEAT_RE = re.compile(r"([a-z])\1{2,}")  # "muuuito" -> "muito"


def _words(phrase: str) -> Phrase:
    return tuple(_REPEAT_RE.sub(r"\1", fold(w).replace("°", "o"))
                 for w in _TOKEN_RE.findall(phrase))


def _word_set(phrases: Iterable[str]) -> set[str]:
    return {w for p in phrases for w in _words(p)}


def _table(pairs: Iterable[tuple[str, V]]) -> dict[Phrase, V]:
    return {_words(p): v for p, v in reversed(list(pairs)) if _words(p)}


def _match(table: Mapping[Phrase, V], words: list[str], i: int) -> tuple[int, V] | None:
    """The longest phrase of `table` starting at word `i`: its length in words and value."""
    for n in range(min(MAX_PHRASE_WORDS, len(words) - i), 0, -1):
        if (value := table.get(tuple(words[i:i + n]))) is not None:
            return n, value
    return None


def _scan(table: Mapping[Phrase, V], words: list[str]) -> list[tuple[range, V]]:
    """Every phrase of `table` in the words, leftmost first, the longest at each position."""
    found, i = [], 0
    while i < len(words):
        if (match := _match(table, words, i)) is not None:
            found.append((range(i, i + match[0]), match[1]))
        i += match[0] if match else 1
    return found


class _Vocabulary:
    """`refinement.json` as phrase tables; see its `_doc` for what each list means."""

    def __init__(self, data: dict) -> None:
        lex, pick, refine = lexicon(), data["pick"], data["refine"]
        self.kinds = _table((p, (FollowUpKind(kind), klass))
                            for kind, classes in data["kinds"].items()
                            for klass, phrases in classes.items() for p in phrases)
        self.fillers, self.negations = _word_set(data["fillers"]), _word_set(data["negations"])
        self.comparisons = _table((p, True) for p in data["comparisons"])
        self.openers = _table((p, True) for p in data["openers"])
        self.ordinals: dict[str, tuple[int, set[str]]] = {}  # word -> (card, its languages)
        ranked = [(lang, n, w) for lang, ranks in pick["ordinals"].items()
                  for n, ws in enumerate(ranks) for w in ws]
        for lang, n, w in ranked + [(lang, -1, w) for lang, ws in pick["last"].items()
                                    for w in ws]:
            self.ordinals.setdefault(_words(w)[0], (n, set()))[1].add(lang)
        self.determiners: dict[str, set[str]] = {}
        for lang, ws in pick["determiners"].items():
            for w in ws:
                self.determiners.setdefault(_words(w)[0], set()).add(lang)
        self.number_markers = _word_set(pick["number_markers"])
        self.suffixes = _word_set(pick["ordinal_suffixes"])
        self.spelled = {fold(w): n for w, n in lex["number_words"].items() if 1 < n <= MAX_CARDS}
        self.prelude = _table([(p, True) for p in pick["buy_verbs"]]
                              + [(p, False) for p in pick["verbs"] + data["openers"]])
        self.after = _table((p, True) for p in pick["after"])
        self.instead = _table([(p, "") for p in refine["instead"]]
                              + list(refine["instead_of"].items()))
        self.leading = _table((p, True) for p in refine["leading"])
        self.leading_free = _table((p, True) for p in refine["leading_free"])
        self.leading_before = _table((p, True) for p in
                                     refine["leading_before"] + lex["exclusion_markers"])
        self.no_change = (_word_set(refine["leading_before"]) | _word_set(data["openers"])
                           | _word_set(refine["not_changes"]))
        self.spellings = {_words(k)[0]: _words(v) for k, v in data["spellings"].items()}
        self.known = _word_set([LEXICON_PATH.read_text("utf-8"),
                                MARKERS_PATH.read_text("utf-8")])
        targets = {w for phrase in self.kinds for w in phrase} | set(self.ordinals)
        self.targets = sorted(w for w in targets | _word_set(refine["instead"])
                              if len(w) >= MIN_TYPO_LENGTH)
        self.not_typos = _word_set(data["not_typos"])


@lru_cache
def _vocabulary() -> _Vocabulary:
    """The follow-up word lists, loaded once."""
    return _Vocabulary(json.loads(MARKERS_PATH.read_text("utf-8")))


@lru_cache(maxsize=4096)
def _corrected(word: str) -> Phrase:
    """The word as meant: chat spelling spelt out ("mto"), a typo of a follow-up word fixed."""
    vocab = _vocabulary()
    if word in vocab.spellings:
        return vocab.spellings[word]
    if (len(word) < MIN_TYPO_LENGTH or not word.isalpha() or word in vocab.known
            or word in vocab.not_typos or product_types().scan(word)):
        return (word,)
    best = process.extractOne(word, vocab.targets, scorer=DamerauLevenshtein.distance,
                              score_cutoff=1 if len(word) < LONG_WORD else 2)
    return (best[0],) if best else (word,)


def _tokens(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    clause = 0
    for m in _TOKEN_RE.finditer(text):
        gap = text[tokens[-1].end:m.start()] if tokens else ""
        clause += any(not (ch.isspace() or ch in "'’-") for ch in gap)
        tokens += [_Token(w, m.start(), m.end(), clause) for w in _corrected(_words(m[0])[0])]
    return tokens


def _lead(words: list[str]) -> int:
    """Where the words that may open any follow-up ("ok", "e", "não tem") end."""
    i = 0
    while (match := _match(_vocabulary().openers, words, i)) is not None:
        i += match[0]
    return i


def _rest(text: str, toks: list[_Token], drop: set[int], swap: Mapping[int, str]) -> str:
    """The message as written without the dropped words, with the swapped ones replaced, and
    without filler words at either end ("tem mais barato em azul?" -> "em azul")."""
    fillers = _vocabulary().fillers
    content = [k for k, t in enumerate(toks) if k not in drop
               and (k in swap or t.word not in fillers)]
    if not content:
        return ""
    pieces, pos = [], toks[content[0]].start
    for k in range(content[0], content[-1] + 1):
        if k in drop or k in swap:
            pieces += [text[pos:toks[k].start], swap.get(k, "")]
            pos = max(pos, toks[k].end)
    pieces.append(text[pos:toks[content[-1]].end])
    rest = re.sub(r"\s+([,.;:!?])", r"\1", re.sub(r"\s+", " ", "".join(pieces)))
    return re.sub(r"([,;:])(\s*[,;:])+", r"\1", rest).strip(" ,.;:!?¿¡-")


def _choice(words: list[str], i: int, *, bare: bool) -> tuple[int, int] | None:
    """The card named at word `i` ("o segundo", "#2", "the 2nd", "la tres") and the word after
    the choice; a digit alone only when `bare` (nothing came before it)."""
    vocab = _vocabulary()
    langs = vocab.determiners.get(words[i]) if i < len(words) else None
    j = i + 1 if langs else i
    marked = j + 1 < len(words) and words[j] in vocab.number_markers
    j += marked
    word = words[j] if j < len(words) else ""
    if word in vocab.ordinals and not marked:
        position, word_langs = vocab.ordinals[word]
        # "a segunda" is a pick, "a second" is not.
        return (position, j + 1) if langs is None or langs & word_langs else None
    if number := _NUMBER_RE.fullmatch(word):
        pre, digits, suffix = number.groups()
        said = langs or marked or pre or suffix or bare  # "o 2", "#2", "2º": not "quero 2"
        if (said and (not pre or pre in vocab.number_markers) and 1 <= int(digits) <= MAX_CARDS
                and (not suffix or suffix in vocab.suffixes)):
            return int(digits) - 1, j + 1
    if word in vocab.spelled and (langs or marked):
        return vocab.spelled[word] - 1, j + 1
    return None


def _read_pick(text: str, toks: list[_Token]) -> FollowUp | None:
    vocab, words = _vocabulary(), [t.word for t in toks]
    i, buy = 0, False
    while (verb := _match(vocab.prelude, words, i)) is not None:
        i, buy = i + verb[0], buy or verb[1]
    if (choice := _choice(words, i, bare=i == 0)) is None:
        return None
    position, j = choice
    while j < len(toks) and toks[j].clause == toks[i].clause:
        if (after := _match(vocab.after, words, j)) is None:
            return None  # "o segundo aniversário", "second birthday"
        j += after[0]
    if j < len(toks) and words[i] in vocab.ordinals:
        return None  # "primeiro, ..." is "first of all": a bare ordinal stands alone
    return FollowUp(FollowUpKind.PICK, position=position, buy=buy,
                    rest=_rest(text, toks, set(range(j)), {}))


def _budget_at(words: list[str], i: int) -> bool:
    """Whether a comparison and then a number start at word `i`: "than 50", "de 100"."""
    than = _match(_vocabulary().comparisons, words, i)
    after = words[i + than[0]:i + than[0] + COMPARISON_WINDOW] if than else []
    return any(c.isdigit() for w in after for c in w)


def _kind_markers(toks: list[_Token]) -> list[tuple[FollowUpKind, range]]:
    """The markers of `kinds` in `refinement.json` that hold where they stand."""
    vocab, words = _vocabulary(), [t.word for t in toks]
    spans = _scan(vocab.kinds, words)
    marked = {k for span, _ in spans for k in span} | set(range(_lead(words)))
    held = []
    for span, (kind, klass) in spans:
        clause = [k for k, t in enumerate(toks) if t.clause == toks[span.start].clause]
        before = {words[k] for k in clause if span.start - NEGATION_WINDOW <= k < span.start}
        if ((span.stop in clause and _budget_at(words, span.stop))  # "cheaper than 50"
                or (klass == "unless_negated" and vocab.negations & before)
                or (klass == "alone" and any(k not in marked and words[k] not in vocab.fillers
                                             for k in clause))):
            continue
        held.append((kind, span))
    return held


def _refine_start(words: list[str]) -> int | None:
    """Where the change starts after a leading refinement marker ("e para..." -> "para..."),
    if the message opens with one."""
    vocab, i = _vocabulary(), 0
    while i < len(words):
        if (free := _match(vocab.leading_free, words, i)) is not None:
            return i + free[0]
        lead = _match(vocab.leading, words, i)
        if (lead is not None and _match(vocab.leading_before, words, i + lead[0]) is not None
                and not _budget_at(words, i + lead[0])):  # "más de 100" is no "mas de..."
            return i + lead[0]
        if (opener := _match(vocab.openers, words, i)) is None:
            return None
        i += opener[0]
    return None


def read_follow_up(text: str) -> FollowUp | None:
    """What a message says about the cards just shown, or None when it is no follow-up.

    A pick ("o segundo", "2", "me llevo el último") comes with its 0-based position (-1 for
    the last card) and whether it was said with a purchase verb. CHEAPER, PRICIER, OTHER and
    MORE hold only where their words mean it ("more than 100" is a budget, "outra caneca
    igual" a new request); with several, the first of that order wins. REFINE needs a marker
    ("for dad instead", "y para mi papá?"): a plain request ("sem roupa", "em azul") is None,
    for the caller to read from the parsed intent. `rest` is the message as written without
    the follow-up words, for the intent parser. An active request is assumed: "mais barato"
    in a first message still reads as CHEAPER.
    """
    toks = _tokens(text)
    if not toks:
        return None
    if (pick := _read_pick(text, toks)) is not None:
        return pick
    vocab, words = _vocabulary(), [t.word for t in toks]
    drop: set[int] = set()
    swap: dict[int, str] = {}
    for span, word in _scan(vocab.instead, words):  # "instead" goes, "instead of" -> "not"
        drop |= set(span[1:] if word else span)
        if word:
            swap[span.start] = word
    if held := _kind_markers(toks):
        drop |= {k for _, span in held for k in span} | set(range(_lead(words)))
        kind = min((k for k, _ in held), key=list(FollowUpKind).index)
        return FollowUp(kind, rest=_rest(text, toks, drop, swap))
    start = _refine_start(words)
    if start is None and not (drop or swap):
        return None
    rest = _rest(text, toks, drop | set(range(start or 0)), swap)
    if not _word_set([rest]) - vocab.fillers - vocab.no_change:
        return None  # "e para?", "e o preço?": no change named
    return FollowUp(FollowUpKind.REFINE, rest=rest)


def _union(first: Iterable[str], second: Iterable[str]) -> list[str]:
    """Both lists in order without repeats, compared folded ("Nike" is "nike")."""
    seen: dict[str, str] = {}
    for item in [*first, *second]:
        seen.setdefault(fold(item), item)
    return list(seen.values())


def _brand_words(brands: Iterable[str]) -> set[str]:
    return {w for brand in brands for w in re.findall(r"[a-z0-9]+", fold(brand))}


def merge(active: Intent, change: Intent) -> Intent:
    """A new intent: the active request with the change applied; neither input is touched.

    - budget, occasion and brands: the change's when it names one, else the active ones.
    - product_types and product_terms go together: the change's when it names a product; else
      the active ones less the kinds the change rules out (with all of them ruled out, their
      words go too), and less the names of brands replaced or now avoided.
    - recipient: a new one replaces the old and drops what belonged to the old person: age,
      age_hint, gender, interests, interest_words and remembered become the change's (empty
      when it has none). For the same person each of them is the change's when it names it.
    - attributes: the change's replace the active ones of the same family ("color:red" ->
      "color:blue"); other families stay ("size:m"), but a size does not pass to a new
      person.
    - exclusions and avoid_brands accumulate without repeats, less what the change now asks
      for ("sem perfume", then "um perfume"); a new person starts with only the change's
      exclusions; a brand the change avoids is no longer asked for.
      Stores asked for and ruled out follow the same rules as brands.
    - language, thanks, parser and tokens are the change's; text is both texts joined with
      " · ".
    """
    kinds = product_types()
    ruled_out = {t for e in change.exclusions for t in [e, *kinds.expand(e)]}
    wanted = {t for k in change.product_types for t in [k, *kinds.expand(k)]}
    # The parser leaves brand names among the product words: "da Adidas" names no product.
    brand_words = _brand_words(change.brands)
    if change.product_types or set(change.product_terms) - brand_words:
        types, terms = list(change.product_types), list(change.product_terms)
    else:
        types = [t for t in active.product_types if t not in ruled_out]
        gone = _brand_words(change.avoid_brands) | (_brand_words(active.brands)
                                                    if change.brands else set())
        kept = [t for t in active.product_terms if t not in gone]
        terms = _union(kept, change.product_terms) if types or not active.product_types else []
    new_person = change.recipient is not None and change.recipient != active.recipient
    person = change if new_person else active
    families = {a.split(":", 1)[0] for a in change.attributes}
    avoided, asked = {fold(b) for b in change.avoid_brands}, {fold(b) for b in change.brands}
    budget = change.budget or active.budget
    return Intent(
        text=" · ".join(t for t in (active.text, change.text) if t),
        language=change.language,
        recipient=change.recipient or active.recipient,
        age=change.age if change.age is not None or new_person else active.age,
        occasion=change.occasion or active.occasion,
        budget=replace(budget) if budget is not None else None,
        product_terms=terms,
        interests=list(change.interests or person.interests),
        interest_words=list((change if change.interests else person).interest_words),
        remembered=list(change.remembered or person.remembered),
        thanks=change.thanks,
        age_hint=change.age_hint or person.age_hint,
        gender=change.gender or person.gender,
        product_types=types,
        # A size and the kinds ruled out were about the old person ("veste M", "nada de
        # perfume"): a new person starts without them.
        attributes=_union([a for a in active.attributes if a.split(":", 1)[0] not in families
                           and not (new_person and a.startswith("size:"))],
                          change.attributes),
        brands=list(change.brands) or [b for b in active.brands if fold(b) not in avoided],
        avoid_brands=[b for b in _union(active.avoid_brands, change.avoid_brands)
                      if fold(b) not in asked],
        exclusions=[e for e in _union([] if new_person else active.exclusions,
                                      change.exclusions)
                    if e not in wanted and not set(kinds.expand(e)) & wanted],
        stores=list(change.stores) or [m for m in active.stores
                                       if m not in change.avoid_stores],
        avoid_stores=[m for m in _union(active.avoid_stores, change.avoid_stores)
                      if m not in change.stores],
        parser=change.parser,
        tokens_in=change.tokens_in,
        tokens_out=change.tokens_out,
    )
