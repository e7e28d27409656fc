"""Merchant API: registration with the admin token, pushed products with the merchant's key."""

import functools
from datetime import timedelta

import anyio
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
    ({"kind": "feed", "feed_url": "http://shop.example/feed.tsv"}, "must be https://"),
    ({"kind": "feed", "feed_url": "https://shop.example/feed.tsv", "refresh": "soon"},
     "refresh interval"),
    ({"kind": "mcp"}, "mcp_url"),
    ({"slug": "Not A Slug"}, "slug"),
])
async def test_bad_registrations_get_a_reason(client, body, reason):
    response = await register(client, **body)
    assert 400 <= response.status_code < 500 and reason in response.json()["reason"]
    # Refused at once, with nothing registered nor queued.
    assert (await client.get("/api/merchants/loja-push/health",
                             headers={"Authorization": f"Bearer {ADMIN}"})).status_code == 404


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


async def run_jobs(runtime, *, now=None) -> list:
    """Run the queued jobs as `vitrine worker` would (off the event loop: a feed sync runs
    its own)."""
    from vitrine.worker import JobWorker

    worker = JobWorker(runtime)
    return await anyio.to_thread.run_sync(functools.partial(worker.run_due, now=now))


async def health_of(client, slug: str) -> dict:
    response = await client.get(f"/api/merchants/{slug}/health",
                                headers={"Authorization": f"Bearer {ADMIN}"})
    assert response.status_code == 200, response.text
    return response.json()


async def test_a_feed_merchant_is_registered_at_once_and_imported_by_the_worker(
        client, demo_runtime):
    from tests.feed_server import running_feed_server

    tsv = b"id\ttitle\tprice\tlink\n1\tCaneca\t10.00 BRL\thttps://x.example/1\n2\tX\tfree\t\n"
    with running_feed_server() as feeds:
        feeds.publish("/catalog.tsv", tsv, {"Content-Type": "text/tab-separated-values"})
        response = await register(client, name="Loja Feed", kind="feed",
                                  feed_url=feeds.url("/catalog.tsv"), refresh="6h")
        assert feeds.requests == []  # nothing is downloaded inside the request
        assert response.status_code == 202, response.text
        body = response.json()
        assert body["merchant"]["refresh_seconds"] == 6 * 3600
        assert body["merchant"]["product_count"] == 0 and body["feed"] is None
        assert body["api_key"].startswith("vk_loja-feed_") and body["conformance"] is None
        assert body["sync"] == {"job": body["sync"]["job"], "status": "queued"}
        queued = await health_of(client, "loja-feed")
        assert queued["status"] == "never_synced"
        assert queued["sync"]["status"] == "queued" and queued["sync"]["job"] == \
            body["sync"]["job"]

        [(job, status)] = await run_jobs(demo_runtime)
    assert (job.kind, status) == ("feed_sync", "done")
    done = await health_of(client, "loja-feed")
    assert done["status"] == "ok" and done["product_count"] == 1 and done["rejected_count"] == 1
    assert done["sync"]["status"] == "done" and done["sync"]["error"] is None


async def test_a_bad_feed_ends_in_a_clear_failure_reason_in_the_health_report(
        client, demo_runtime):
    from core.db import utcnow
    from tests.feed_server import running_feed_server

    with running_feed_server() as feeds:
        response = await register(client, name="Loja Quebrada", kind="feed",
                                  feed_url=feeds.url("/missing.tsv"))
        assert response.status_code == 202, response.text
        await run_jobs(demo_runtime)
        first = await health_of(client, "loja-quebrada")
        # Tried again after a backoff (a feed server may be down for a minute); the reason
        # shows at once.
        assert first["sync"]["status"] == "queued" and first["sync"]["attempts"] == 1
        assert "404" in first["sync"]["error"] and "404" in first["last_error"]
        assert await run_jobs(demo_runtime) == []  # not before its backoff
        later = utcnow()
        for hours in (1, 2):
            await run_jobs(demo_runtime, now=later + timedelta(hours=hours))
    final = await health_of(client, "loja-quebrada")
    assert final["sync"]["status"] == "failed" and final["sync"]["attempts"] == 3
    assert "HTTP 404" in final["sync"]["error"] and final["product_count"] == 0
    assert final["status"] == "never_synced" and "404" in final["last_error"]


async def test_a_merchant_or_the_admin_queues_a_sync_once(client, demo_runtime):
    from tests.feed_server import running_feed_server

    with running_feed_server() as feeds:
        feeds.publish("/catalog.tsv", b"id\ttitle\tprice\tlink\n1\tCaneca\t10.00 BRL\t"
                                      b"https://x.example/1\n",
                      {"Content-Type": "text/tab-separated-values"})
        registered = (await register(client, name="Loja Feed", kind="feed",
                                     feed_url=feeds.url("/catalog.tsv"))).json()
        key, job = registered["api_key"], registered["sync"]["job"]
        url = "/api/merchants/loja-feed/sync"
        again = await client.post(url, headers=key_header(key))
        assert again.status_code == 202 and again.json() == {"job": job, "status": "queued"}
        await run_jobs(demo_runtime)
        admin = await client.post(url, headers={"Authorization": f"Bearer {ADMIN}"})
        assert admin.status_code == 202 and admin.json()["status"] == "queued"
        [(_, status)] = await run_jobs(demo_runtime)
    assert status == "done" and len(feeds.requests) == 2
    assert (await client.post(url, headers=key_header("vk_wrong"))).status_code == 401
    assert (await client.post(url)).status_code == 401
    push_key = (await register(client)).json()["api_key"]
    refused = await client.post("/api/merchants/loja-push/sync", headers=key_header(push_key))
    assert refused.status_code == 400 and "no feed" in refused.json()["reason"]


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
