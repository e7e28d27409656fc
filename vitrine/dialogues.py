"""Scripted multi-turn dialogues, played through the chat API and judged the way a shopper would.

A dialogue file (JSON Lines; the format is in `tests/data/dialogues/README.md`) holds
conversations in pt-BR, es and en: turn by turn, what the shopper types or which button they
press, and what a good shop assistant must do in answer. `run_dialogues` plays each dialogue
against the real FastAPI app (`POST /api/chat` over httpx's ASGI transport), every one on its own
fresh copy of the demo catalog, and `DialogueReport` gives the pass rate overall and per
language, with the turn, the check and what the shopper saw for every failure:

    python -m vitrine.dialogues tests/data/dialogues/dialogues.jsonl [--verbose | --json]

`CHECKS` is the whole vocabulary of expectations, one line each. Texts compare lower-case and
without accents; a title word matches a whole word of the title or its plural ("livro" matches
"Livros", not "Livroteca").
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import re
import secrets
import sqlite3
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from catalog.text import fold
from core.errors import InvalidInput

LANGUAGES = ("pt", "es", "en")
OVERALL = "overall"
SEEN_CHARS = 240  # how much of a reply a failure quotes

CHECKS: dict[str, str] = {
    "cards_min": "at least this many cards",
    "cards_max": "at most this many cards",
    "max_price": "every card costs at most this (minor units)",
    "min_price": "every card costs at least this (minor units)",
    "currency": "every card is priced in this currency",
    "all_below_previous_cheapest": "every card is cheaper than the cheapest card of the "
                                   "previous answer with cards",
    "all_above_previous_priciest": "every card is dearer than the dearest card of the "
                                   "previous answer with cards",
    "no_repeat": "no card was already shown since the dialogue's last new request",
    "reply_contains": "the reply holds every one of these texts",
    "reply_contains_any": "the reply holds at least one of these texts",
    "reply_not_contains": "the reply holds none of these texts",
    "recipient_in_reply": "the reply names this person (a relation key) in the dialogue's "
                          "language",
    "title_contains_any": "every card's title has at least one of these words",
    "honest_about": "every card's title has one of these words, or the reply says one: no card "
                    "passes for what it is not (\"em azul\" when nothing is blue)",
    "titles_not_contain": "no card's title has any of these words",
    "confirmation": "true: a Confirm button is offered; false: none is",
    "confirms_card": "the confirmation names the title of this card (1-based, -1 the last) of "
                     "the previous answer with cards",
    "no_skipped": "no card is one the shopper pressed Not for me on",
    "no_bought": "no card is a product the shopper confirmed buying in this dialogue",
    "mentions_bought": "the reply names a product the shopper confirmed buying",
    "json_keys": "the last message is a JSON object with these keys",
}
_BOOL_CHECKS = frozenset({"all_below_previous_cheapest", "all_above_previous_priciest",
                          "no_repeat", "confirmation", "no_skipped", "no_bought",
                          "mentions_bought"})
_LIST_CHECKS = frozenset({"reply_contains", "reply_contains_any", "reply_not_contains",
                          "title_contains_any", "honest_about", "titles_not_contain", "json_keys"})

# How a reply names a person, in each language (whole words, lower case, with accents: in
# Portuguese "avó" and "avô" are different people).
RECIPIENT_WORDS: dict[str, dict[str, tuple[str, ...]]] = {
    "mother": {"pt": ("mãe", "mamãe"), "es": ("mamá", "madre"), "en": ("mom", "mother")},
    "father": {"pt": ("pai", "papai"), "es": ("papá", "padre"), "en": ("dad", "father")},
    "sister": {"pt": ("irmã",), "es": ("hermana",), "en": ("sister",)},
    "brother": {"pt": ("irmão",), "es": ("hermano",), "en": ("brother",)},
    "grandmother": {"pt": ("avó", "vovó"), "es": ("abuela",), "en": ("grandma", "grandmother")},
    "grandfather": {"pt": ("avô", "vovô"), "es": ("abuelo",), "en": ("grandpa", "grandfather")},
    "wife": {"pt": ("esposa", "mulher"), "es": ("esposa", "mujer"), "en": ("wife",)},
    "partner": {"pt": ("namorada", "namorado", "amor", "parceira", "parceiro"),
                "es": ("novia", "novio", "pareja"), "en": ("girlfriend", "boyfriend", "partner")},
    "friend": {"pt": ("amigo", "amiga"), "es": ("amigo", "amiga"), "en": ("friend",)},
    "colleague": {"pt": ("colega",), "es": ("colega", "compañero", "compañera"),
                  "en": ("colleague", "coworker")},
    "aunt": {"pt": ("tia", "titia"), "es": ("tía",), "en": ("aunt", "auntie")},
    "uncle": {"pt": ("tio", "titio"), "es": ("tío",), "en": ("uncle",)},
    "cousin": {"pt": ("primo", "prima"), "es": ("primo", "prima"), "en": ("cousin",)},
    "mother_in_law": {"pt": ("sogra",), "es": ("suegra",), "en": ("mother-in-law",)},
    "father_in_law": {"pt": ("sogro",), "es": ("suegro",), "en": ("father-in-law",)},
}


# -- the dialogues -------------------------------------------------------------------------

@dataclass(frozen=True)
class Press:
    """A button: `button` ("buy", "more", "skip") of card `card` (1-based, -1 the last) of the
    latest answer with cards, or `message_button` (an index, or an action verb such as
    "confirm") among the buttons of the latest reply's messages."""

    card: int | None = None
    button: str | None = None
    message_button: int | str | None = None


