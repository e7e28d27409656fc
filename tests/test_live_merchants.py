"""A live merchant (its own UCP MCP server on loopback) through the whole chat: cards,
buy with a price re-checked at the merchant, confirm, and a server that stops answering."""

import pytest

pytestmark = pytest.mark.anyio


@pytest.fixture
def settings(settings):
    # Every cached live price counts as old: buying always asks the merchant again.
    return settings.model_copy(update={"price_max_age_minutes": 0, "live_deadline_ms": 800,
                                       "live_merchant_timeout_ms": 700})


async def chat(client, **payload):
    response = await client.post("/api/chat", json={"user": "lia", **payload})
    assert response.status_code == 200, response.text
    return response.json()["messages"]


async def test_live_cards_can_be_bought_and_a_new_price_is_confirmed_again(live_runtime, client,
                                                                          shop):
    messages = await chat(client, text="copper watering can", market="US")
    card = next(c for m in messages for c in m["cards"] if c["merchant"] == "Fake Shop")
    assert card["product_id"] == "WCAN" and card["price"]["amount"] == 4500

    next(p for p in shop.catalog if p["id"] == "WCAN")["variants"][0]["price"]["amount"] = 5200
    [confirmation] = await chat(client, action=card["buttons"][0]["action"])
    assert shop.calls("lookup_catalog"), "the price was not re-checked with the merchant"
    assert "$52.00" in confirmation["text"] and "$45.00" in confirmation["text"]
    [payment] = await chat(client, action=confirmation["buttons"][0]["action"])
    assert "/sandbox/pay/" in payment["text"] and "$52.00" in payment["text"]


async def test_a_live_merchant_that_stops_answering_is_named_and_skipped(live_runtime, client,
                                                                        shop):
    shop.mode = "hanging"
    messages = await chat(client, text="copper watering can", market="US")
    assert any("Fake Shop" in m["text"] for m in messages)
    assert all(c["merchant"] != "Fake Shop" for m in messages for c in m["cards"])


async def test_a_live_merchants_invalid_products_are_never_shown(live_runtime, client, shop):
    shop.mode = "invalid"
    messages = await chat(client, text="watering can", market="US")
    shown = {c["product_id"] for m in messages for c in m["cards"] if c["merchant"] == "Fake Shop"}
    assert "NOVARIANT" not in shown and "FLOAT" not in shown
    health = live_runtime.assistant  # the calls were recorded for the merchant's health
    from sqlmodel import Session

    from catalog.health import merchant_health
    from catalog.store import get_merchant

    with Session(health.engine) as session:
        report = merchant_health(session=session,
                                 merchant=get_merchant(session=session, slug="fake-shop"))
    assert report.calls >= 1 and report.kind == "mcp"
