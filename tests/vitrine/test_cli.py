"""The `vitrine` command's public contract."""

import json

import pytest

from core.settings import get_settings
from tests.factories import ucp_product, write_jsonl
from vitrine.cli import main
from vitrine.runtime import DEMO_DIR

CARD_KEYS = {"product_id", "merchant", "title", "price", "price_text", "url", "image_url",
             "reason", "sponsored"}


@pytest.fixture
def db(monkeypatch, database_url):
    monkeypatch.setenv("VITRINE_DATABASE_URL", database_url)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def add_demo_us(capsys):
    return run(capsys, "merchants", "add", "Giftwell", "--market", "US", "--feed",
               str(DEMO_DIR / "feeds" / "giftwell.jsonl"), "--base-url", "http://localhost")


def test_merchants_add_and_list(db, capsys):
    code, out, _ = add_demo_us(capsys)
    assert code == 0 and "imported 47" in out
    code, out, _ = run(capsys, "merchants", "list", "--json")
    [row] = json.loads(out)
    assert row["name"] == "Giftwell" and row["market"] == "US" and row["products"] == 47


def test_recommend_prints_one_json_object_with_the_card_contract(db, capsys):
    add_demo_us(capsys)
    code, out, _ = run(capsys, "recommend", "birthday gift for my 60-year-old mom",
                       "--market", "US", "--json")
    assert code == 0
    result = json.loads(out)
    assert set(result) >= {"query", "market", "intent", "cards", "reply"}
    assert result["market"] == "US" and len(result["cards"]) == 3
    for card in result["cards"]:
        assert CARD_KEYS <= set(card)
        assert isinstance(card["price"]["amount"], int) and card["price"]["currency"] == "USD"
    assert result["intent"]["recipient"] == "mother" and result["intent"]["age"] == 60


def test_recommend_batch_prints_json_lines_in_order(db, capsys, tmp_path):
    add_demo_us(capsys)
    batch = tmp_path / "queries.txt"
    batch.write_text("coffee\n\nheadphones\nlego\n", encoding="utf-8")
    code, out, _ = run(capsys, "recommend", "--batch", str(batch), "--market", "US",
                       "--limit", "10", "--json")
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [r["query"] for r in lines] == ["coffee", "headphones", "lego"]
    assert all(len(r["cards"]) <= 10 for r in lines)


def test_recommend_with_a_user_remembers(db, capsys):
    add_demo_us(capsys)
    run(capsys, "recommend", "my mom is 60 and loves gardening", "--market", "US",
        "--user", "u1", "--json")
    _, out, _ = run(capsys, "recommend", "gift for my mom", "--market", "US", "--user", "u1",
                    "--json")
    assert json.loads(out)["intent"]["interests"] == ["gardening"]


def test_other_commands_never_seed_the_demo(db, capsys):
    code, out, _ = run(capsys, "recommend", "gift for mom", "--market", "US", "--json")
    assert code == 0 and json.loads(out)["cards"] == []
    _, out, _ = run(capsys, "merchants", "list", "--json")
    assert json.loads(out) == []


@pytest.mark.parametrize("argv, reason", [
    (["merchants", "add", "Shop", "--market", "XX", "--feed", "x.jsonl"], "unknown market"),
    (["merchants", "add", "Shop", "--market", "BR", "--feed", "missing.jsonl"], "not found"),
    (["recommend", "x", "--market", "ZZ", "--json"], "unknown market"),
    (["recommend", "--batch", "missing.txt", "--market", "US"], "cannot read"),
])
def test_errors_exit_non_zero_with_one_line(db, capsys, argv, reason):
    code, out, err = run(capsys, *argv)
    assert code != 0 and out == ""
    assert len(err.strip().splitlines()) == 1 and reason in err


def test_a_bad_feed_is_refused_and_nothing_is_registered(db, capsys, tmp_path):
    feed = write_jsonl(tmp_path / "bad.jsonl", ["not json", "{}"])
    code, _, err = run(capsys, "merchants", "add", "Shop", "--market", "BR", "--feed", str(feed))
    assert code == 1 and "no valid products" in err
    _, out, _ = run(capsys, "merchants", "list", "--json")
    assert json.loads(out) == []


def test_partially_bad_feed_reports_lines(db, capsys, tmp_path):
    feed = write_jsonl(tmp_path / "f.jsonl", [ucp_product("A"), "oops"])
    code, out, _ = run(capsys, "merchants", "add", "Shop", "--market", "BR", "--feed", str(feed))
    assert code == 0 and "line 2" in out and "rejected 1" in out