@dataclass(frozen=True)
class Turn:
    say: str | None
    press: Press | None
    expect: dict[str, Any]
    new_request: bool = False  # the shopper starts over: `no_repeat` forgets earlier cards


@dataclass(frozen=True)
class Dialogue:
    id: str
    language: str
    market: str
    turns: tuple[Turn, ...]
    covers: tuple[str, ...] = ()  # the features the dialogue exercises, for coverage
    locale: str | None = None  # sent with every turn when set; the market's language if not


def load_dialogues(path: Path) -> list[Dialogue]:
    """Read a dialogue file; blank lines and `{"_doc": ...}` lines are skipped.

    Raises:
        InvalidInput: the file cannot be read or a line is malformed (the message names the
            line and what is wrong, so a misspelt check never passes silently).
    """
    try:
        lines = path.read_text("utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read dialogues {path}: {exc}") from None
    dialogues: list[Dialogue] = []
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            data = json.loads(raw)
            if isinstance(data, dict) and set(data) == {"_doc"}:
                continue
            dialogues.append(_dialogue(data))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise InvalidInput(f"{path}, line {number}: {exc}") from None
    ids = [d.id for d in dialogues]
    if len(set(ids)) != len(ids):
        raise InvalidInput(f"{path}: repeated ids {sorted({i for i in ids if ids.count(i) > 1})}")
    return dialogues


def _dialogue(data: dict[str, Any]) -> Dialogue:
    _only(data, {"id", "language", "market", "turns", "covers", "locale", "note"}, "dialogue")
    if data["language"] not in LANGUAGES:
        raise ValueError(f"language must be one of {LANGUAGES}")
    turns = tuple(_turn(t) for t in data["turns"])
    if not turns or turns[0].say is None:
        raise ValueError("a dialogue opens with something the shopper says")
    return Dialogue(id=str(data["id"]), language=data["language"], market=data["market"],
                    turns=turns, covers=tuple(data.get("covers", ())),
                    locale=data.get("locale"))


