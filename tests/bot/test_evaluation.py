"""The multilingual gift set: its labels, the runner's metrics, and `vitrine eval --gifts`."""

import json
import math
from collections import Counter
from pathlib import Path

import pytest

from bot.evaluation import (
    GiftRequest,
    ShownCard,
    load_gift_set,
    run_gift_set,
    score_request,
    summarise,
)
from bot.intent import lexicon
from core.errors import InvalidInput
from core.money import Money
from vitrine.cli import main
from vitrine.runtime import Runtime

GIFT_SET = Path(__file__).resolve().parents[1] / "data" / "gifts" / "requests.jsonl"
MARKET_LANGUAGE = {"BR": "pt", "AR": "es", "US": "en"}

# Requests that break a hard rule today, and why. Each is a gap in understanding, not in the
# labels: remove a line once it holds. A request not listed here must never break one.
# Requests known to break a hard rule, with why; empty since every one was fixed.
KNOWN_VIOLATIONS: dict[str, str] = {}


def write_set(path: Path, *lines: dict | str) -> Path:
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n"
                            for line in lines), encoding="utf-8")
    return path


def line(id_="pt-001", market="BR", text="presente pra minha mãe até 100 reais", **expect):
    if "intent" not in expect:
        expect["intent"] = {"language": MARKET_LANGUAGE[market]}
    expect.setdefault("relevant", {})
    return {"id": id_, "market": market, "text": text, "expect": expect}


def card(ref, amount, currency="BRL", title="Produto", categories="Casa"):
    return ShownCard(ref=ref, title=title, categories=categories, amount=amount,
                     currency=currency)


# -- the shipped set -----------------------------------------------------------------------

def test_the_shipped_set_has_enough_requests_in_each_language_and_its_market():
    requests = load_gift_set(GIFT_SET)
    assert len(requests) >= 90
    assert all(count >= 30 for count in Counter(r.language for r in requests).values())
    assert {r.language for r in requests} == {"pt", "es", "en"}
    for request in requests:
        assert MARKET_LANGUAGE[request.market.code] == request.language, request.id
        assert request.id.startswith(f"{request.language}-"), request.id
    assert sum(not r.answerable for r in requests) >= 3  # some have no good answer


def test_the_shipped_intents_use_canonical_values():
    lex = lexicon()
    for request in load_gift_set(GIFT_SET):
        for name, kind in (("recipient", "recipients"), ("occasion", "occasions")):
            if name in request.intent:
                assert request.intent[name] in lex[kind], (request.id, name)
        interests = request.intent.get("interests", frozenset())
        assert isinstance(interests, frozenset)
        assert interests <= set(lex["interests"]), request.id
        budget = request.intent.get("budget")
        if isinstance(budget, Money):
            assert budget.amount > 0, request.id


def test_every_label_is_a_demo_product_a_shopper_could_be_shown(demo_runtime: Runtime):
    """Catches label rot: a renamed, moved, repriced or sold-out product fails here."""
    for request in load_gift_set(GIFT_SET):
        for ref, label in request.relevant.items():
            product = demo_runtime.federated.product(request.market.code, ref)
            where = f"{request.id} labels {ref}"
            assert product is not None, f"{where}: no such product in {request.market.code}"
            assert product.currency == request.market.currency, where
            assert product.in_stock, f"{where}: it is out of stock"
            if request.max_price is not None and label:
                assert product.price_amount <= request.max_price, f"{where}: over the budget"
            shown = card(ref, product.price_amount, product.currency, product.title,
                         product.categories)
            result = score_request(request, intent={}, cards=[shown])
            assert not result.violations, f"{where}: it breaks the request's own rules"


def test_the_shipped_set_breaks_no_hard_rule(demo_runtime: Runtime):
    report = run_gift_set(demo_runtime.assistant, load_gift_set(GIFT_SET))
    broken = {v.request for v in report.violations}
    new = {v for v in report.violations if v.request not in KNOWN_VIOLATIONS}
    assert not new, f"new hard-rule violations: {new}"
    if broken:
        pytest.xfail("hard rules broken today by " + "; ".join(
            f"{rid}: {KNOWN_VIOLATIONS[rid]}" for rid in sorted(broken)))


# -- the metrics, on requests with known answers -------------------------------------------

def tiny_set(tmp_path: Path) -> list[GiftRequest]:
    return load_gift_set(write_set(
        tmp_path / "tiny.jsonl",
        {"_doc": "three requests with known answers"},
        line("pt-1", "BR", "presente pra minha mãe que ama jardinagem, até 100 reais",
             intent={"recipient": "mother", "interests": ["gardening"], "language": "pt",
                     "budget": {"amount": 10000, "currency": "BRL"},
                     "product_types": ["watering can"]},
             relevant={"m:x": 2, "m:y": 1, "m:z": 2}),
        "",
        line("en-1", "US", "a speaker for my dad",
             intent={"recipient": "father", "product_types": ["speaker"], "language": "en"},
             relevant={"g:a": 2, "g:b": 1}),
        line("en-2", "US", "a PS5 for my son, no books, around $50",
             intent={"budget": {"amount": 5000, "currency": "USD"}, "language": "en"},
             max_price=6000, excluded_words=["book", "video game"], relevant={"g:b": 1}),
    ))


