"""The ops dashboard: the login with the ops token, the bearer token for scripts, the
numbers the API gives, the filters and the CSV exports."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from core.db import utcnow
from ops.dashboard import COOKIE, session_valid, session_value
from tests.conftest import OPS_TOKEN
from tests.ops.conftest import OPS

pytestmark = pytest.mark.anyio


async def _logged_in(client) -> None:
    response = await client.post("/ops/login", data={"token": OPS_TOKEN})
    assert response.status_code == 303 and response.headers["location"] == "/ops"
    assert COOKIE in response.cookies


def _tile(html: str, name: str) -> str:
    return re.search(rf'data-tile="{name}"><span>[^<]*</span><strong>([^<]*)</strong>',
                     html).group(1)


async def test_the_dashboard_sends_strangers_to_the_login_and_lets_the_token_in(client):
    page = await client.get("/ops")
    assert page.status_code == 303 and page.headers["location"] == "/ops/login"
    wrong = await client.post("/ops/login", data={"token": "guess"})
    assert wrong.status_code == 401 and "not the ops token" in wrong.text
    assert COOKIE not in wrong.cookies
    await _logged_in(client)
    page = await client.get("/ops")
    assert page.status_code == 200 and "<svg" in page.text and "Funnel" in page.text
    assert "script" not in page.headers["content-security-policy"].replace("'none'", "")
    out = await client.post("/ops/logout")
    assert out.status_code == 303 and f'{COOKIE}=""' in out.headers["set-cookie"]
    assert (await client.get("/ops")).status_code == 303


async def test_scripts_use_the_bearer_token_and_a_wrong_one_is_401(client):
    assert (await client.get("/ops", headers=OPS)).status_code == 200
    wrong = await client.get("/ops", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.json()["error"] == "unauthorized"


def test_a_session_cookie_cannot_be_forged_or_outlive_its_token():
    value = session_value(OPS_TOKEN, now=1_000)
    assert session_valid(value, OPS_TOKEN, now=1_001)
    assert not session_valid(value, OPS_TOKEN, now=1_000 + 13 * 3600)  # expired
    assert not session_valid(value, "another-token", now=1_001)  # the token changed
    expires, _, signature = value.partition(".")
    assert not session_valid(f"{int(expires) + 3600}.{signature}", OPS_TOKEN, now=1_001)
    assert not session_valid("garbage", OPS_TOKEN) and not session_valid(None, OPS_TOKEN)


async def test_the_numbers_on_the_page_are_the_apis(client, sold):
    await _logged_in(client)
    today = utcnow().date()
    page = (await client.get("/ops", params={"from": today.isoformat(),
                                             "to": today.isoformat()})).text
    api = (await client.get("/api/ops/funnel", headers=OPS, params={
        "from": today.isoformat(), "to": (today + timedelta(days=1)).isoformat()})).json()
    for tile, stage in (("messages", "messages"), ("recommendations", "recommendations"),
                        ("clicks", "clicks"), ("checkouts", "checkouts"), ("paid", "paid")):
        assert _tile(page, tile) == f"{api['stages'][stage]:,}", tile
    assert f'data-stage="Paid" data-count="{api["stages"]["paid"]}"' in page
    assert "loja-push" in page and "Sponsored" in page
    assert "(words not kept)" in page  # the gap is listed without the shopper's words


async def test_filters_narrow_the_page_and_the_exports_follow_them(client, sold):
    await _logged_in(client)
    page = (await client.get("/ops", params={"channel": "tg"})).text
    assert _tile(page, "messages") == "0"
    assert '<option value="tg" selected>' in page
    shop = (await client.get("/ops", params={"merchant": "loja-push"})).text
    assert "belong to no merchant" in shop and _tile(shop, "paid") == "1"
    others = (await client.get("/ops", params={"merchant": "jardim-e-cia"})).text
    assert _tile(others, "paid") == "0" and _tile(others, "revenue") == "—"
    assert _tile(others, "cost") == "—"
    huge = await client.get("/ops", params={"from": "0001-01-01", "to": "9999-12-31"})
    assert huge.status_code == 200 and 'value="2199-12-30"' in huge.text
    export = await client.get("/ops/export/merchants.csv", params={"merchant": "loja-push"})
    assert export.headers["content-type"].startswith("text/csv")
    assert export.text.splitlines()[1].startswith("loja-push,")
    assert (await client.get("/ops/export/nothing.csv")).status_code == 404
    client.cookies.clear()
    assert (await client.get("/ops/export/merchants.csv")).status_code == 303