def test_terminal_chat_runs_a_purchase_to_paid(db, capsys, tmp_path):
    import io

    from bot.channels.terminal import run_terminal_chat
    from vitrine.cli import pay_latest_order
    from vitrine.runtime import build_runtime, seed_demo

    runtime = build_runtime()
    seed_demo(runtime)
    out = io.StringIO()
    # 1 = Buy on the first card, then 1 = Confirm, then /pay.
    run_terminal_chat(runtime.assistant, user="t", market="BR", locale=None, stdout=out,
                      pay=lambda user_key: pay_latest_order(runtime, user_key),
                      stdin=io.StringIO("presente para minha mãe até R$200\n1\n1\n/pay\n"))
    text = out.getvalue()
    assert "000201" in text and "-> 200" in text
    assert "Pagamento confirmado" in text


def test_serve_seeds_the_demo_into_an_empty_database_only(db, capsys):
    from sqlmodel import Session

    from catalog.store import list_merchants
    from vitrine.cli import prepare_serve

    runtime = prepare_serve(host="127.0.0.1", port=9999, demo=False)
    with Session(runtime.engine) as session:
        assert list_merchants(session=session) == []
    runtime = prepare_serve(host="127.0.0.1", port=9999, demo=True)
    with Session(runtime.engine) as session:
        merchants = list_merchants(session=session)
    assert {m.market for m in merchants} == {"BR", "AR", "US"}
    assert runtime.settings.public_url == "http://127.0.0.1:9999"
    runtime.search.index("BR")
    card = runtime.search.index("BR").products[0]
    assert card.image_url.startswith("http://127.0.0.1:9999/media/demo/")


@pytest.mark.parametrize("text", ["", "🎁🎉"])
def test_recommend_without_a_request_shows_no_cards_and_says_what_to_ask(db, capsys, text):
    add_demo_us(capsys)
    code, out, _ = run(capsys, "recommend", text, "--market", "US", "--json")
    result = json.loads(out)
    assert code == 0 and result["cards"] == [] and "For example" in result["reply"]


def test_merchants_add_a_feed_url_with_refresh_then_sync_and_remove(db, capsys):
    from tests.feed_server import running_feed_server

    tsv = (b"id\ttitle\tprice\tlink\n1\tCaneca Azul\t10.00 BRL\thttps://x.example/1\n"
           b"2\tCaneca Verde\t12.00 BRL\thttps://x.example/2\n")
    with running_feed_server() as feeds:
        feeds.publish("/catalog.tsv", tsv, {"Content-Type": "text/tab-separated-values"})
        code, out, _ = run(capsys, "merchants", "add", "Loja URL", "--market", "BR",
                           "--feed", feeds.url("/catalog.tsv"), "--refresh", "1h", "--json")
        assert code == 0 and json.loads(out)["imported"] == 2
        code, out, _ = run(capsys, "merchants", "sync", "loja-url", "--json")
        assert code == 0 and json.loads(out)["status"] == "not_modified"
        feeds.publish("/catalog.tsv", tsv.replace(b"Verde", b"Rosa"))
        code, out, _ = run(capsys, "merchants", "sync", "--all", "--json")
        assert code == 0 and json.loads(out)["imported"] == 2
        _, out, _ = run(capsys, "merchants", "list", "--json")
        [row] = json.loads(out)
        assert row["refresh_seconds"] == 3600 and row["feed"] == feeds.url("/catalog.tsv")
        feeds.publish("/catalog.tsv", b"", status=500, etag=False)
        code, _, err = run(capsys, "merchants", "sync", "loja-url")
        assert code == 1 and "500" in err
    code, out, _ = run(capsys, "merchants", "check", "loja-url")
    assert code == 1 and '"degraded"' in out
    code, out, _ = run(capsys, "merchants", "remove", "loja-url")
    assert code == 0 and "2 products" in out
    _, out, _ = run(capsys, "merchants", "list", "--json")
    assert json.loads(out) == []


@pytest.mark.parametrize("argv, reason", [
    (["merchants", "add", "X", "--market", "BR", "--feed", "f.jsonl", "--refresh", "1h"],
     "feed URL"),
    (["merchants", "add", "X", "--market", "BR", "--feed", "https://x.example/f.jsonl",
      "--refresh", "soon"], "refresh interval"),
    (["merchants", "add", "X", "--market", "BR", "--feed", "ftp://x.example/f.jsonl"],
     "ftp"),
    (["merchants", "sync"], "--all"),
    (["merchants", "remove", "nobody"], "unknown merchant"),
])
def test_merchant_command_errors_are_one_line(db, capsys, argv, reason):
    code, out, err = run(capsys, *argv)
    assert code != 0 and len(err.strip().splitlines()) == 1 and reason in err, err


