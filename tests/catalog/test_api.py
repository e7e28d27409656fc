"""Merchant API: registration with the admin token, pushed products with the merchant's key."""

import pytest

from tests.factories import ucp_product

pytestmark = pytest.mark.anyio

ADMIN = "test-admin-token-0123456789"


@pytest.fixture
def settings(settings):
    return settings.model_copy(update={"admin_token": ADMIN})


async def register(client, **body):
    payload = {"name": "Loja Push", "market": "BR", "kind": "push", **body}
    return await client.post("/api/merchants", json=payload,
                             headers={"Authorization": f"Bearer {ADMIN}"})


def key_header(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


async def test_registration_needs_the_admin_token(client):
    response = await client.post("/api/merchants", json={"name": "X", "market": "BR"})
    assert response.status_code == 401 and response.json()["reason"]
    response = await client.post("/api/merchants", json={"name": "X", "market": "BR"},
                                 headers={"Authorization": "Bearer wrong"})
    assert response.status_code == 401


async def test_registration_returns_a_key_once_and_stores_only_its_hash(client, demo_runtime):
    from sqlmodel import Session

    from catalog.store import get_merchant

    response = await register(client)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["merchant"]["kind"] == "push" and body["api_key"].startswith("vk_loja-push_")
    with Session(demo_runtime.engine) as session:
        stored = get_merchant(session=session, slug="loja-push").api_key_hash
    assert stored and body["api_key"] not in stored and len(stored) == 64


@pytest.mark.parametrize("body, reason", [
    ({"market": "ZZ"}, "unknown market"),
    ({"kind": "feed"}, "feed_url"),
    ({"kind": "feed", "feed_url": "file:///etc/passwd"}, "feed_url"),
    ({"kind": "mcp"}, "mcp_url"),
    ({"slug": "Not A Slug"}, "slug"),
])
async def test_bad_registrations_get_a_reason(client, body, reason):
    response = await register(client, **body)
    assert 400 <= response.status_code < 500 and reason in response.json()["reason"]


async def test_a_duplicate_slug_is_refused(client):
    assert (await register(client)).status_code == 201
    response = await register(client)
    assert response.status_code == 400 and "already exists" in response.json()["reason"]


async def test_pushed_products_are_validated_one_by_one_and_searchable(client, demo_runtime):
    key = (await register(client)).json()["api_key"]
    batch = {"products": [
        ucp_product("P1", "Regador de Cobre Artesanal", 15990),
        ucp_product("P2", amount=-1),
        ucp_product("P3", "Caneca", 100, currency="USD"),
        ucp_product("P4", "Pistola", 100, categories=[{"value": "Armas de fogo"}]),
        ucp_product("P1", "Duplicate"),
        {"id": "P5"},
    ]}
    response = await client.put("/api/merchants/loja-push/products", json=batch,
                                headers=key_header(key))
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["upserted"] == 1
    assert [(e["index"], e["id"]) for e in report["errors"]] == \
        [(1, "P2"), (2, "P3"), (3, "P4"), (4, "P1"), (5, "P5")]
    assert "BRL" in report["errors"][1]["reason"]
    assert "blocked" in report["errors"][2]["reason"]

    chat = await client.post("/api/chat", json={"user": "u", "market": "BR",
                                                "text": "regador de cobre"})
    cards = chat.json()["messages"][-1]["cards"]
    assert cards[0]["product_id"] == "P1" and cards[0]["merchant"] == "Loja Push"


async def test_an_upsert_replaces_and_a_delete_removes(client, demo_runtime):
    key = (await register(client)).json()["api_key"]
    url = "/api/merchants/loja-push/products"
    await client.put(url, json={"products": [ucp_product("P1", "Borrifador Quixotesco", 5000)]},
                     headers=key_header(key))
    await client.put(url, json={"products": [ucp_product("P1", "Borrifador Quixotesco", 7000)]},
                     headers=key_header(key))
    from catalog.search import SearchRequest

    [hit] = demo_runtime.search.search(SearchRequest(market="BR", currency="BRL",
                                                     terms=["quixotesco"]))
    assert hit.product.price_amount == 7000
    response = await client.request("DELETE", url, json={"ids": ["P1", "NOPE"]},
                                    headers=key_header(key))
    assert response.json()["deleted"] == 1 and response.json()["errors"][0]["id"] == "NOPE"
    assert demo_runtime.search.search(SearchRequest(market="BR", currency="BRL",
                                                    terms=["quixotesco"])) == []


async def test_push_needs_the_merchants_own_key(client):
    key_a = (await register(client)).json()["api_key"]
    await register(client, name="Outra Loja")
    batch = {"products": [ucp_product("P1")]}
    for headers in ({}, key_header("vk_wrong"), key_header(key_a)):
        response = await client.put("/api/merchants/outra-loja/products", json=batch,
                                    headers=headers)
        assert response.status_code == 401, headers
    missing = await client.put("/api/merchants/nobody/products", json=batch,
                               headers=key_header(key_a))
    assert missing.status_code == 404


async def test_a_batch_with_nothing_valid_is_a_422_and_changes_nothing(client, demo_runtime):
    key = (await register(client)).json()["api_key"]
    response = await client.put("/api/merchants/loja-push/products",
                                json={"products": [{"id": "x"}]}, headers=key_header(key))
    assert response.status_code == 422 and response.json()["upserted"] == 0
    empty = await client.put("/api/merchants/loja-push/products", json={"products": []},
                             headers=key_header(key))
    assert empty.status_code == 422


async def test_health_is_for_the_admin_or_the_merchant(client):
    key = (await register(client)).json()["api_key"]
    await client.put("/api/merchants/loja-push/products",
                     json={"products": [ucp_product("P1")]}, headers=key_header(key))
    mine = await client.get("/api/merchants/loja-push/health", headers=key_header(key))
    assert mine.status_code == 200
    body = mine.json()
    assert body["status"] == "ok" and body["product_count"] == 1 and body["kind"] == "push"
    admin = await client.get("/api/merchants/loja-push/health",
                             headers={"Authorization": f"Bearer {ADMIN}"})
    assert admin.status_code == 200
    assert (await client.get("/api/merchants/loja-push/health")).status_code == 401


async def test_a_feed_merchant_registers_with_its_first_import(client):
    from tests.feed_server import running_feed_server

    tsv = b"id\ttitle\tprice\tlink\n1\tCaneca\t10.00 BRL\thttps://x.example/1\n2\tX\tfree\t\n"
    with running_feed_server() as feeds:
        feeds.publish("/catalog.tsv", tsv, {"Content-Type": "text/tab-separated-values"})
        response = await register(client, name="Loja Feed", kind="feed",
                                  feed_url=feeds.url("/catalog.tsv"), refresh="6h")
        broken = await register(client, name="Loja Quebrada", kind="feed",
                                feed_url=feeds.url("/missing.tsv"))
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["feed"]["imported"] == 1 and body["feed"]["errors"][0]["line"] == 3
    assert body["merchant"]["refresh_seconds"] == 6 * 3600
    assert broken.status_code == 400 and "404" in broken.json()["reason"]


async def test_an_mcp_merchant_registers_only_after_the_conformance_check(client):
    from tests.fake_ucp_server import FakeUcpServer
    from tests.loopback import serve

    with serve(FakeUcpServer().app) as good, serve(FakeUcpServer(mode="invalid").app) as bad:
        ok = await register(client, name="Live Shop", market="US", kind="mcp",
                            mcp_url=f"{good}/mcp")
        refused = await register(client, name="Bad Shop", market="US", kind="mcp",
                                 mcp_url=f"{bad}/mcp")
    assert ok.status_code == 201 and ok.json()["conformance"]["ok"] is True
    assert refused.status_code == 422
    assert refused.json()["error"] == "conformance_failed"
    assert "FAIL" in refused.json()["report"]
    assert (await client.get("/api/merchants/bad-shop/health",
                             headers={"Authorization": f"Bearer {ADMIN}"})).status_code == 404


async def test_each_bad_pushed_item_is_its_own_error(client):
    key = (await register(client)).json()["api_key"]
    batch = {"products": [ucp_product("OK"), 5, "text", None,
                          ucp_product("JS", url="javascript:alert(1)")]}
    response = await client.put("/api/merchants/loja-push/products", json=batch,
                                headers=key_header(key))
    report = response.json()
    assert response.status_code == 200 and report["upserted"] == 1
    assert [e["index"] for e in report["errors"]] == [1, 2, 3, 4]
    assert "http" in report["errors"][3]["reason"]


async def test_products_cannot_be_pushed_to_a_feed_merchant(client, demo_runtime):
    from catalog.merchants import issue_api_key
    from catalog.store import get_merchant
    from core.db import session_scope

    with session_scope(demo_runtime.engine) as session:
        key = issue_api_key(get_merchant(session=session, slug="giftwell"))
    response = await client.put("/api/merchants/giftwell/products",
                                json={"products": [ucp_product("X", currency="USD")]},
                                headers=key_header(key))
    assert response.status_code == 400 and "feed" in response.json()["reason"]


async def test_a_merchant_sponsors_its_own_products_and_the_card_says_so(client, demo_runtime):
    key = (await register(client)).json()["api_key"]
    products = [ucp_product(f"CAN-{i}", f"Caneca de cerâmica modelo {i}", 5000 + i,
                            tags=[], metadata={"brand": f"Marca {i}"}) for i in range(4)]
    await client.put("/api/merchants/loja-push/products", json={"products": products},
                     headers=key_header(key))

    response = await client.put("/api/merchants/loja-push/sponsored",
                                json={"product_ids": ["CAN-3", "NOPE"]}, headers=key_header(key))
    assert response.status_code == 200
    assert response.json()["sponsored"] == ["CAN-3"] and response.json()["unknown"] == ["NOPE"]
    listed = await client.get("/api/merchants/loja-push/sponsored", headers=key_header(key))
    assert listed.json()["sponsored"] == ["CAN-3"]

    reply = await client.post("/api/chat", json={"user": "web:sp", "text": "caneca de cerâmica",
                                                 "market": "BR"})
    cards = [c for m in reply.json()["messages"] for c in m["cards"]]
    sponsored = [c for c in cards if c["sponsored"]]
    assert len(sponsored) == 1 and sponsored[0]["label"] == "Patrocinado"
    assert not cards[0]["sponsored"]


async def test_sponsoring_needs_the_merchants_key_and_known_products(client, demo_runtime):
    key = (await register(client)).json()["api_key"]
    response = await client.put("/api/merchants/loja-push/sponsored",
                                json={"product_ids": ["X"]}, headers=key_header("vk_wrong"))
    assert response.status_code == 401
    response = await client.put("/api/merchants/loja-push/sponsored",
                                json={"product_ids": ["NOPE"]}, headers=key_header(key))
    assert response.status_code == 422 and response.json()["unknown"] == ["NOPE"]
    response = await client.put("/api/merchants/loja-push/sponsored",
                                json={"product_ids": [f"P{i}" for i in range(51)]},
                                headers=key_header(key))
    assert response.status_code == 422 and "50" in response.json()["reason"]
    response = await client.put("/api/merchants/loja-push/sponsored",
                                json={"product_ids": [""]}, headers=key_header(key))
    assert response.status_code == 422 and response.json()["reason"]



async def test_sponsoring_only_unknown_products_changes_nothing(client, demo_runtime):
    key = (await register(client)).json()["api_key"]
    await client.put("/api/merchants/loja-push/products", json={"products": [
        ucp_product("CAN-1", "Caneca", 5000, tags=[])]}, headers=key_header(key))
    await client.put("/api/merchants/loja-push/sponsored", json={"product_ids": ["CAN-1"]},
                     headers=key_header(key))
    response = await client.put("/api/merchants/loja-push/sponsored",
                                json={"product_ids": ["NOPE"]}, headers=key_header(key))
    assert response.status_code == 422 and response.json()["sponsored"] == ["CAN-1"]
    listed = await client.get("/api/merchants/loja-push/sponsored", headers=key_header(key))
    assert listed.json()["sponsored"] == ["CAN-1"]


async def test_a_deleted_product_is_no_longer_sponsored_even_if_pushed_again(client,
                                                                             demo_runtime):
    key = (await register(client)).json()["api_key"]
    product = ucp_product("CAN-1", "Caneca", 5000, tags=[])
    await client.put("/api/merchants/loja-push/products", json={"products": [product]},
                     headers=key_header(key))
    await client.put("/api/merchants/loja-push/sponsored", json={"product_ids": ["CAN-1"]},
                     headers=key_header(key))
    await client.request("DELETE", "/api/merchants/loja-push/products",
                         json={"ids": ["CAN-1"]}, headers=key_header(key))
    listed = await client.get("/api/merchants/loja-push/sponsored", headers=key_header(key))
    assert listed.json()["sponsored"] == []
    await client.put("/api/merchants/loja-push/products", json={"products": [product]},
                     headers=key_header(key))
    listed = await client.get("/api/merchants/loja-push/sponsored", headers=key_header(key))
    assert listed.json()["sponsored"] == []
