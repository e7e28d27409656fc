"""How many messages a shopper may send: at most `rate_limit_messages` in each window of
`rate_limit_window_seconds`, per channel and shopper (the user key: `web:ana`, `tg:42`).

A message past the limit is not processed at all: nothing is written, nothing searched. The
shopper hears once per window, in their language, to wait a few seconds; further messages in
that window are dropped quietly, so that a flood is not answered with a flood.

Decisions on an order (choosing a way to pay, confirming, cancelling, withdrawing) are
never limited: each answers a question Vitrine asked about one order, so they cannot be sent
faster than Vitrine offers them, and refusing one could lose a purchase the shopper approved.
They are not counted either.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy.engine import Engine
from sqlmodel import Session

from bot.models import Conversation
from bot.replies import Message
from core.i18n import N_, Translator
from core.shared_state import Claim, SharedState
from ops.events import log_pseudonym

log = logging.getLogger(__name__)

# The verbs of `bot.conversation`'s order actions ("confirm:ORDER", "choose:ORDER:pix").
ORDER_DECISIONS = frozenset({"choose", "confirm", "confirm_over", "cancel", "withdraw"})
SLOW_DOWN = N_("You are sending messages faster than I can answer. Please wait a few "
               "seconds and try again.")


@dataclass(frozen=True)
class Admission:
    """Whether a shopper's message is processed; if not, whether to tell them (the first
    refusal in a window) and in how many seconds they may write again."""

    allowed: bool
    tell: bool = False
    retry_after_s: float = 0.0


ADMITTED = Admission(allowed=True)


@dataclass
class RateLimit:
    """A fixed-window counter per shopper in the shared state (Redis with several
    processes), so every process counts the same messages."""

    state: SharedState
    messages: int
    window_s: float

    def admit(self, user_key: str, *, action: str | None = None) -> Admission:
        """Count a message (or a button press) from `user_key`; whether to process it."""
        if action and action.partition(":")[0].strip() in ORDER_DECISIONS:
            return ADMITTED
        allowance = self.state.hit(f"rate:{user_key}", limit=self.messages,
                                   window_s=self.window_s)
        if allowance.allowed:
            return ADMITTED
        # One notice per window: the first refusal claims it, the rest stay quiet.
        tell = self.state.claim(f"slow:{user_key}", hold_s=allowance.retry_after_s) \
            == Claim.FIRST
        if tell:
            log.warning("shopper %s over the rate limit (%d messages in %.0f s)",
                        log_pseudonym(user_key), self.messages, self.window_s)
        return Admission(allowed=False, tell=tell, retry_after_s=allowance.retry_after_s)


def slow_down_message(engine: Engine, user_key: str, *, language: str) -> Message:
    """The request to wait, in the conversation's language (`language` for a shopper Vitrine
    has not talked with yet)."""
    with Session(engine) as session:
        conv = session.get(Conversation, user_key)
    t = Translator(conv.language if conv is not None else language)
    return Message(text=t.gettext(SLOW_DOWN))