def _turn(data: dict[str, Any]) -> Turn:
    _only(data, {"say", "press", "expect", "new_request"}, "turn")
    if ("say" in data) == ("press" in data):
        raise ValueError(f"a turn has either say or press: {data}")
    expect = dict(data.get("expect", {}))
    _only(expect, set(CHECKS), "check")
    for name, value in expect.items():
        # Only `confirmation` may say false: "no_repeat": false would check nothing.
        if name in _BOOL_CHECKS and value is not True and name != "confirmation" or \
                name in _BOOL_CHECKS and not isinstance(value, bool) or \
                name in _LIST_CHECKS and not (isinstance(value, list) and value) or \
                name not in _BOOL_CHECKS | _LIST_CHECKS and not isinstance(value, (int, str)):
            raise ValueError(f"check {name} cannot take {value!r}")
    if expect.get("recipient_in_reply", "mother") not in RECIPIENT_WORDS:
        raise ValueError(f"recipient_in_reply takes one of {sorted(RECIPIENT_WORDS)}")
    if expect.get("confirms_card") == 0:
        raise ValueError("confirms_card counts from 1 (-1 is the last card)")
    press = data.get("press")
    if press is not None:
        _only(press, {"card", "button", "message_button"}, "press")
        press = Press(**press)
        if (press.card is None) == (press.message_button is None) or \
                (press.card is not None and not press.button):
            raise ValueError(f"press a card's button or a message button: {data['press']}")
    return Turn(say=data.get("say"), press=press, expect=expect,
                new_request=bool(data.get("new_request", False)))


def _only(data: dict[str, Any], allowed: set[str], what: str) -> None:
    if unknown := set(data) - allowed:
        raise ValueError(f"unknown {what} key(s) {sorted(unknown)}")


# -- checking one turn ---------------------------------------------------------------------

@dataclass
class DialogueState:
    """What the shopper has seen so far in one dialogue."""

    language: str
    last_cards: list[dict[str, Any]] = field(default_factory=list)  # latest answer with cards
    seen: set[str] = field(default_factory=set)  # card refs since the last new request
    titles: dict[str, str] = field(default_factory=dict)  # every card ref shown -> title
    skipped: set[str] = field(default_factory=set)
    bought: dict[str, str] = field(default_factory=dict)  # confirmed ref -> title
    orders: dict[str, str] = field(default_factory=dict)  # order id -> ref it confirms


@dataclass(frozen=True)
class Failure:
    turn: int  # 1-based
    check: str
    expected: Any
    seen: str

    def as_text(self) -> str:
        return f"turn {self.turn}, {self.check}={json.dumps(self.expected, ensure_ascii=False)}: " \
               f"{self.seen}"


def cards_of(reply: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for m in reply.get("messages", []) for c in m.get("cards", [])]


def ref_of(card: dict[str, Any]) -> str:
    return f"{card['merchant_id']}:{card['product_id']}"


def text_of(reply: dict[str, Any]) -> str:
    return "\n".join(m.get("text", "") for m in reply.get("messages", []))


def _has_word(text: str, word: str) -> bool:
    """A whole word (or its plural) of `text`, both folded."""
    return re.search(rf"(?<!\w){re.escape(fold(word))}(?:s|es)?(?!\w)", fold(text)) is not None


def _names(text: str, words: Iterable[str]) -> bool:
    return any(re.search(rf"(?<!\w){re.escape(w)}(?!\w)", text.casefold()) for w in words)


def _priced(cards: list[dict[str, Any]]) -> str:
    return ", ".join(f"{c['title']} ({c['price']['amount']})" for c in cards) or "no cards"


def _confirmation_text(reply: dict[str, Any]) -> str | None:
    for message in reply.get("messages", []):
        if any(b["action"].startswith("confirm:") for b in message.get("buttons", [])):
            return str(message.get("text", ""))
    return None


