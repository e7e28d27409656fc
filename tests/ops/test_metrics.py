"""`GET /metrics`: Prometheus' text format, open or behind a token, and what each family counts."""


import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import app_client
from tests.test_end_to_end import signed
from vitrine.runtime import build_runtime

pytestmark = pytest.mark.anyio

METRICS_TOKEN = "test-metrics-token-0123456789"
FAMILIES = {"vitrine_http_request_duration_seconds", "vitrine_recommendation_duration_seconds",
            "vitrine_live_merchant_duration_seconds", "vitrine_live_merchant_errors",
            "vitrine_webhook_failures", "vitrine_orders"}


async def scrape(client: httpx.AsyncClient) -> dict[tuple[str, frozenset], float]:
    """Every sample of `/metrics`, by name and labels."""
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(response.text)
            for s in family.samples}


def sample(samples: dict, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


async def chat(client: httpx.AsyncClient, user: str, **payload: str) -> list[dict]:
    response = await client.post("/api/chat", json={"user": user, **payload})
    assert response.status_code == 200, response.text
    return response.json()["messages"]



async def test_metrics_are_open_by_default_and_list_every_family(client):
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    names = {family.name for family in text_string_to_metric_families(response.text)}
    assert FAMILIES <= names


async def test_metrics_need_the_token_when_one_is_set(settings):
    runtime = build_runtime(settings.model_copy(update={"metrics_token": METRICS_TOKEN}))
    try:
        async with app_client(runtime) as client:
            for headers in ({}, {"Authorization": "Bearer wrong-token"}):
                refused = await client.get("/metrics", headers=headers)
                assert refused.status_code == 401
                assert refused.json()["error"] == "unauthorized"
            allowed = await client.get(
                "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
            assert allowed.status_code == 200 and "vitrine_orders" in allowed.text
    finally:
        runtime.close()


async def test_a_request_is_timed_under_its_route_template_not_its_path(client):
    assert (await client.get("/api/orders/ord-123")).status_code == 401
    assert (await client.get("/no/such/page")).status_code == 404
    assert (await client.delete("/healthz")).status_code == 405
    assert (await client.get("/media/demo/beauty.svg")).status_code == 200
    samples = await scrape(client)
    count = "vitrine_http_request_duration_seconds_count"
    assert sample(samples, count, method="GET", route="/api/orders/{order_id}",
                  status="401") == 1
    assert sample(samples, count, method="GET", route="unmatched", status="404") == 1
    assert sample(samples, count, method="DELETE", route="/healthz", status="405") == 1
    assert sample(samples, count, method="GET", route="/media/demo/{path}", status="200") == 1
    assert not any(raw in value for _, labels in samples for _, value in labels
                   for raw in ("ord-123", "/no/such", "beauty.svg"))


async def test_a_chat_answer_is_timed_as_a_recommendation(client):
    before = sample(await scrape(client), "vitrine_recommendation_duration_seconds_count")
    messages = await chat(client, "u1", text="presente para minha mãe até R$200", market="BR")
    assert any(m["cards"] for m in messages)
    after = sample(await scrape(client), "vitrine_recommendation_duration_seconds_count")
    assert (before, after) == (0, 1)


async def test_a_payment_webhook_with_a_bad_signature_is_counted_as_a_failure(client):
    body, headers = signed({"event_id": "evt-1", "txid": "nothing", "status": "paid"},
                           secret="not-the-sandbox-secret")
    response = await client.post("/api/payments/sandbox/webhook", content=body,
                                 headers=headers)
    assert response.status_code == 401
    samples = await scrape(client)
    assert sample(samples, "vitrine_webhook_failures_total", source="sandbox",
                  reason="signature") == 1


async def test_a_webhook_for_an_unknown_rail_is_counted_without_its_name(client):
    response = await client.post("/api/payments/made-up/webhook", content=b"{}")
    assert response.status_code == 404
    samples = await scrape(client)
    assert sample(samples, "vitrine_webhook_failures_total", source="unknown",
                  reason="invalid") == 1


async def test_orders_are_counted_by_status(client):
    for user, confirm in (("u1", True), ("u2", False)):
        messages = await chat(client, user, text="presente para minha mãe até R$200",
                              market="BR")
        buy = next(c for m in messages for c in m["cards"])["buttons"][0]["action"]
        [confirmation] = await chat(client, user, action=buy)
        if confirm:
            action = next(b["action"] for b in confirmation["buttons"]
                          if b["action"].startswith("confirm:"))
            await chat(client, user, action=action)
    samples = await scrape(client)
    assert sample(samples, "vitrine_orders", status="awaiting_payment") == 1
    assert sample(samples, "vitrine_orders", status="awaiting_confirmation") == 1
    assert sample(samples, "vitrine_orders", status="paid") == 0


async def test_a_live_merchants_answers_are_timed(live_runtime, client):
    await chat(client, "u1", text="copper watering can", market="US")
    samples = await scrape(client)
    assert sample(samples, "vitrine_live_merchant_duration_seconds_count",
                  merchant="fake-shop", operation="search") == 1
    assert sample(samples, "vitrine_live_merchant_errors_total",
                  merchant="fake-shop", operation="search") is None


async def test_a_live_merchants_failures_are_counted(live_runtime, client, shop):
    shop.mode = "erroring"
    await chat(client, "u1", text="copper watering can", market="US")
    samples = await scrape(client)
    assert sample(samples, "vitrine_live_merchant_errors_total",
                  merchant="fake-shop", operation="search") == 1
    assert sample(samples, "vitrine_live_merchant_duration_seconds_count",
                  merchant="fake-shop", operation="search") == 1
