"""Memory's share of a request's cost and latency, for shoppers who remember 0 to 500 facts.

    .venv/bin/python bench/memory_cost.py [--repeat 5] [--sizes 0,10,100,500]

Runs on the demo catalog in a temporary SQLite database (nothing is written to the repo).
For each size, two shoppers are seeded with the same facts (interests, dislikes, brands
liked and avoided, ages, birthdays, sizes, the usual budget and products turned down, about
eight people and the shopper) and, from 100 facts on, the same gift history (paid orders of
demo products bought for those people, one per 20 facts). Then the same pt/es/en requests
(some naming a remembered person, some not) are sent, in the same round and in rotating
order, three ways:

- with memory: `Assistant.recommend(text, market=..., user_key=<shopper A>)`;
- the peer: the same `recommend` without a user, so no memory at all;
- the memory step alone, on shopper B: what `recommend` does with a user between
  understanding and search (`memory.learn`, `memory.recall` which calls `summarize`, the
  one-time notice check, in a transaction of its own) and `memory.apply` on the search
  request, each timed. Shopper B gets the same requests as A in the same order, so it learns
  and rewrites exactly what A does.

One warm-up round (the index is built, what the requests state is learned), then `--repeat`
timed rounds. The summary each request gets is measured on the memory step's `recall`: its
number of facts and `MemorySummary.tokens`, against the tokens of the raw history (every
fact and gift stored, counted the same way, `memory.fact_tokens`), which is what a language
model would be sent if memory were not summarised.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlmodel import Session, select

from bot import memory
from bot.intent import lexicon
from bot.llm_intent import SYSTEM_PROMPT, understanding_schema
from bot.memory import SHOPPER, FactKind
from bot.models import GiftRecord, MemoryFact
from catalog.models import CatalogProduct, Merchant
from catalog.product_types import product_types
from checkout.models import Order, OrderStatus
from core.db import session_scope, utcnow
from core.markets import get_market
from core.settings import Settings
from vitrine.runtime import Runtime, build_runtime, seed_demo

SEED = 20261129
# (market, request, the person it names as memory stores them, or None)
REQUESTS = [
    ("BR", "presente para minha mãe de 60 anos até R$200", "mother"),
    ("BR", "algo para meu pai que gosta de churrasco", "father"),
    ("BR", "presente para minha irmã", "sister"),
    ("BR", "fone de ouvido bluetooth até R$300", None),
    ("BR", "kit jardinagem", None),
    ("AR", "regalo para mi abuela de 80", "grandmother"),
    ("AR", "mate para mi hermano", "brother"),
    ("AR", "algo para mi esposa que le gusta el yoga", "wife"),
    ("US", "I need a birthday gift for my mom", "mother"),
    ("US", "gift for a colleague under $30", "colleague"),
    ("US", "coffee lover gift around 40 bucks", None),
    ("US", "headphones", None),
]
# Who the facts are about, weighted: the shopper's parents come up most.
SUBJECTS = {"mother": 5, "father": 4, "sister": 2, "brother": 2, "grandmother": 2, "wife": 3,
            "friend": 2, "colleague": 1, SHOPPER: 4}
PERSON_KINDS = {FactKind.INTEREST: 8, FactKind.DISLIKE: 5, FactKind.LIKES_BRAND: 2,
                FactKind.AVOIDS_BRAND: 2, FactKind.AGE: 1, FactKind.BIRTHDAY: 1,
                FactKind.SIZE: 1}
SHOPPER_KINDS = {FactKind.TURNED_DOWN: 6, FactKind.LIKES_BRAND: 2, FactKind.AVOIDS_BRAND: 2,
                 FactKind.BUDGET: 1}
WAYS = ("memory", "no_user", "step")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


# ---- seeding ------------------------------------------------------------------------------

def demo_products(runtime: Runtime) -> list[tuple[str, CatalogProduct]]:
    with Session(runtime.engine) as session:
        rows = session.exec(select(Merchant.slug, CatalogProduct)
                            .join(CatalogProduct, CatalogProduct.merchant_id == Merchant.id)
                            .order_by(CatalogProduct.id)).all()
        for _, product in rows:
            session.expunge(product)
    return [(slug, product) for slug, product in rows]


def fact_stream(count: int, products: list[tuple[str, CatalogProduct]]
                ) -> list[tuple[str, FactKind, str]]:
    """`count` distinct facts, the same for the same count (one value per single-valued kind
    and person, no brand both liked and avoided by the same person)."""
    rng = random.Random(SEED + count)
    brands = sorted({b.casefold() for b in lexicon()["brands"]["anywhere"]}
                    | {p.brand.casefold() for _, p in products if p.brand})
    pools = {
        FactKind.INTEREST: sorted(lexicon()["interests"]),
        # Kinds of product, and now and then a whole group ("nada de roupa").
        FactKind.DISLIKE: list(product_types().type_names + product_types().group_names),
        FactKind.LIKES_BRAND: brands, FactKind.AVOIDS_BRAND: brands,
        FactKind.AGE: [str(a) for a in range(8, 90)],
        FactKind.BIRTHDAY: [f"{m:02d}" for m in range(1, 13)]
        + [f"{m:02d}-{d:02d}" for m in range(1, 13) for d in (3, 15, 28)],
        FactKind.SIZE: ["size:p", "size:m", "size:g", "size:38", "size:40", "size:42"],
        FactKind.TURNED_DOWN: [f"{slug}:{p.product_id}" for slug, p in products],
        FactKind.BUDGET: ["20000 BRL", "15000 BRL", "5000000 ARS", "4000 USD"],
    }
    chosen: dict[tuple[str, str, str], None] = {}
    while len(chosen) < count:
        subject = rng.choices(list(SUBJECTS), weights=list(SUBJECTS.values()))[0]
        kinds = SHOPPER_KINDS if subject == SHOPPER else PERSON_KINDS
        kind = rng.choices(list(kinds), weights=list(kinds.values()))[0]
        value = rng.choice(pools[kind])
        if kind in memory.SINGLE_VALUED and any(
                s == subject and k == kind for s, k, _ in chosen):
            continue
        if kind == FactKind.SIZE and rng.random() < 0.5 and any(
                s == subject and k == kind for s, k, _ in chosen):
            continue  # a person has a size or two, not dozens
        opposite = {FactKind.LIKES_BRAND: FactKind.AVOIDS_BRAND,
                    FactKind.AVOIDS_BRAND: FactKind.LIKES_BRAND}.get(kind)
        if opposite and (subject, opposite, value) in chosen:
            continue
        chosen.setdefault((subject, kind, value))
    return list(chosen)


def seed_shopper(runtime: Runtime, *, user_key: str, count: int,
                 products: list[tuple[str, CatalogProduct]]) -> int:
    """Store `count` facts, told over the last months (newest last), and one gift per 20
    facts; returns the number of gifts."""
    now = utcnow()
    facts = fact_stream(count, products)
    rng = random.Random(SEED - count)
    people = [s for s in SUBJECTS if s != SHOPPER]
    with session_scope(runtime.engine) as session:
        for at, (subject, kind, value) in enumerate(facts):
            session.add(MemoryFact(user_key=user_key, subject=subject, kind=kind, value=value,
                                   source=None,
                                   created_at=now - timedelta(hours=6 * (count - at))))
        gifts = count // 20
        for at in range(gifts):
            slug, product = rng.choice(products)
            order_id = f"ord_{user_key.replace(':', '_')}_{at}"
            market = {"BRL": "BR", "ARS": "AR", "USD": "US"}[product.currency]
            session.add(Order(
                id=order_id, user_key=user_key, conversation_id="cnv_bench", market=market,
                language=get_market(market).language, merchant_slug=slug,
                merchant_name=slug, product_id=product.product_id, title=product.title,
                amount=product.price_amount, total=product.price_amount,
                currency=product.currency, rail="sandbox", status=OrderStatus.PAID,
                paid_at=now))
            session.add(GiftRecord(user_key=user_key, subject=rng.choice(people),
                                   order_id=order_id,
                                   created_at=now - timedelta(days=7 * (gifts - at))))
    return gifts


# ---- the three ways of asking -------------------------------------------------------------

def memory_step(runtime: Runtime, text: str, market_code: str, user_key: str) -> dict:
    """What `Assistant.recommend` does with memory, step by step, timed (ms)."""
    assistant = runtime.assistant
    market = get_market(market_code)
    intent = assistant.parser.parse(text, market=market)
    times: dict[str, float] = {}
    started = time.perf_counter()
    with session_scope(runtime.engine) as writer:
        mark = time.perf_counter()
        learned = memory.learn(session=writer, user_key=user_key, intent=intent, source=text)
        times["learn_ms"] = (time.perf_counter() - mark) * 1000
        mark = time.perf_counter()
        summary = memory.recall(session=writer, user_key=user_key, intent=intent)
        times["recall_ms"] = (time.perf_counter() - mark) * 1000
        if learned:
            memory.should_tell_about_memory(session=writer, user_key=user_key)
    transaction = (time.perf_counter() - started) * 1000
    request = assistant.search_request(intent, market)
    mark = time.perf_counter()
    memory.apply(summary, intent, request)
    times["apply_ms"] = (time.perf_counter() - mark) * 1000
    times["step_ms"] = transaction + times["apply_ms"]
    return {**times, "wrote": bool(learned), "facts": len(summary.facts),
            "tokens": summary.tokens, "gifts": len(summary.gifts),
            "shopper_facts": sum(f.subject == SHOPPER for f in summary.facts),
            "turned_down": sum(f.kind == FactKind.TURNED_DOWN for f in summary.facts)}


def ask(runtime: Runtime, way: str, text: str, market_code: str, users: dict[str, str]
        ) -> tuple[float, dict | None]:
    """One request one way; its time in ms, and the memory step's details."""
    market = get_market(market_code)
    started = time.perf_counter()
    if way == "memory":
        runtime.assistant.recommend(text, market=market, user_key=users["memory"])
    elif way == "no_user":
        runtime.assistant.recommend(text, market=market)
    else:
        step = memory_step(runtime, text, market_code, users["step"])
        return step["step_ms"], step
    return (time.perf_counter() - started) * 1000, None