def test_metrics_of_requests_with_known_answers(tmp_path):
    pt, en1, en2 = tiny_set(tmp_path)
    results = [
        score_request(pt, cards=[card("m:y", 5000), card("m:w", 9000), card("m:x", 10000)],
                      intent={"recipient": "mother", "interests": ["gardening", "home"],
                              "budget": {"currency": "BRL", "min": None, "max": 10000,
                                         "amount": 10000}, "language": "pt"},
                      latency_ms=2.0),
        score_request(en1, cards=[card("g:a", 12995, "USD")],
                      intent={"recipient": "father", "product_types": ["Speakers"],
                              "language": "pt"}, latency_ms=4.0),
        score_request(en2, latency_ms=6.0, intent={"budget": None, "language": "en"}, cards=[
            card("g:b", 4999, "USD", "Braiding Sweetgrass", "Books > Nature"),
            card("g:c", 6500, "USD", "Instax Mini", "Electronics > Cameras"),
            card("g:d", 100, "BRL", "Video Game Controller", "Games"),
        ]),
    ]
    # pt-1: only x of the three cards is great; gains 1, 0, 3 against the ideal 3, 3, 1.
    assert results[0].precision == pytest.approx(1 / 3)
    ideal = 3 + 3 / math.log2(3) + 1 / 2
    assert results[0].ndcg == pytest.approx((1 + 3 / 2) / ideal)
    checks = {name: c.outcome for name, c in results[0].intent.items()}
    assert checks == {"recipient": "right", "interests": "wrong", "budget": "right",
                      "product_types": "missing", "language": "right"}
    # en-1: the great answer comes first, the acceptable one is missing; lists compare
    # stemmed and case-blind.
    en1_ndcg = 3 / (3 + 1 / math.log2(3))
    assert results[1].precision == pytest.approx(1 / 3)
    assert results[1].ndcg == pytest.approx(en1_ndcg)
    assert results[1].intent["product_types"].outcome == "right"
    assert results[1].intent["language"].outcome == "wrong"
    # en-2 has no great answer: no ranking numbers, but every hard rule applies.
    assert results[2].precision is None and results[2].ndcg is None
    assert [(v.ref, v.rule) for v in results[2].violations] == [
        ("g:b", "excluded"), ("g:c", "budget"), ("g:d", "currency"), ("g:d", "excluded")]

    report = summarise(results)
    assert list(report.groups) == ["pt", "en", "overall"]
    overall, en = report.groups["overall"], report.groups["en"]
    assert (overall.requests, overall.ranked, overall.violations) == (3, 2, 4)
    assert overall.precision_at_3 == pytest.approx(1 / 3)
    assert overall.ndcg_at_3 == pytest.approx(((1 + 3 / 2) / ideal + en1_ndcg) / 2)
    assert overall.intent["language"] == (2, 3, 0)
    assert overall.intent["product_types"] == (1, 2, 1)
    assert overall.intent["budget"] == (1, 2, 0)
    assert overall.intent_all_right == 0
    assert (en.unanswerable, en.unanswerable_with_cards) == (1, 1)
    assert (overall.p50_ms, overall.p95_ms) == (4.0, 6.0)
    assert [r.request.id for r in report.worst()] == ["en-2", "pt-1", "en-1"]
    text = report.as_text()
    assert "precision@3" in text and "overall" in text and "g:c: budget" in text
    assert "no field product_types" in text
    assert json.loads(json.dumps(report.as_dict()))["groups"]["pt"]["ndcg@3"] == \
        round(results[0].ndcg or 0, 3)


def test_the_price_ceiling_is_the_stated_budget_unless_the_line_says_otherwise(tmp_path):
    requests = load_gift_set(write_set(
        tmp_path / "s.jsonl",
        line("a", intent={"language": "pt", "budget": {"amount": 15000, "currency": "BRL"}}),
        line("b", intent={"language": "pt", "budget": {"amount": 15000, "currency": "BRL"}},
             max_price=None),
        line("c", "AR", "hasta 50 dolares",
             intent={"language": "es", "budget": {"amount": 5000, "currency": "USD"}}),
        line("d", max_price=18000),
    ))
    assert [r.max_price for r in requests] == [15000, None, None, 18000]


# -- malformed sets ------------------------------------------------------------------------

