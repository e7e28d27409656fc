"""The web chat in a real browser: Debian's Chromium, headless, on a phone-sized screen,
driven by Playwright against Vitrine served on loopback. `.ci/run` installs Chromium; where
it is missing this module is skipped and says why."""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import httpx
import pytest
from sqlmodel import Session, select

from checkout.models import Order
from checkout.rails.sandbox import sandbox_event
from tests.browser.conftest import CHROMIUM, LAUNCH_ARGS
from tests.conftest import SANDBOX_SECRET
from tests.loopback import serve
from vitrine.app import create_app

playwright_api = pytest.importorskip("playwright.sync_api")
PHONE = {"width": 390, "height": 844}


def _wait_drawn(images, timeout_s: float = 15.0) -> None:
    """Until every image the locator finds is loaded and drawn.

    Polled from here: `wait_for_function` polls with a function it compiles inside the page
    once a first check fails, which the chat page's Content-Security-Policy (no
    'unsafe-eval') refuses, so it failed whenever a picture was still loading."""
    deadline = time.monotonic() + timeout_s
    while not images.evaluate_all("els => els.every(i => i.complete && i.naturalWidth > 0)"):
        assert time.monotonic() < deadline, "pictures not drawn"
        images.page.wait_for_timeout(50)


@pytest.fixture
def page(demo_runtime, port):
    with serve(create_app(demo_runtime), port=port) as base, \
            playwright_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM,
                                     args=LAUNCH_ARGS)
        context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True,
                                      locale="pt-BR")
        page = context.new_page()
        page.base = base  # type: ignore[attr-defined]
        page.requested = []  # type: ignore[attr-defined]
        page.on("request", lambda request: page.requested.append(request.url))
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.errors = errors  # type: ignore[attr-defined]
        try:
            yield page
        finally:
            browser.close()


def test_a_shopper_asks_buys_and_sees_the_payment_confirmed_on_a_phone(
        page, demo_runtime, tmp_path):
    page.goto(page.base + "/chat")
    page.locator(".bot").first.wait_for()  # the greeting, in Portuguese
    assert "presente" in page.locator(".bot").first.inner_text()

    page.fill("#text", "presente para minha mãe que ama jardinagem, até R$200")
    page.click("#send button[type=submit]")
    cards = page.locator(".card")
    cards.nth(2).wait_for()
    assert cards.count() == 3
    assert all("R$" in cards.nth(i).locator(".price").inner_text() for i in range(3))
    # Usable on a phone: nothing wider than the screen, the cards' pictures drawn.
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    _wait_drawn(page.locator(".card img"))

    cards.first.get_by_role("button", name="Comprar").click()
    page.get_by_role("button", name="Confirmar").last.click()
    qr = page.locator("img.qr").last
    qr.wait_for()
    _wait_drawn(qr)

    with Session(demo_runtime.engine) as session:
        order = session.exec(select(Order)).one()
    body, headers = sandbox_event(secret=SANDBOX_SECRET, txid=order.txid or "", status="paid")
    assert httpx.post(page.base + "/api/payments/sandbox/webhook", content=body,
                      headers=headers).status_code == 200
    # The page asks for news every few seconds: the confirmation arrives by itself.
    page.get_by_text("Pagamento confirmado").wait_for(timeout=15_000)
    page.screenshot(path=tmp_path / "chat.png", full_page=True)
    assert (tmp_path / "chat.png").stat().st_size > 10_000

    # Everything the page loaded came from Vitrine itself: no outside network needed.
    hosts = {urlsplit(url).netloc for url in page.requested if not url.startswith("data:")}
    assert hosts == {urlsplit(page.base).netloc}
    assert page.errors == []
