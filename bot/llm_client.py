"""A client for an OpenAI-compatible chat-completions API that answers in schema-bound JSON.

Vitrine asks a language model only for help with words (what a message means, how to phrase a
line); the answer is a `ChatAnswer` value either way. A slow, failing or refusing provider is an
expected outcome, not an exception: `ChatAnswer.failure` says why, and the caller falls back to
its deterministic path. Tokens the provider reports are kept even when the answer is unusable,
because they were paid for.

The conversation is synchronous (`Assistant.recommend` calls `IntentParser.parse` inside a
request that FastAPI runs in a worker thread), so this client uses a blocking `httpx.Client`,
injected and shared by every caller (it is thread-safe), with explicit timeouts. Each phase of
the exchange (connect, send, each read) is bounded by the timeout, and reading the body stops
as soon as the whole exchange has overrun it, so a provider that trickles bytes cannot hold a
shopper's turn hostage.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import BaseModel, ValidationError

from core.turns import waiting

JsonSchema = dict[str, Any]
MAX_RESPONSE_BYTES = 256 * 1024  # a schema-bound answer is a few hundred bytes
ERROR_EXCERPT_CHARS = 200


@dataclass(frozen=True)
class ChatMessage:
    role: str  # "system" or "user"
    content: str


@dataclass(frozen=True)
class ChatAnswer:
    """The model's JSON text, the tokens it cost, and why it cannot be used when it cannot."""

    content: str | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    failure: str | None = None  # "timeout", "HTTP 500: ...", "refused: ...", ...

    @property
    def ok(self) -> bool:
        return self.failure is None and self.content is not None


class _Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0


class _Message(BaseModel):
    content: str | None = None
    refusal: str | None = None


class _Choice(BaseModel):
    message: _Message
    finish_reason: str | None = None


class _Completion(BaseModel):
    choices: list[_Choice]


class ChatCompletions:
    """One model behind an OpenAI-compatible `POST {base_url}/chat/completions`."""

    def __init__(self, *, http: httpx.Client, base_url: str, model: str,
                 api_key: str | None = None, timeout_s: float = 2.5,
                 max_output_tokens: int = 600) -> None:
        self.http = http
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self._api_key = api_key
        self.timeout_s = timeout_s
        self.max_output_tokens = max_output_tokens

    def complete_json(self, messages: list[ChatMessage], *, schema_name: str,
                      schema: JsonSchema) -> ChatAnswer:
        """Ask for one answer that conforms to `schema` (strict structured output).

        Returns the answer's JSON text unparsed: checking it against the schema and the
        caller's rules is the caller's business. Never raises for anything the provider or
        the network does.
        """
        body = {
            "model": self.model,
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "response_format": {"type": "json_schema", "json_schema": {
                "name": schema_name, "strict": True, "schema": schema}},
            "max_completion_tokens": self.max_output_tokens,
        }
        headers = {"Accept": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        deadline = time.monotonic() + self.timeout_s
        # A turn waiting on the model lets another turn work meanwhile (`core.turns`).
        try:
            with waiting(), self.http.stream("POST", self.url, json=body, headers=headers,
                                             timeout=httpx.Timeout(self.timeout_s)) as response:
                raw = bytearray()
                for chunk in response.iter_bytes():
                    raw += chunk
                    if time.monotonic() > deadline:
                        return ChatAnswer(failure="timeout")
                    if len(raw) > MAX_RESPONSE_BYTES:
                        return ChatAnswer(failure="response too large")
                status = response.status_code
        except httpx.TimeoutException:
            return ChatAnswer(failure="timeout")
        except httpx.HTTPError as exc:
            return ChatAnswer(failure=f"{type(exc).__name__}: {exc}")
        return _read_completion(status, bytes(raw))


def _read_completion(status: int, raw: bytes) -> ChatAnswer:
    text = raw.decode("utf-8", errors="replace")
    if status >= 400:
        return ChatAnswer(failure=f"HTTP {status}: {text[:ERROR_EXCERPT_CHARS]}")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return ChatAnswer(failure="response is not JSON")
    if not isinstance(data, dict):
        return ChatAnswer(failure="response is not a JSON object")
    tokens_in = tokens_out = 0
    try:
        usage = _Usage.model_validate(data.get("usage") or {})
        tokens_in, tokens_out = max(usage.prompt_tokens, 0), max(usage.completion_tokens, 0)
    except ValidationError:
        pass  # a provider that reports no usable usage still answered
    try:
        completion = _Completion.model_validate(data)
    except ValidationError:
        return ChatAnswer(tokens_in=tokens_in, tokens_out=tokens_out,
                          failure="response is not a chat completion")
    if not completion.choices:
        return ChatAnswer(tokens_in=tokens_in, tokens_out=tokens_out, failure="no choices")
    choice = completion.choices[0]
    if choice.message.refusal:
        return ChatAnswer(tokens_in=tokens_in, tokens_out=tokens_out,
                          failure=f"refused: {choice.message.refusal[:ERROR_EXCERPT_CHARS]}")
    if choice.finish_reason not in (None, "stop"):
        # "length" cuts the JSON short; "content_filter" withholds it.
        return ChatAnswer(tokens_in=tokens_in, tokens_out=tokens_out,
                          failure=f"finish_reason {choice.finish_reason}")
    if choice.message.content is None:
        return ChatAnswer(tokens_in=tokens_in, tokens_out=tokens_out, failure="empty answer")
    return ChatAnswer(content=choice.message.content, tokens_in=tokens_in,
                      tokens_out=tokens_out)