def understanding_prompt_tokens(text: str, market_code: str) -> int:
    """What the language-model intent parser sends for one message today (system prompt,
    answer schema, message), estimated as `MemorySummary.tokens` estimates (4 chars each).
    It sends no memory yet: the summary would be added to this."""
    market = get_market(market_code)
    sent = SYSTEM_PROMPT.format(market=market.name, currency=market.currency) + json.dumps(
        understanding_schema()) + text
    return len(sent) // 4


def raw_history_tokens(runtime: Runtime, user_key: str) -> tuple[int, int, int]:
    """Facts and gifts stored, and what all of them cost a language model, counted as
    `MemorySummary.tokens` counts the summary."""
    with Session(runtime.engine) as session:
        facts = memory.facts(session=session, user_key=user_key)
        gifts = memory.gifts(session=session, user_key=user_key)
    tokens = sum(memory.fact_tokens(f) for f in facts) + sum(
        len(g.title) // 4 + 2 for g in gifts)
    return len(facts), len(gifts), tokens


def run(repeat: int, sizes: list[int]) -> dict:
    with tempfile.TemporaryDirectory(prefix="vitrine-memory-") as tmp:
        runtime = build_runtime(Settings(env="test", database_url=f"sqlite:///{tmp}/bench.db"))
        try:
            seed_demo(runtime)
            products = demo_products(runtime)
            shoppers: dict[int, dict[str, str]] = {}
            seeded: dict[int, dict] = {}
            for size in sizes:
                shoppers[size] = {"memory": f"bench:{size}:a", "step": f"bench:{size}:b"}
                for user_key in shoppers[size].values():
                    gifts = seed_shopper(runtime, user_key=user_key, count=size,
                                         products=products)
                seeded[size] = {"facts": size, "gifts": gifts}
            return measure(runtime, shoppers, seeded, repeat)
        finally:
            runtime.close()


def measure(runtime: Runtime, shoppers: dict[int, dict[str, str]], seeded: dict[int, dict],
            repeat: int) -> dict:
    latency = {size: {way: [] for way in WAYS} for size in shoppers}
    steps: dict[int, list[dict]] = {size: [] for size in shoppers}
    started_all = time.perf_counter()
    for round_number in range(repeat + 1):  # round 0 is the warm-up
        at = 0
        for market_code, text, person in REQUESTS:
            for size, users in shoppers.items():
                turn = (at + round_number) % len(WAYS)
                for way in WAYS[turn:] + WAYS[:turn]:
                    elapsed, step = ask(runtime, way, text, market_code, users)
                    if round_number:
                        latency[size][way].append(elapsed)
                        if step is not None:
                            steps[size].append({**step, "person": person})
                at += 1
    prompt = round(statistics.median(understanding_prompt_tokens(text, market_code)
                                     for market_code, text, _ in REQUESTS))
    results: dict = {"repeat": repeat, "requests": len(REQUESTS),
                     "llm_understanding_prompt_tokens_p50": prompt,
                     "elapsed_s": round(time.perf_counter() - started_all, 1), "sizes": {}}
    for size, users in shoppers.items():
        facts_a, gifts_a, raw_tokens = raw_history_tokens(runtime, users["memory"])
        facts_b, gifts_b, _ = raw_history_tokens(runtime, users["step"])
        taken = steps[size]
        named = [s for s in taken if s["person"]]

        def stat(values: list[float]) -> dict:
            return {"median": round(statistics.median(values), 3),
                    "p95": round(percentile(values, 0.95), 3)}

        with_memory = stat(latency[size]["memory"])
        no_user = stat(latency[size]["no_user"])
        step = stat([s["step_ms"] for s in taken])
        tokens = [s["tokens"] for s in taken]
        results["sizes"][size] = {
            "seeded": seeded[size], "stored_after": {"facts": facts_a, "gifts": gifts_a},
            "stored_after_step_shopper": {"facts": facts_b, "gifts": gifts_b},
            "samples": len(latency[size]["memory"]),
            "recommend_with_memory_ms": with_memory, "recommend_no_user_ms": no_user,
            "ratio_with_to_without": {
                k: round(with_memory[k] / no_user[k], 2) for k in ("median", "p95")},
            "memory_step_ms": step,
            "learn_ms": stat([s["learn_ms"] for s in taken]),
            "recall_ms": stat([s["recall_ms"] for s in taken]),
            "apply_ms": stat([s["apply_ms"] for s in taken]),
            "step_share_of_request_median": round(step["median"] / with_memory["median"], 3),
            "requests_that_wrote": sum(s["wrote"] for s in taken),
            "summary_facts": {"p50": statistics.median(s["facts"] for s in taken),
                              "max": max(s["facts"] for s in taken)},
            "summary_tokens": {"p50": statistics.median(tokens), "max": max(tokens)},
            "summary_gifts_max": max(s["gifts"] for s in taken),
            "shopper_facts_in_summary_naming_person": {
                "p50": statistics.median(s["shopper_facts"] for s in named),
                "min": min(s["shopper_facts"] for s in named)},
            "turned_down_in_summary_naming_person_max": max(s["turned_down"] for s in named),
            "about_person_in_summary_naming_person_p50": statistics.median(
                s["facts"] - s["shopper_facts"] for s in named),
            "raw_history_tokens": raw_tokens,
            "llm_prompt_share": {
                "summary": round(statistics.median(tokens) / (prompt + statistics.median(tokens)),
                                 3),
                "raw": round(raw_tokens / (prompt + raw_tokens), 3)},
            "raw_to_summary_tokens_p50": round(raw_tokens / statistics.median(tokens), 1)
            if statistics.median(tokens) else None,
        }
    return results


def markdown(results: dict) -> str:
    lines = [
        "| Facts stored (seeded + learned) / gifts | Samples | recommend with memory, "
        "median / p95 ms | without a user, median / p95 ms | ratio median / p95 | memory step "
        "median / p95 ms (learn + recall + apply) | step / request | summary facts p50 / max "
        "| summary tokens p50 / max | raw history tokens | raw / summary |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for size, r in results["sizes"].items():
        w, n, s = (r["recommend_with_memory_ms"], r["recommend_no_user_ms"],
                   r["memory_step_ms"])
        lines.append(
            f"| {size} ({r['stored_after']['facts']}) / {r['stored_after']['gifts']} "
            f"| {r['samples']} | {w['median']:.2f} / {w['p95']:.2f} "
            f"| {n['median']:.2f} / {n['p95']:.2f} "
            f"| {r['ratio_with_to_without']['median']:.2f} / "
            f"{r['ratio_with_to_without']['p95']:.2f} "
            f"| {s['median']:.2f} / {s['p95']:.2f} ({r['learn_ms']['median']:.2f} + "
            f"{r['recall_ms']['median']:.2f} + {r['apply_ms']['median']:.2f}) "
            f"| {100 * r['step_share_of_request_median']:.0f} % "
            f"| {r['summary_facts']['p50']:g} / {r['summary_facts']['max']} "
            f"| {r['summary_tokens']['p50']:g} / {r['summary_tokens']['max']} "
            f"| {r['raw_history_tokens']} | {r['raw_to_summary_tokens_p50'] or '-'} |")
    prompt = results["llm_understanding_prompt_tokens_p50"]
    lines += [
        "",
        f"| Facts stored | Language-model request today (~{prompt:g} tokens) + summary p50 "
        "| + raw history | memory's share, summary / raw | summary naming a person: about "
        "them p50 / shopper's own p50 (min) / turned-down max | gifts in summary, max |",
        "|---|---|---|---|---|---|",
    ]
    for r in results["sizes"].values():
        summary = r["summary_tokens"]["p50"]
        lines.append(
            f"| {r['stored_after']['facts']} | {prompt + summary:g} "
            f"| {prompt + r['raw_history_tokens']:g} "
            f"| {100 * r['llm_prompt_share']['summary']:.0f} % / "
            f"{100 * r['llm_prompt_share']['raw']:.0f} % "
            f"| {r['about_person_in_summary_naming_person_p50']:g} / "
            f"{r['shopper_facts_in_summary_naming_person']['p50']:g} "
            f"({r['shopper_facts_in_summary_naming_person']['min']}) / "
            f"{r['turned_down_in_summary_naming_person_max']} "
            f"| {r['summary_gifts_max']} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--sizes", default="0,10,100,500")
    args = parser.parse_args()
    results = run(args.repeat, [int(s) for s in args.sizes.split(",") if s])
    print(json.dumps(results, indent=2, ensure_ascii=False))
    print()
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
