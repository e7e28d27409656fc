"""A conversion log made by a real conversation, for the ops reports' tests."""

from __future__ import annotations

import pytest

from tests.catalog.test_api import ADMIN, key_header, register, ucp_product
from tests.conftest import OPS_TOKEN
from tests.test_end_to_end import chat, pix_code, signed, tlv

OPS = {"Authorization": f"Bearer {OPS_TOKEN}"}


@pytest.fixture
def settings(settings):
    return settings.model_copy(update={"admin_token": ADMIN})


@pytest.fixture
async def sold(client, demo_runtime):
    """A push merchant sponsoring one mug; a shopper sees it, buys it and pays by Pix; and
    a request that finds nothing."""
    key = (await register(client)).json()["api_key"]
    products = [ucp_product(f"CAN-{i}", f"Caneca de cerâmica modelo {i}", 5000 + i,
                            tags=[], metadata={"brand": f"Marca {i}"}) for i in range(4)]
    await client.put("/api/merchants/loja-push/products", json={"products": products},
                     headers=key_header(key))
    await client.put("/api/merchants/loja-push/sponsored", json={"product_ids": ["CAN-3"]},
                     headers=key_header(key))
    messages = await chat(client, text="caneca de cerâmica", market="BR", user="sp")
    cards = [c for m in messages for c in m["cards"]]
    sponsored = next(c for c in cards if c["sponsored"])
    [confirmation] = await chat(client, action=sponsored["buttons"][0]["action"], user="sp")
    confirm = next(b["action"] for b in confirmation["buttons"]
                   if b["action"].startswith("confirm:"))
    payment = await chat(client, action=confirm, user="sp")
    txid = tlv(tlv(pix_code(payment))["62"])["05"]
    body, headers = signed({"event_id": "e-sold", "txid": txid, "status": "paid"})
    assert (await client.post("/api/payments/sandbox/webhook", content=body,
                              headers=headers)).status_code == 200
    await chat(client, text="pneu de trator", market="BR", user="gap")
    return {"key": key, "cards": cards, "sponsored": sponsored}
