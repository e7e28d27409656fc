"""The ops reports over HTTP, from a real conversation: a sponsored card bought and paid,
every report's numbers, CSV exports, the ops token on every route, and each merchant seeing
its own visibility only."""

from __future__ import annotations

import csv
import io

import pytest

from tests.catalog.test_api import key_header
from tests.ops.conftest import OPS
from tests.test_end_to_end import chat

pytestmark = pytest.mark.anyio

REPORTS = ["/api/ops/funnel", "/api/ops/funnel/day", "/api/ops/funnel/channel",
           "/api/ops/funnel/market", "/api/ops/funnel/merchant", "/api/ops/merchants",
           "/api/ops/placements", "/api/ops/gaps", "/api/ops/cost", "/api/ops/events.csv"]


async def test_every_ops_route_needs_the_ops_token(client):
    for path in REPORTS:
        assert (await client.get(path)).status_code == 401, path
        wrong = await client.get(path, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.json()["error"] == "unauthorized", path
        assert (await client.get(path, headers=OPS)).status_code == 200, path


async def test_reports_count_what_the_shopper_saw_bought_and_paid(client, sold):
    placements = {r["placement"]: r for r in
                  (await client.get("/api/ops/placements", headers=OPS)).json()}
    total_price = sold["sponsored"]["price"]["amount"]
    assert placements["sponsored"]["impressions"] == 1
    assert (placements["sponsored"]["clicks"], placements["sponsored"]["paid_orders"]) == (1, 1)
    assert placements["sponsored"]["revenue"]["BRL"] >= total_price  # plus any delivery
    assert placements["organic"]["impressions"] == len(sold["cards"]) - 1
    assert placements["organic"]["paid_orders"] == 0

    merchants = {r["merchant"]: r for r in
                 (await client.get("/api/ops/merchants", headers=OPS)).json()}
    mine = merchants["loja-push"]
    assert mine["impressions"] == sum(c["merchant_id"] == "loja-push" for c in sold["cards"])
    assert (mine["clicks"], mine["checkouts"], mine["paid_orders"]) == (1, 1, 1)

    funnel = (await client.get("/api/ops/funnel", headers=OPS)).json()
    assert funnel["stages"]["messages"] == 2 and funnel["stages"]["paid"] == 1
    assert funnel["no_results"] == 1
    [day] = (await client.get("/api/ops/funnel/day", headers=OPS)).json()
    assert (day["messages"], day["paid"]) == (2, 1)
    [web] = (await client.get("/api/ops/funnel/channel", headers=OPS)).json()
    assert web["key"] == "web" and web["clicks"] == 1
    [gap] = (await client.get("/api/ops/gaps", headers=OPS)).json()
    assert gap["requests"] == 1 and gap["text"] is None  # words are not kept by default


async def test_filters_narrow_reports_and_bad_ones_are_refused(client, sold):
    none = await client.get("/api/ops/funnel/day", headers=OPS,
                            params={"from": "2020-01-01", "to": "2020-01-02"})
    assert none.json() == []
    assert (await client.get("/api/ops/merchants", headers=OPS,
                             params={"channel": "tg"})).json() == []
    backwards = await client.get("/api/ops/merchants", headers=OPS,
                                 params={"from": "2026-02-01", "to": "2026-01-01"})
    assert backwards.status_code == 400 and "after" in backwards.json()["reason"]
    by_what = await client.get("/api/ops/funnel/colour", headers=OPS)
    assert by_what.status_code == 422
    merchant_funnel = await client.get("/api/ops/funnel", headers=OPS,
                                       params={"merchant": "loja-push"})
    assert merchant_funnel.status_code == 400


async def test_every_report_exports_as_csv(client, sold):
    merchants = await client.get("/api/ops/merchants", headers=OPS, params={"format": "csv"})
    assert merchants.headers["content-type"].startswith("text/csv")
    rows = {r["merchant"]: r for r in csv.DictReader(io.StringIO(merchants.text))}
    assert rows["loja-push"]["paid_orders"] == "1" and "revenue_BRL" in rows["loja-push"]
    events = await client.get("/api/ops/events.csv", headers=OPS)
    lines = list(csv.DictReader(io.StringIO(events.text)))
    assert {"message_received", "cards_shown", "card_clicked", "order_paid"} <= \
        {line["kind"] for line in lines}
    assert "text" not in lines[0]  # exports never carry shoppers' words


async def test_a_merchant_sees_its_own_visibility_and_nothing_of_others(client, sold):
    own = await client.get("/api/merchants/loja-push/visibility",
                           headers=key_header(sold["key"]),
                           params={"merchant": "jardim-e-cia"})  # asking for another: ignored
    [row] = own.json()
    assert row["merchant"] == "loja-push" and row["paid_orders"] == 1
    other = await client.get("/api/merchants/jardim-e-cia/visibility",
                             headers=key_header(sold["key"]))
    assert other.status_code == 401
    assert (await client.get("/api/merchants/loja-push/visibility")).status_code == 401
    assert (await client.get("/api/merchants/loja-push/visibility",
                             headers=OPS)).status_code == 401


async def test_words_are_kept_only_where_the_deployment_opts_in_and_go_with_forget(
        client, demo_runtime):
    from sqlmodel import Session, select

    from ops.events import ConversionEvent

    demo_runtime.assistant.settings = demo_runtime.settings.model_copy(
        update={"ops_store_text": True})
    await chat(client, text="pneu de trator", market="BR", user="kept")
    [gap] = (await client.get("/api/ops/gaps", headers=OPS)).json()
    assert gap["text"] == "pneu de trator"
    events = await client.get("/api/ops/events.csv", headers=OPS)
    gaps_csv = await client.get("/api/ops/gaps", headers=OPS, params={"format": "csv"})
    assert "pneu" not in events.text and "pneu" not in gaps_csv.text  # exports never do
    await chat(client, text="/esquecer", user="kept")
    [gap] = (await client.get("/api/ops/gaps", headers=OPS)).json()
    assert gap["text"] is None and gap["requests"] == 1  # counted still, words gone
    with Session(demo_runtime.engine) as session:
        assert session.exec(select(ConversionEvent).where(
            ConversionEvent.text.is_not(None))).all() == []  # type: ignore[union-attr]


async def test_times_with_a_zone_are_read_in_utc_and_impossible_ones_refused(client, sold):
    utc = (await client.get("/api/ops/funnel", headers=OPS)).json()
    shifted = (await client.get("/api/ops/funnel", headers=OPS, params={
        "from": "1999-12-31T21:00:00-03:00"})).json()
    assert shifted["stages"] == utc["stages"]
    for bad in ("9999-12-31T12:00", "1900-01-01"):
        response = await client.get("/api/ops/funnel", headers=OPS, params={"from": bad})
        assert response.status_code == 400 and "1970" in response.json()["reason"]
    cost = await client.get("/api/ops/cost", headers=OPS, params={"merchant": "loja-push"})
    assert cost.status_code == 400