def check_turn(expect: dict[str, Any], reply: dict[str, Any],
               state: DialogueState) -> list[tuple[str, str]]:
    """The checks of `expect` that `reply` fails, each with what was seen instead; `state` is
    the dialogue before this reply."""
    cards, text = cards_of(reply), text_of(reply)
    prices = [c["price"]["amount"] for c in cards]
    before = [c["price"]["amount"] for c in state.last_cards]
    titles = [c["title"] for c in cards]
    confirmation = _confirmation_text(reply)
    people = RECIPIENT_WORDS.get(str(expect.get("recipient_in_reply")), {})
    folded = fold(text)
    tests: dict[str, Callable[[Any], bool]] = {
        "cards_min": lambda n: len(cards) >= n,
        "cards_max": lambda n: len(cards) <= n,
        "max_price": lambda amount: all(p <= amount for p in prices),
        "min_price": lambda amount: all(p >= amount for p in prices),
        "currency": lambda code: all(c["price"]["currency"] == code for c in cards),
        "all_below_previous_cheapest": lambda on: not on or not before
        or all(p < min(before) for p in prices),
        "all_above_previous_priciest": lambda on: not on or not before
        or all(p > max(before) for p in prices),
        "no_repeat": lambda on: not on or not {ref_of(c) for c in cards} & state.seen,
        "reply_contains": lambda texts: all(fold(t) in folded for t in texts),
        "reply_contains_any": lambda texts: any(fold(t) in folded for t in texts),
        "reply_not_contains": lambda texts: not any(fold(t) in folded for t in texts),
        "recipient_in_reply": lambda _: _names(text, people.get(state.language, ())),
        "title_contains_any": lambda words: all(any(_has_word(t, w) for w in words)
                                                for t in titles),
        "honest_about": lambda words: any(fold(w) in folded for w in words)
        or all(any(_has_word(t, w) for w in words) for t in titles),
        "titles_not_contain": lambda words: not any(_has_word(t, w) for w in words
                                                    for t in titles),
        "confirmation": lambda on: (confirmation is not None) == on,
        "confirms_card": lambda n: confirmation is not None
        and (picked := _card_at(state.last_cards, n)) is not None
        and fold(picked["title"]) in fold(confirmation),
        "no_skipped": lambda on: not on or not {ref_of(c) for c in cards} & state.skipped,
        "no_bought": lambda on: not on or not {ref_of(c) for c in cards} & set(state.bought),
        "mentions_bought": lambda on: not on or any(fold(t) in folded
                                                    for t in state.bought.values()),
        "json_keys": lambda keys: _json_keys(reply) >= set(keys),
    }
    failed = []
    for name, expected in expect.items():
        if not tests[name](expected):
            failed.append((name, _seen(name, reply, state)))
    return failed


def _card_at(cards: list[dict[str, Any]], position: int) -> dict[str, Any] | None:
    """The card at a 1-based position (-1 the last), or None."""
    index = position - 1 if position > 0 else position
    return cards[index] if -len(cards) <= index < len(cards) else None


def _json_keys(reply: dict[str, Any]) -> set[str]:
    messages = reply.get("messages") or [{}]
    try:
        data = json.loads(messages[-1].get("text", ""))
    except json.JSONDecodeError:
        return set()
    return set(data) if isinstance(data, dict) else set()


def _seen(name: str, reply: dict[str, Any], state: DialogueState) -> str:
    """What the shopper saw, for a failed check: the cards or the reply's words."""
    cards = cards_of(reply)
    if name in ("all_below_previous_cheapest", "all_above_previous_priciest"):
        return f"{_priced(cards)}; before: {_priced(state.last_cards)}"
    if name in ("no_repeat", "no_skipped", "no_bought"):
        again = {ref_of(c) for c in cards} & (state.seen if name == "no_repeat" else
                                              state.skipped | set(state.bought))
        return "shown again: " + ", ".join(state.titles.get(r, r) for r in sorted(again))
    if name in ("cards_min", "cards_max", "max_price", "min_price", "currency",
                "title_contains_any", "titles_not_contain", "honest_about") and cards:
        return f"{len(cards)} cards: {_priced(cards)}"
    words = " / ".join(text_of(reply).split("\n"))
    return f"{len(cards)} cards; said: {words[:SEEN_CHARS]}"