def test_an_mcp_merchant_registered_from_the_cli_is_recommended_live(db, capsys):
    from tests.fake_ucp_server import FakeUcpServer
    from tests.loopback import serve

    shop = FakeUcpServer()
    with serve(shop.app) as base:
        code, out, err = run(capsys, "merchants", "add", "Fake Shop", "--market", "US",
                             "--mcp", f"{base}/mcp")
        assert code == 0, err
        assert "registered" in out and "PASS" in out.upper()
        code, out, _ = run(capsys, "recommend", "copper watering can", "--market", "US",
                           "--json")
        result = json.loads(out)
        card = result["cards"][0]
        assert (card["product_id"], card["merchant"]) == ("WCAN", "Fake Shop")
        assert card["price"] == {"amount": 4500, "currency": "USD"}
        searches = shop.calls("search_catalog")
        assert searches and searches[-1]["meta"]["ucp-agent"]["profile"]
        assert searches[-1]["catalog"]["context"]["address_country"] == "US"

        shop.mode = "hanging"
        code, out, _ = run(capsys, "recommend", "copper watering can", "--market", "US",
                           "--json")
        result = json.loads(out)
        assert any("Fake Shop" in note for note in result["notes"])
        assert all(c["merchant"] != "Fake Shop" for c in result["cards"])


def test_an_mcp_server_that_fails_conformance_is_not_registered(db, capsys):
    from tests.fake_ucp_server import FakeUcpServer
    from tests.loopback import serve

    with serve(FakeUcpServer(mode="erroring").app) as base:
        code, out, err = run(capsys, "merchants", "add", "Bad Shop", "--market", "US",
                             "--mcp", f"{base}/mcp")
    assert code == 1 and "conformance" in err
    _, out, _ = run(capsys, "merchants", "list", "--json")
    assert json.loads(out) == []


def test_the_demo_merchants_sync_again_with_their_relative_links(db, capsys):
    from vitrine.cli import prepare_serve

    prepare_serve(host="127.0.0.1", port=9999, demo=True)
    code, out, err = run(capsys, "merchants", "sync", "--all", "--json")
    assert code == 0, err
    assert [json.loads(line)["rejected"] for line in out.splitlines()] == [0, 0, 0, 0]


def test_a_live_merchant_with_duplicate_ids_can_be_searched_and_removed(db, capsys):
    from tests.fake_ucp_server import CATALOG, FakeUcpServer
    from tests.loopback import serve

    with serve(FakeUcpServer(catalog=CATALOG + CATALOG[:1]).app) as base:
        assert run(capsys, "merchants", "add", "Dup Shop", "--market", "US", "--mcp",
                   f"{base}/mcp", "--force")[0] == 0
        code, out, _ = run(capsys, "recommend", "copper watering can", "--market", "US",
                           "--json")
        assert code == 0 and json.loads(out)["cards"][0]["product_id"] == "WCAN"
        code, out, err = run(capsys, "merchants", "add", "Dup Shop", "--market", "US",
                             "--feed", str(DEMO_DIR / "feeds" / "giftwell.jsonl"), "--replace")
        assert code == 1 and "mcp merchant" in err
    code, out, err = run(capsys, "merchants", "remove", "dup-shop")
    assert code == 0, err


