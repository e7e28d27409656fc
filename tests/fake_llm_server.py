"""A fake OpenAI-compatible chat-completions provider at the transport boundary.

Queue what the provider should do next (an answer, a status, an exception), hand
`FakeLlm.client()` to the code under test, and assert on `FakeLlm.requests`: the same
pattern as aiogram's mocked bot.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

BASE_URL = "https://llm.test/v1"
API_KEY = "sk-test-0123456789"
MODEL = "gift-model-1"

Behaviour = Callable[[httpx.Request], httpx.Response]


def completion(content: dict[str, Any] | str | None, *, prompt_tokens: int = 120,
               completion_tokens: int = 40, finish_reason: str = "stop",
               refusal: str | None = None) -> dict[str, Any]:
    """A chat.completion body as the provider sends it."""
    text = content if content is None or isinstance(content, str) else json.dumps(content)
    return {
        "id": "chatcmpl-test", "object": "chat.completion", "created": 1_800_000_000,
        "model": MODEL,
        "choices": [{"index": 0, "finish_reason": finish_reason,
                     "message": {"role": "assistant", "content": text, "refusal": refusal}}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }


def understanding(**fields: Any) -> dict[str, Any]:
    """A schema-valid answer to the intent question: empty except for `fields`."""
    answer: dict[str, Any] = {
        "recipient": None, "age": None, "gender": None, "occasion": None, "interests": [],
        "budget": None, "product_words": [], "product_types": [], "attributes": [],
        "brands": [], "avoid_brands": [], "exclusions": [],
    }
    answer.update(fields)
    return answer


@dataclass
class FakeLlm:
    """Answers queued responses in order; with nothing queued, answers `default`."""

    default: Behaviour | None = None
    requests: list[httpx.Request] = field(default_factory=list)
    _queue: deque[Behaviour] = field(default_factory=deque)

    def then(self, behaviour: Behaviour) -> None:
        """Queue any response (or exception) a handler can produce."""
        self._queue.append(behaviour)

    def answer(self, content: dict[str, Any] | str | None, **kwargs: Any) -> None:
        body = completion(content, **kwargs)
        self._queue.append(lambda request: httpx.Response(200, json=body))

    def status(self, code: int, body: dict[str, Any] | None = None) -> None:
        self._queue.append(lambda request: httpx.Response(
            code, json=body or {"error": {"message": "overloaded", "type": "server_error"}}))

    def raw(self, code: int, content: bytes) -> None:
        self._queue.append(lambda request: httpx.Response(code, content=content))

    def fail(self, exc: Exception) -> None:
        def raise_(request: httpx.Request) -> httpx.Response:
            raise exc
        self._queue.append(raise_)

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self._queue:
            return self._queue.popleft()(request)
        if self.default is not None:
            return self.default(request)
        raise AssertionError(f"unexpected request to the language model: {request.url}")

    def client(self) -> httpx.Client:
        return httpx.Client(transport=httpx.MockTransport(self.handler))

    def body(self, index: int = -1) -> dict[str, Any]:
        """The JSON body of a request the code under test sent."""
        return json.loads(self.requests[index].content)