def remember(reply: dict[str, Any], state: DialogueState, *, pressed: str | None) -> None:
    """Update what the shopper has seen with one reply (after its checks)."""
    cards = cards_of(reply)
    if cards:
        state.last_cards = cards
    for card in cards:
        state.seen.add(ref_of(card))
        state.titles[ref_of(card)] = card["title"]
    confirmation = _confirmation_text(reply)
    if confirmation is not None:
        order = next(b["action"].partition(":")[2] for m in reply["messages"]
                     for b in m.get("buttons", []) if b["action"].startswith("confirm:"))
        named = [r for r, title in state.titles.items() if fold(title) in fold(confirmation)]
        if named:
            state.orders[order] = max(named, key=lambda r: len(state.titles[r]))
    verb, _, arg = (pressed or "").partition(":")
    if verb == "skip":
        state.skipped.add(arg)
    elif verb == "confirm" and arg in state.orders:
        state.bought[state.orders[arg]] = state.titles[state.orders[arg]]


def press_action(press: Press, state: DialogueState, reply: dict[str, Any]) -> str | None:
    """The action a press sends, or None when the button is not there."""
    if press.card is not None:
        card = _card_at(state.last_cards, press.card)
        if card is None:
            return None
        buttons = card.get("buttons", [])
        verb = press.button
    else:
        buttons = [b for m in reply.get("messages", []) for b in m.get("buttons", [])]
        if isinstance(press.message_button, int):
            return buttons[press.message_button]["action"] \
                if 0 <= press.message_button < len(buttons) else None
        verb = press.message_button
    return next((b["action"] for b in buttons if b["action"].partition(":")[0] == verb), None)


# -- playing dialogues ---------------------------------------------------------------------

@dataclass
class DialogueResult:
    dialogue: Dialogue
    failures: list[Failure] = field(default_factory=list)
    transcript: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.dialogue.id, "language": self.dialogue.language,
                "passed": self.passed, "failures": [f.__dict__ for f in self.failures]}


ChatClient = Callable[[], AbstractAsyncContextManager[httpx.AsyncClient]]


async def run_dialogue(client: httpx.AsyncClient, dialogue: Dialogue,
                       user: str | None = None) -> DialogueResult:
    """Play one dialogue through `POST /api/chat`; a press whose button is missing, or an
    answer other than 200, ends it as a failure."""
    result = DialogueResult(dialogue)
    state = DialogueState(language=dialogue.language)
    reply: dict[str, Any] = {}
    for number, turn in enumerate(dialogue.turns, start=1):
        body: dict[str, Any] = {"user": user or f"dialogue-{dialogue.id}",
                                "market": dialogue.market}
        if dialogue.locale:
            body["locale"] = dialogue.locale
        if turn.press is not None:
            action = press_action(turn.press, state, reply)
            if action is None:
                result.failures.append(Failure(number, "press", turn.press.__dict__,
                                               "no such button"))
                break
            body["action"] = action
        else:
            body["text"] = turn.say
        if turn.new_request:
            state.seen.clear()
        response = await client.post("/api/chat", json=body)
        if response.status_code != 200:
            result.failures.append(Failure(number, "http", 200, f"{response.status_code}: "
                                           f"{response.text[:SEEN_CHARS]}"))
            break
        reply = response.json()
        result.transcript.append(f"{turn.say or body['action']} -> {_seen('', reply, state)}")
        result.failures += [Failure(number, name, turn.expect[name], seen)
                            for name, seen in check_turn(turn.expect, reply, state)]
        remember(reply, state, pressed=body.get("action"))
    return result


async def run_dialogues(dialogues: list[Dialogue], chat: ChatClient) -> DialogueReport:
    """Play every dialogue, each on a client `chat` opens afresh for it."""
    results = []
    for dialogue in dialogues:
        async with chat() as client:
            results.append(await run_dialogue(client, dialogue))
    return DialogueReport(results)