def test_a_runtime_nobody_closed_does_not_keep_the_process_alive(database_url):
    import subprocess
    import sys

    script = (
        "from core.settings import Settings\n"
        "from vitrine.runtime import build_runtime\n"
        f"r = build_runtime(Settings(env='test', database_url={database_url!r}))\n"
        "async def nothing():\n    return 1\n"
        "assert r.call_live(nothing) == 1\n"
        "print('done')\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0 and "done" in result.stdout


def test_eval_scores_a_feed_against_judgments(db, capsys, tmp_path):
    feed = write_jsonl(tmp_path / "f.jsonl", [
        ucp_product("NB", "Notebook Lenovo IdeaPad", 299900, tags=[]),
        ucp_product("SLV", "Capa para Notebook", 9900, tags=[]),
        ucp_product("MUG", "Caneca de porcelana", 4900, tags=[]),
    ])
    judgments = tmp_path / "j.csv"
    judgments.write_text("query,product_id,rating\nnotebook,NB,3\nnotebook,SLV,1\n"
                         "caneca,MUG,3\nnothing,MUG,0\n", encoding="utf-8")
    code, out, _ = run(capsys, "eval", "--feed", str(feed), "--market", "BR",
                       "--judgments", str(judgments))
    result = json.loads(out)
    assert code == 0 and result["queries"] == 2
    assert result["ndcg@10"] == 1.0 and result["precision@3"] == pytest.approx(1 / 3, abs=1e-3)
    bad = tmp_path / "bad.csv"
    bad.write_text("q,id\n", encoding="utf-8")
    code, _, err = run(capsys, "eval", "--feed", str(feed), "--market", "BR",
                       "--judgments", str(bad))
    assert code == 1 and "query,product_id,rating" in err


def test_a_reader_that_stops_early_gets_no_traceback(tmp_path, database_url):
    import os
    import subprocess
    import sys

    batch = tmp_path / "queries.txt"
    batch.write_text("presente para minha mãe\n" * 400, encoding="utf-8")
    env = {**os.environ, "VITRINE_DATABASE_URL": database_url}
    proc = subprocess.Popen(
        [sys.executable, "-m", "vitrine.cli", "recommend", "--batch", str(batch), "--market",
         "BR", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=tmp_path)
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline()  # like `| head -1`: read one answer, then hang up
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0 and "Traceback" not in err, err


def test_memory_purge_deletes_what_is_past_the_retention(db, capsys, monkeypatch):
    from datetime import timedelta

    from sqlmodel import Session

    from bot.models import MemoryFact
    from core.db import utcnow
    from vitrine.runtime import build_runtime

    runtime = build_runtime()
    with Session(runtime.engine) as session:
        session.add(MemoryFact(user_key="web:ana", subject="mother", kind="age", value="60",
                               created_at=utcnow() - timedelta(days=40)))
        session.add(MemoryFact(user_key="web:ana", subject="father", kind="age", value="62"))
        session.commit()
    runtime.close()
    code, out, _ = run(capsys, "memory", "purge")
    assert code == 0 and json.loads(out) == {"retention_days": 365, "deleted": 0}
    monkeypatch.setenv("VITRINE_MEMORY_RETENTION_DAYS", "30")
    get_settings.cache_clear()
    code, out, _ = run(capsys, "memory", "purge")
    assert code == 0 and json.loads(out) == {"retention_days": 30, "deleted": 1}
    code, _, err = run(capsys, "memory", "purge", "--days", "0")
    assert code == 1 and "--days" in err


def test_reminders_run_reports_what_it_sent(db, capsys):
    from vitrine.runtime import build_runtime, seed_demo

    runtime = build_runtime()
    seed_demo(runtime)
    runtime.assistant.handle(user_key="web:ana", text="o aniversário da minha mãe é dia 10 "
                             "de dezembro", market="BR")
    runtime.close()
    code, out, _ = run(capsys, "reminders", "run", "--today", "2026-12-01")
    assert code == 0 and json.loads(out) == {"sent": 1, "skipped": {}}
    code, out, _ = run(capsys, "reminders", "run", "--today", "2026-12-01")
    assert json.loads(out) == {"sent": 0, "skipped": {"already_sent": 1}}
    code, _, err = run(capsys, "reminders", "run", "--today", "tomorrow")
    assert code == 1 and "--today" in err


def test_eval_dialogues_plays_a_dialogue_file_and_reports_the_pass_rate(tmp_path, capsys):
    dialogue = {"id": "pt-x", "language": "pt", "market": "BR", "turns": [
        {"say": "presente para minha mãe que ama jardinagem",
         "expect": {"cards_min": 1, "recipient_in_reply": "mother"}},
        {"say": "mais barato", "expect": {"all_below_previous_cheapest": True}}]}
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps(dialogue, ensure_ascii=False) + "\n", "utf-8")
    code, out, _ = run(capsys, "eval", "--dialogues", str(path), "--json")
    assert code == 0 and json.loads(out)["rates"]["overall"] == {"passed": 1, "played": 1}
    path.write_text("{not json\n", "utf-8")
    code, _, err = run(capsys, "eval", "--dialogues", str(path))
    assert code == 1 and "line 1" in err
    code, _, err = run(capsys, "eval", "--dialogues", str(path), "--gifts", str(path))
    assert code == 1 and "one of" in err
