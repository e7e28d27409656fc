"""Letting a language model reword the intro line of a reply, and refusing what it must not say.

Only the intro ("Here are 3 ideas for your mother, up to R$ 200,00:") is ever reworded; cards,
prices and explanations stay exactly as Vitrine computed them. A rewording is refused, and the
deterministic line kept, when it is too long, empty, or mentions a number, a currency sign, a
product or brand name, or any capitalised word that the deterministic line does not contain:
the model may change the tone, never the facts.

Off unless `VITRINE_LLM_PHRASE_REPLIES` is set; see docs/llm.md for how it is wired.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

from bot.llm_client import ChatCompletions, ChatMessage, JsonSchema
from catalog.text import fold

log = logging.getLogger("vitrine.bot.llm_replies")

SCHEMA_NAME = "reply_intro"
MAX_INTRO_CHARS = 160
LANGUAGE_NAMES = {"pt": "Brazilian Portuguese", "es": "Spanish", "en": "English"}
INTRO_SCHEMA: JsonSchema = {
    "type": "object", "properties": {"intro": {"type": "string"}},
    "required": ["intro"], "additionalProperties": False,
}
SYSTEM_PROMPT = """\
Reword this line that introduces gift suggestions so it sounds warm and natural in {language}.
Keep its meaning. Do not add numbers, prices, currency signs, product names or brands that the
line does not contain. At most {limit} characters. One sentence, ending with a colon."""

_NUMBER_RE = re.compile(r"\d+")
_CURRENCY_RE = re.compile(r"[$€£¥₹₩₽]|\bR\$|\bUS\$")
_WORD_RE = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True)
class PhrasedIntro:
    text: str
    reworded: bool
    tokens_in: int = 0
    tokens_out: int = 0


class ReplyPhraser:
    """Asks the model for a warmer intro line and keeps it only when it adds no facts."""

    def __init__(self, *, chat: ChatCompletions, max_chars: int = MAX_INTRO_CHARS) -> None:
        self.chat = chat
        self.max_chars = max_chars

    def phrase_intro(self, intro: str, *, language: str,
                     product_names: Sequence[str] = ()) -> PhrasedIntro:
        """The reworded intro, or `intro` itself when the model's line cannot be trusted.

        `product_names` are the titles and brands on the cards being shown: the new line may
        name them only where the deterministic line already does.
        """
        answer = self.chat.complete_json([
            ChatMessage("system", SYSTEM_PROMPT.format(
                language=LANGUAGE_NAMES.get(language, "English"), limit=self.max_chars)),
            ChatMessage("user", intro),
        ], schema_name=SCHEMA_NAME, schema=INTRO_SCHEMA)
        kept = PhrasedIntro(intro, False, answer.tokens_in, answer.tokens_out)
        if not answer.ok or answer.content is None:
            log.warning("reply not reworded: %s", answer.failure)
            return kept
        try:
            data = json.loads(answer.content)
            candidate = data["intro"] if isinstance(data, dict) else None
        except (ValueError, KeyError, RecursionError):
            candidate = None
        if not isinstance(candidate, str):
            log.warning("reply not reworded: answer is not {\"intro\": string}")
            return kept
        reason = why_not(candidate, intro, product_names=product_names,
                         max_chars=self.max_chars)
        if reason:
            log.warning("reply not reworded: %s", reason)
            return kept
        return PhrasedIntro(" ".join(candidate.split()), True, answer.tokens_in,
                            answer.tokens_out)


def why_not(candidate: str, intro: str, *, product_names: Sequence[str] = (),
            max_chars: int = MAX_INTRO_CHARS) -> str | None:
    """Why a reworded intro must not be shown, or None when it adds no facts to `intro`."""
    text = " ".join(candidate.split())
    if not text:
        return "empty"
    if len(text) > max_chars:
        return f"longer than {max_chars} characters"
    if not set(_NUMBER_RE.findall(text)) <= set(_NUMBER_RE.findall(intro)):
        return "a number the original does not have"
    if not set(_CURRENCY_RE.findall(text)) <= set(_CURRENCY_RE.findall(intro)):
        return "a currency sign the original does not have"
    folded_text, folded_intro = fold(text), fold(intro)
    for name in product_names:
        name_folded = fold(name).strip()
        if name_folded and name_folded in folded_text and name_folded not in folded_intro:
            return "a product or brand name the original does not have"
    original_words = {fold(w) for w in _WORD_RE.findall(intro)}
    for sentence in re.split(r"[.!?:]\s+", text):
        for word in _WORD_RE.findall(sentence)[1:]:
            if word[:1].isupper() and fold(word) not in original_words:
                return f"a name the original does not have ({word})"
    return None