def demo_chat(workdir: Path) -> ChatClient:
    """Clients of the real app, each on a fresh copy of the demo catalog kept in `workdir`.

    The app is imported here, not at the top, so that the rest of the module runs against
    any chat API without building one.
    """
    from core.settings import Settings
    from vitrine.app import create_app
    from vitrine.runtime import build_runtime, seed_demo

    def settings(path: Path) -> Settings:
        # Pinned, not read from the environment: a developer's language-model key or card
        # limit must not change what the dialogues measure.
        return Settings(  # type: ignore[call-arg]  # `_env_file` is pydantic-settings' own
            _env_file=None, env="test", database_url=f"sqlite:///{path}",
            public_url="http://testserver", default_card_limit=3, llm_base_url=None,
            llm_model=None, llm_phrase_replies=False, sandbox_secret=secrets.token_hex(16),
            ops_token=secrets.token_hex(16), admin_token=secrets.token_hex(16))

    template = workdir / "demo.db"
    seeded = build_runtime(settings(template))
    try:
        seed_demo(seeded)
    finally:
        seeded.close()
        seeded.engine.dispose()
    copies = itertools.count()

    @asynccontextmanager
    async def open_client() -> AsyncIterator[httpx.AsyncClient]:
        path = workdir / f"dialogue-{next(copies)}.db"
        with closing(sqlite3.connect(template)) as source, \
                closing(sqlite3.connect(path)) as copy:
            source.backup(copy)
        runtime = build_runtime(settings(path))
        app = create_app(runtime)
        # A crash inside the app is the product's failure in that dialogue, answered as 500.
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        try:
            # httpx's ASGI transport sends no lifespan events: run the app's lifespan around it.
            async with app.router.lifespan_context(app), httpx.AsyncClient(
                    transport=transport, base_url="http://testserver") as client:
                yield client
        finally:
            runtime.engine.dispose()

    return open_client


def run_file(path: Path) -> DialogueReport:
    """Play a dialogue file against the demo shop in a temporary folder."""
    dialogues = load_dialogues(path)
    with tempfile.TemporaryDirectory(prefix="vitrine-dialogues-") as workdir:
        return asyncio.run(run_dialogues(dialogues, demo_chat(Path(workdir))))


# -- the report ----------------------------------------------------------------------------

@dataclass
class DialogueReport:
    results: list[DialogueResult]

    def rate(self, language: str = OVERALL) -> tuple[int, int]:
        """Dialogues passed and played, in one language or overall."""
        chosen = [r for r in self.results if language in (OVERALL, r.dialogue.language)]
        return sum(r.passed for r in chosen), len(chosen)

    @property
    def failed(self) -> list[DialogueResult]:
        return [r for r in self.results if not r.passed]

    def as_dict(self) -> dict[str, Any]:
        return {"rates": {g: dict(zip(("passed", "played"), self.rate(g), strict=True))
                          for g in (OVERALL, *LANGUAGES)},
                "results": [r.as_dict() for r in self.results]}

    def as_text(self, *, verbose: bool = False) -> str:
        """Pass rates, then each failed dialogue's first failing check; `verbose` adds every
        failure and what the shopper saw at each turn."""
        lines = []
        for group in (OVERALL, *LANGUAGES):
            passed, played = self.rate(group)
            share = f"{passed / played:.0%}" if played else "-"
            lines.append(f"{group:<8} {passed:>3}/{played:<3} passed ({share})")
        if self.failed:
            lines += ["", "Failed dialogues (first failing check):"]
        for result in self.failed:
            lines.append(f"  {result.dialogue.id}: {result.failures[0].as_text()}")
            if verbose:
                lines += [f"      {f.as_text()}" for f in result.failures[1:]]
                lines += [f"      > {turn}" for turn in result.transcript]
        return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """`python -m vitrine.dialogues FILE [--json]`: play the dialogues and print the pass rates."""
    parser = argparse.ArgumentParser(prog="python -m vitrine.dialogues", description=__doc__
                                     .split("\n\n")[0])
    parser.add_argument("path", type=Path)
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--verbose", action="store_true",
                        help="with every failure and the turns of each failed dialogue")
    args = parser.parse_args(argv)
    try:
        report = run_file(args.path)
    except InvalidInput as exc:
        print(exc.reason, file=sys.stderr)
        return 2
    print(json.dumps(report.as_dict(), ensure_ascii=False, indent=1) if args.json
          else report.as_text(verbose=args.verbose))
    return 0


if __name__ == "__main__":
    sys.exit(main())
