"""The ops dashboard in headless Chromium (Debian's, driven by Playwright): sign in with the
ops token, see the funnel chart, check a number against the API, save a screenshot."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import httpx
import pytest
from sqlmodel import Session, select

from checkout.models import Order
from checkout.rails.sandbox import sandbox_event
from core.db import utcnow
from tests.browser.conftest import CHROMIUM, LAUNCH_ARGS
from tests.conftest import OPS_TOKEN, SANDBOX_SECRET
from tests.loopback import serve
from vitrine.app import create_app

playwright_api = pytest.importorskip("playwright.sync_api")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"


def _sell(runtime, base: str) -> None:
    """A shopper asks, buys the first card, confirms and pays by Pix; another finds
    nothing."""
    bot = runtime.assistant
    [*_, cards] = bot.handle(user_key="web:ana", text="presente para minha mãe até R$200",
                             market="BR").messages
    [confirmation] = bot.handle(user_key="web:ana",
                                action=cards.cards[0].buttons[0].action).messages
    bot.handle(user_key="web:ana", action=next(
        b.action for b in confirmation.buttons if b.action.startswith("confirm:")))
    with Session(runtime.engine) as session:
        order = session.exec(select(Order)).one()
    body, headers = sandbox_event(secret=SANDBOX_SECRET, txid=order.txid or "", status="paid")
    assert httpx.post(f"{base}/api/payments/sandbox/webhook", content=body,
                      headers=headers).status_code == 200
    bot.handle(user_key="web:bia", text="pneu de trator", market="BR")


def test_ops_signs_in_sees_the_funnel_and_its_numbers_match_the_api(demo_runtime, port,
                                                                     tmp_path):
    with serve(create_app(demo_runtime), port=port) as base, \
            playwright_api.sync_playwright() as pw:
        _sell(demo_runtime, base)
        browser = pw.chromium.launch(executable_path=CHROMIUM,
                                     args=LAUNCH_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            requested: list[str] = []
            page.on("request", lambda request: requested.append(request.url))
            page.goto(f"{base}/ops")
            assert page.url.endswith("/ops/login")
            page.fill("input[name=token]", "not the token")
            page.click("button[type=submit]")
            page.get_by_role("alert").wait_for()
            page.fill("input[name=token]", OPS_TOKEN)
            page.click("button[type=submit]")
            page.locator("svg.funnel").wait_for()

            bars = page.locator("svg.funnel g[data-stage]")
            assert bars.count() == 5
            paid_on_page = int(page.locator('svg.funnel g[data-stage="Paid"]')
                               .get_attribute("data-count") or -1)
            tile = page.locator('[data-tile="paid"] strong').inner_text()
            today = utcnow().date()
            api = httpx.get(f"{base}/api/ops/funnel", headers={
                "Authorization": f"Bearer {OPS_TOKEN}"}, params={
                "from": today.isoformat(), "to": today.replace(day=today.day).isoformat()
                + "T23:59:59.999999"}).json()
            assert paid_on_page == api["stages"]["paid"] == 1 and tile == "1"
            assert page.get_by_text("pneu de trator").count() == 0  # words not kept
            page.select_option("select[name=channel]", "tg")
            page.click("form.filters button")
            page.wait_for_url(re.compile(r"channel=tg"))
            assert page.locator('[data-tile="messages"] strong').inner_text() == "0"

            page.go_back()
            page.locator("svg.funnel").wait_for()
            shot = tmp_path / "ops-dashboard.png"
            page.screenshot(path=shot, full_page=True)
            assert shot.stat().st_size > 20_000
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            shutil.copy(shot, SCREENSHOTS / shot.name)
            assert {httpx.URL(url).netloc.decode() for url in requested} == \
                {httpx.URL(base).netloc.decode()}
        finally:
            browser.close()
