"""Telegram's Bot API and Meta's Graph API, faked at the transport boundary for the channel
tests: they record what Vitrine sent and answer in the real APIs' shapes."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from catalog.merchants import add_merchant_from_feed
from vitrine.runtime import DEMO_DIR, Runtime, seed_demo

PICTURES = "https://cdn.vitrine.example"


def with_public_pictures(runtime: Runtime, tmp_path: Path) -> Runtime:
    """The demo catalog, Brazil's shops with raster pictures on a public host (the demo's
    own are SVG drawings served locally, which chat apps cannot show)."""
    seed_demo(runtime)
    for slug, name, feed in (("jardim-e-cia", "Jardim & Cia", "jardim-e-cia.jsonl"),
                             ("casa-presente", "Casa Presente", "casa-presente.tsv")):
        copy = tmp_path / feed
        copy.write_text((DEMO_DIR / "feeds" / feed).read_text("utf-8").replace(".svg", ".jpg"),
                        "utf-8")
        add_merchant_from_feed(engine=runtime.engine, name=name, market="BR", feed=copy,
                               slug=slug, base_url=PICTURES, replace=True)
    return runtime


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    files: dict[str, bytes] = field(default_factory=dict)  # multipart uploads


class FakeBotApi:
    """The Bot API on loopback: records `/bot<token>/<method>` calls, answers in its shapes
    (`getUpdates` from a queue, then empty). `failures` are error answers given, in order, to
    the next send calls: (HTTP status, description, retry_after or None)."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.updates: list[dict[str, Any]] = []
        self.tokens: set[str] = set()
        self.refuse_photos = False
        self.failures: list[tuple[int, str, int | None]] = []
        self.webhook: dict[str, Any] = {}
        self.changed = threading.Condition()
        self.app = Starlette(routes=[Route("/bot{token}/{method}", self.endpoint,
                                           methods=["POST", "GET"])])

    async def endpoint(self, request: Request) -> JSONResponse:
        method = request.path_params["method"]
        form = await request.form()
        params = {k: v for k, v in form.items() if isinstance(v, str)}
        uploads = {k: await v.read() for k, v in form.items() if isinstance(v, UploadFile)}
        # aiogram names an upload by a random key and points the parameter at "attach://key".
        files = {name: uploads[value.removeprefix("attach://")]
                 for name, value in params.items()
                 if value.startswith("attach://") and value[9:] in uploads}
        with self.changed:
            self.tokens.add(request.path_params["token"])
            self.calls.append(Call(method, params, files))
            self.changed.notify_all()
            failure = self.failures.pop(0) if self.failures and method.startswith("send") \
                else None
        if failure is not None:
            status, description, retry_after = failure
            body: dict[str, Any] = {"ok": False, "error_code": status,
                                    "description": description}
            if retry_after is not None:
                body["parameters"] = {"retry_after": retry_after}
            return JSONResponse(body, status_code=status)
        if method == "sendPhoto" and self.refuse_photos:
            return JSONResponse({"ok": False, "error_code": 400,
                                 "description": "Bad Request: wrong type of the web page "
                                                "content"}, status_code=400)
        return JSONResponse({"ok": True, "result": self.result(method, params)})

    def result(self, method: str, params: dict[str, Any]) -> Any:
        if method in ("sendMessage", "sendPhoto"):
            message: dict[str, Any] = {"message_id": len(self.calls), "date": 1718000000,
                                       "chat": {"id": int(params["chat_id"]),
                                                "type": "private"}}
            if method == "sendPhoto":
                message["photo"] = [{"file_id": "f1", "file_unique_id": "u1", "width": 90,
                                     "height": 90}]
                message["caption"] = params.get("caption", "")
            else:
                message["text"] = params["text"]
            return message
        if method == "getUpdates":
            with self.changed:
                updates, self.updates = self.updates, []
            return updates
        if method == "setWebhook":
            self.webhook = {"url": params["url"], "has_custom_certificate": False,
                            "pending_update_count": 0}
        if method == "deleteWebhook":
            self.webhook = {}
        if method == "getWebhookInfo":
            return self.webhook or {"url": "", "has_custom_certificate": False,
                                    "pending_update_count": 0}
        if method == "getMe":
            return {"id": 123456, "is_bot": True, "first_name": "Vitrine",
                    "username": "vitrine_test_bot"}
        return True  # answerCallbackQuery, setWebhook, deleteWebhook

    def sent(self, *methods: str) -> list[Call]:
        with self.changed:
            return [c for c in self.calls if c.method in methods]

    def wait_for(self, method: str, count: int = 1, timeout: float = 10.0) -> None:
        with self.changed:
            if not self.changed.wait_for(
                    lambda: sum(c.method == method for c in self.calls) >= count,
                    timeout=timeout):
                raise AssertionError(f"fewer than {count} {method} call(s) within {timeout}s")

    def clear(self) -> None:
        with self.changed:
            self.calls.clear()
            self.failures.clear()


class FakeGraphApi:
    """Meta's Graph API as an httpx transport: records what was sent, answers from a queue
    (then 200 with a message id)."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.answers: list[httpx.Response] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.answers:
            return self.answers.pop(0)
        if request.url.path.endswith("/media"):
            return httpx.Response(200, json={"id": f"media-{len(self.requests)}"})
        return httpx.Response(200, json={"messaging_product": "whatsapp",
                                         "messages": [{"id": f"wamid.out{len(self.requests)}"}]})

    @property
    def sent(self) -> list[dict[str, Any]]:
        """The messages sent (uploads left out)."""
        return [json.loads(r.content) for r in self.requests
                if r.url.path.endswith("/messages")]

    @property
    def uploads(self) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.path.endswith("/media")]