@pytest.mark.parametrize(("bad", "says"), [
    ("{not json", "not JSON"),
    ('["a list"]', "JSON object"),
    (line(id_=""), "`id`"),
    (line(market="XX", intent={"language": "pt"}), "XX"),
    (line(text=" "), "`text`"),
    ({"id": "x", "market": "BR", "text": "oi"}, "`expect`"),
    ({**line(), "extra": 1}, "unknown keys"),
    (line(intent={"recipient": "mother"}), "intent.language"),
    (line(intent={"language": "fr"}), "intent.language"),
    (line(intent={"language": "pt", "mood": "happy"}), "unknown intent fields"),
    (line(intent={"language": "pt", "budget": {"amount": 10.5, "currency": "BRL"}}),
     "minor units"),
    (line(intent={"language": "pt", "budget": {"amount": 100}}), "intent.budget"),
    (line(intent={"language": "pt", "age": "sixty"}), "intent.age"),
    (line(intent={"language": "pt", "interests": "gardening"}), "intent.interests"),
    (line(relevant={"JC-0001": 2}), "merchant-slug:product-id"),
    (line(relevant={"m:p": 3}), "labelled 0, 1 or 2"),
    (line(max_price="cem"), "max_price"),
    (line(excluded_words="perfume"), "excluded_words"),
    (line(surprise=True), "unknown keys in expect"),
])
def test_a_malformed_line_is_refused_naming_the_line(tmp_path, bad, says):
    path = write_set(tmp_path / "bad.jsonl", {"_doc": "x"}, line(id_="ok"), bad)
    with pytest.raises(InvalidInput) as err:
        load_gift_set(path)
    assert f"{path}, line 3:" in err.value.reason and says in err.value.reason


def test_a_repeated_id_an_empty_set_or_a_missing_file_is_refused(tmp_path):
    with pytest.raises(InvalidInput, match="line 2: id 'a' is used twice"):
        load_gift_set(write_set(tmp_path / "twice.jsonl", line("a"), line("a")))
    with pytest.raises(InvalidInput, match="no requests"):
        load_gift_set(write_set(tmp_path / "empty.jsonl", {"_doc": "nothing"}))
    with pytest.raises(InvalidInput, match="cannot read gift set"):
        load_gift_set(tmp_path / "absent.jsonl")


# -- the command ---------------------------------------------------------------------------

def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_eval_gifts_reports_the_shipped_set_as_json(capsys):
    code, out, _ = run(capsys, "eval", "--gifts", str(GIFT_SET), "--json")
    report = json.loads(out)
    assert set(report["groups"]) == {"pt", "es", "en", "overall"}
    overall = report["groups"]["overall"]
    assert overall["requests"] == len(load_gift_set(GIFT_SET)) == len(report["results"])
    assert 0 <= overall["precision@3"] <= 1 and 0 <= overall["ndcg@3"] <= 1
    assert overall["intent"]["language"]["total"] == overall["requests"]
    # Nonzero exactly when a hard rule broke, so scripts can stop on it.
    assert code == (1 if report["violations"] else 0)
    assert {v["request"] for v in report["violations"]} <= set(KNOWN_VIOLATIONS)


def test_eval_gifts_prints_a_table_per_language(capsys, tmp_path):
    path = write_set(tmp_path / "s.jsonl",
                     line("pt-1", "BR", "kit de jardinagem pra minha mãe",
                          intent={"recipient": "mother", "language": "pt"},
                          relevant={"jardim-e-cia:JC-0001": 2}),
                     line("en-1", "US", "pruning shears for my dad",
                          intent={"recipient": "father", "language": "en"},
                          relevant={"giftwell:GW-0001": 2}))
    code, out, err = run(capsys, "eval", "--gifts", str(path))
    assert code == 0 and err == ""
    header = out.splitlines()[0].split()
    assert header == ["pt", "en", "overall"]
    assert "Hard-rule violations: none" in out and "latency p95 ms" in out


def test_eval_gifts_with_a_bad_file_says_why_without_a_traceback(capsys, tmp_path):
    path = write_set(tmp_path / "bad.jsonl", line(), line(relevant={"m:p": 7}))
    code, out, err = run(capsys, "eval", "--gifts", str(path))
    assert code == 1 and out == ""
    assert err.startswith("vitrine: error:") and "line 2" in err and "Traceback" not in err
    code, _, err = run(capsys, "eval", "--gifts", str(tmp_path / "absent.jsonl"))
    assert code == 1 and "cannot read gift set" in err


def test_eval_needs_one_mode(capsys, tmp_path):
    code, _, err = run(capsys, "eval")
    assert code == 1 and "--gifts FILE, --dialogues FILE, or --feed" in err
    code, _, err = run(capsys, "eval", "--gifts", str(GIFT_SET), "--market", "BR")
    assert code == 1 and "one of --gifts" in err
