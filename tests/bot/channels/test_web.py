"""Bad input on the chat API: a clear message or a 4xx JSON reason, never a 500."""

import pytest

pytestmark = pytest.mark.anyio


async def post(client, **payload):
    return await client.post("/api/chat", json=payload)


async def test_empty_message_gets_a_greeting_with_examples(client):
    response = await post(client, user="u", text="   ", market="BR")
    assert response.status_code == 200
    [message] = response.json()["messages"]
    assert message["buttons"] and all(b["action"].startswith("say:")
                                      for b in message["buttons"])


async def test_an_example_button_runs_that_request(client):
    [greeting] = (await post(client, user="u", text="", market="BR")).json()["messages"]
    response = await post(client, user="u", action=greeting["buttons"][0]["action"])
    assert any(m["cards"] for m in response.json()["messages"])


async def test_a_ten_thousand_character_message_is_refused_politely(client):
    response = await post(client, user="u", text="mãe " * 2500, market="BR")
    assert response.status_code == 200
    [message] = response.json()["messages"]
    assert "2000" in message["text"] and not message["cards"]


async def test_emoji_only_text_gets_help_not_an_error(client):
    response = await post(client, user="u", text="🎁🎉🙂", market="US")
    assert response.status_code == 200
    [message] = response.json()["messages"]
    assert message["buttons"] and not message["cards"]


async def test_unknown_market_is_a_400_with_a_reason(client):
    response = await post(client, user="u", text="gift", market="ZZ")
    assert response.status_code == 400
    assert "unknown market" in response.json()["reason"]


@pytest.mark.parametrize("payload", [
    {"text": "hi"},
    {"user": "", "text": "hi"},
    {"user": "   ", "text": "hi"},
    {"user": "u", "text": 42},
    {"user": "u" * 500, "text": "hi"},
])
async def test_malformed_requests_are_422_with_a_reason(client, payload):
    response = await client.post("/api/chat", json=payload)
    assert response.status_code == 422
    assert response.json()["reason"]


async def test_not_json_is_a_422(client):
    response = await client.post("/api/chat", content=b"{oops",
                                 headers={"Content-Type": "application/json"})
    assert response.status_code == 422


@pytest.mark.parametrize("action", [
    "buy:giftwell:does-not-exist", "buy:", "confirm:ord_nope", "cancel:ord_nope",
    "explode:now", "more:jardim-e-cia:JC-0001", "::::", "x" * 400,
])
async def test_unknown_or_forged_actions_get_a_clear_message(client, action):
    response = await post(client, user="u", action=action, market="BR")
    assert response.status_code == 200
    [message] = response.json()["messages"]
    assert message["text"] and not message["cards"]


async def test_a_shopper_cannot_confirm_another_shoppers_order(client):
    first = await post(client, user="alice", text="presente para minha mãe", market="BR")
    card = first.json()["messages"][-1]["cards"][0]
    confirmation = (await post(client, user="alice", action=card["buttons"][0]["action"])
                    ).json()["messages"][0]
    confirm = confirmation["buttons"][0]["action"]
    stolen = (await post(client, user="mallory", action=confirm)).json()["messages"][0]
    assert "000201" not in stolen["text"]
    mine = (await post(client, user="alice", action=confirm)).json()["messages"][0]
    assert "000201" in mine["text"]


async def test_a_card_not_shown_to_this_shopper_cannot_be_bought(client):
    shown = await post(client, user="alice", text="presente para minha mãe", market="BR")
    buy = shown.json()["messages"][-1]["cards"][0]["buttons"][0]["action"]
    other = (await post(client, user="bob", action=buy, market="BR")).json()["messages"][0]
    assert not other["buttons"]


async def test_an_absurd_budget_is_not_a_crash(client):
    response = await post(client, user="u", market="BR",
                          text="presente até R$ 99999999999999999999999999999")
    assert response.status_code == 200


async def test_a_body_that_is_not_utf8_gets_the_error_shape(client):
    response = await client.post("/api/chat", content=b'{"user": "\xff\xfe"}',
                                 headers={"Content-Type": "application/json"})
    assert 400 <= response.status_code < 500
    assert "reason" in response.json()


async def test_an_unknown_locale_falls_back_to_the_markets_language(client):
    response = await post(client, user="u", market="BR", locale="xx",
                          text="presente para minha mãe")
    assert "sua mãe" in response.json()["messages"][-1]["text"]


async def test_a_shared_word_does_not_switch_a_brazilian_to_spanish(client):
    response = await post(client, user="u", market="BR", text="no máximo R$150")
    assert response.json()["messages"][-1]["text"].startswith("Aqui")


async def test_the_longest_web_user_id_is_stored_and_a_longer_one_refused(client):
    # Stored as "web:<user>" in a 200-character column, which PostgreSQL enforces.
    longest = await post(client, user="u" * 196, text="presente para minha mãe", market="BR")
    assert longest.status_code == 200
    updates = await client.get("/api/chat/updates", params={"user": "u" * 196})
    assert updates.status_code == 200
    longer = await post(client, user="u" * 197, text="presente", market="BR")
    assert longer.status_code == 422 and "user" in longer.json()["reason"]
