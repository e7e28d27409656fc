"""`vitrine chat`: the conversation in a terminal, buttons as numbers.

`/pay` asks the development payment provider, when one is given, to pay the shopper's latest
order awaiting payment.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TextIO

from bot.conversation import Assistant
from bot.replies import Message, Reply


def render(reply: Reply, out: TextIO) -> list[str]:
    """Print a reply; returns the actions of its buttons, numbered from 1."""
    actions: list[str] = []

    def button(label: str, action: str) -> str:
        actions.append(action)
        return f"[{len(actions)}] {label}"

    for message in reply.messages:
        print(message.text, file=out)
        for card in message.cards:
            label = f"  [{card.label}]" if card.label else ""
            print(f"\n  {card.position}. {card.title}{label}", file=out)
            print(f"     {card.price_text} · {card.merchant}", file=out)
            print(f"     {card.reason}", file=out)
            print("     " + "  ".join(button(b.label, b.action) for b in card.buttons), file=out)
        if message.buttons:
            print("  " + "\n  ".join(button(b.label, b.action) for b in message.buttons),
                  file=out)
        print(file=out)
    return actions


def run_terminal_chat(assistant: Assistant, *, user: str, market: str | None,
                      locale: str | None, pay: Callable[[str], str] | None = None,
                      stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout) -> int:
    """Chat until end of input; a number presses that button, `/pay` calls `pay(user_key)`."""
    user_key = f"terminal:{user}"
    print("Vitrine — type a request, a button number, /pay (sandbox payment) or /quit.",
          file=stdout)
    actions: list[str] = []
    first = True
    for line in stdin:
        text = line.strip()
        if text in ("/quit", "/exit"):
            break
        if text == "/pay" and pay is not None:
            print(pay(user_key), file=stdout)
            reply = assistant.pending(user_key=user_key)
        elif text.isdigit() and 1 <= int(text) <= len(actions):
            reply = assistant.handle(user_key=user_key, action=actions[int(text) - 1],
                                             market=market if first else None, locale=locale)
        else:
            reply = assistant.handle(user_key=user_key, text=text,
                                             market=market if first else None, locale=locale)
        first = False
        new_actions = render(reply, stdout)
        actions = new_actions or actions
        stdout.flush()
    return 0


__all__ = ["Message", "render", "run_terminal_chat"]
