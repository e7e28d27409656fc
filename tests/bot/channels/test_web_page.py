"""The web chat page: one self-contained file that drives /api/chat."""

import re

import pytest

pytestmark = pytest.mark.anyio


async def test_the_chat_page_loads_with_no_outside_network_and_fits_a_phone(client):
    page = await client.get("/chat")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    assert 'name="viewport"' in html and "width=device-width" in html
    # Nothing to fetch from elsewhere: no stylesheet, script or font by URL.
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "<link" not in html and "@import" not in html
    assert "default-src 'self'" in page.headers["content-security-policy"]
    # It speaks the chat API's contract: messages, cards, buttons, updates, QR images.
    for part in ('fetch("/api/chat"', "/api/chat/updates", "m.cards", "c.buttons",
                 "m.image_url", "c.price_text", "c.reason", "c.label"):
        assert part in html, part


async def test_start_greets_with_example_requests_as_buttons_in_the_shoppers_language(client):
    response = await client.post("/api/chat", json={"user": "web-page", "text": "/start",
                                                    "market": "BR", "locale": "pt_BR"})
    [greeting] = response.json()["messages"]
    assert greeting["text"].startswith("Oi! Eu ajudo você a encontrar o presente certo.")
    assert greeting["buttons"] and all(b["action"].startswith("say:")
                                       for b in greeting["buttons"])
    [help_] = (await client.post("/api/chat", json={"user": "web-page", "text": "/ajuda"}
                                 )).json()["messages"]
    assert help_["buttons"] and not help_["text"].startswith("Oi!")


async def test_language_and_market_commands_switch_and_the_choice_sticks(client):
    talk = {"user": "switcher"}
    [menu] = (await client.post("/api/chat", json={**talk, "text": "/language",
                                                  "locale": "en_US"})).json()["messages"]
    assert [b["action"] for b in menu["buttons"]] == [
        "say:/language pt", "say:/language es", "say:/language en"]
    [done] = (await client.post("/api/chat", json={**talk, "text": "/idioma español",
                                                  "locale": "en_US"})).json()["messages"]
    assert done["text"] == "Desde ahora hablo Español."
    # The device still says English; the shopper's choice wins.
    [moved] = (await client.post("/api/chat", json={**talk, "text": "/mercado Argentina",
                                                   "locale": "en_US"})).json()["messages"]
    assert moved["text"] == "Ahora comprando en Argentina, en ARS."
    reply = (await client.post("/api/chat", json={**talk, "text": "regalo para mi papá que "
                                                 "le gusta el asado", "locale": "en_US"})
             ).json()["messages"]
    assert reply[-1]["cards"][0]["price"]["currency"] == "ARS"
    [markets] = (await client.post("/api/chat", json={**talk, "text": "/market"})
                 ).json()["messages"]
    assert "say:/market IN" in [b["action"] for b in markets["buttons"]]
