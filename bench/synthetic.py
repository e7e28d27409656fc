"""A synthetic catalog of any size, recombined from the Icecat products, deterministic by seed.

    .venv/bin/python bench/synthetic.py --products 1000000 --db var/bench/synthetic.db

Real text, real brands, new products: each synthetic product takes an Icecat product's title
and brand, gives its model codes new letters and digits (so the vocabulary grows with the
catalog, as a real one does: a million products carry about a million model codes), may add a
colour or capacity, and joins its description with part of another description of the same
brand. Categories come from the title's kind of product; prices, ratings, stock and the date
of the merchant's last update are drawn around the base product's. About one product in eight
carries gift tags (interest, recipient, age), as merchants' feeds do in the demo catalog.

The products are spread over `MERCHANTS` merchants (in blocks) of the US market and written through
`catalog.store.replace_catalog`, the same call a feed import ends in, with a UCP document of
realistic size per product.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import re
import sqlite3
import sys
import time
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy.engine import Engine
from sqlmodel import Session

from catalog.models import MerchantCreate
from catalog.store import ProductRow, create_merchant, replace_catalog
from core.settings import Settings
from vitrine.runtime import build_runtime

MERCHANTS = 8
SEED = 20261129
# "AA352186", "TN-2110", "C4872A", "2060": tokens with digits are model codes or sizes.
CODE_RE = re.compile(r"^(?=.*\d)[A-Za-z0-9-]{2,}$")
VARIANTS = ["Black", "White", "Silver", "Blue", "Red", "Grey", "Gold", "Green", "Pink",
            "64GB", "128GB", "256GB", "512GB", "1TB", "2-pack", "4-pack", "XL", "Mini", "Pro"]
# The kind of product a title names -> category path; the first that matches wins.
KINDS = [
    (("laptop", "notebook", "chromebook"), "Computers > Laptops"),
    (("desktop", "all-in-one", "workstation", "mini pc"), "Computers > Desktops"),
    (("monitor", "display"), "Computers > Monitors"),
    (("keyboard",), "Computers > Keyboards"),
    (("mouse", "mice"), "Computers > Mice"),
    (("toner", "ink", "cartridge", "drum"), "Office > Printer Supplies"),
    (("printer", "multifunction", "scanner"), "Office > Printers"),
    (("cable", "adapter", "connector"), "Electronics > Cables & Adapters"),
    (("battery", "batteries", "charger", "power bank", "ups"), "Electronics > Power"),
    (("headphone", "headset", "earbud", "speaker"), "Electronics > Audio"),
    (("camera", "lens", "webcam"), "Electronics > Cameras"),
    (("phone", "smartphone", "iphone"), "Electronics > Phones"),
    (("tv", "television", "projector"), "Electronics > TV & Video"),
    (("case", "sleeve", "bag", "backpack"), "Accessories > Bags & Cases"),
    (("ssd", "hard drive", "hdd", "memory", "usb flash", "card"), "Computers > Storage"),
    (("switch", "router", "access point", "network"), "Computers > Networking"),
    (("game", "console", "controller", "xbox", "playstation", "nintendo"), "Gaming"),
    (("coffee", "kettle", "toaster", "blender"), "Home > Kitchen Appliances"),
]
INTERESTS = [(("game", "gaming", "xbox", "playstation", "nintendo"), "interest:gaming"),
             (("camera", "lens", "photo"), "interest:photography"),
             (("headphone", "speaker", "audio", "earbud"), "interest:music"),
             (("coffee", "espresso"), "interest:coffee"),
             (("watch", "fitness", "sport"), "interest:fitness"),
             (("laptop", "tablet", "smart"), "interest:tech")]
RECIPIENTS = ["mother", "father", "friend", "partner", "teen", "colleague", "self",
              "grandmother", "brother", "sister"]
AGES = ["adult", "senior", "teen"]


def load_base(feed: Path) -> list[dict]:
    """The Icecat products, reduced to what the generator recombines."""
    base = []
    with gzip.open(feed, "rt", encoding="utf-8") as fh:
        for line in fh:
            p = json.loads(line)
            base.append({
                "title": p["title"], "brand": (p.get("metadata") or {}).get("brand"),
                "description": (p.get("description") or {}).get("plain", ""),
                "categories": [c["value"] for c in p.get("categories") or []],
                "price": (p.get("price_range") or {}).get("min", {}).get("amount", 1999)})
    return base


def _starts_word(words: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile(r"\b(?:" + "|".join(re.escape(w) for w in words) + ")")


KIND_RES = [(_starts_word(words), path) for words, path in KINDS]
INTEREST_RES = [(_starts_word(words), tag) for words, tag in INTERESTS]


def _kind(title: str) -> str:
    low = title.lower()
    for pattern, path in KIND_RES:
        if pattern.search(low):
            return path
    return "Electronics > Other"


def _mutate_code(code: str, rng: random.Random) -> str:
    out = []
    for ch in code:
        if ch.isdigit() and rng.random() < 0.5:
            out.append(str(rng.randrange(10)))
        elif ch.isalpha() and rng.random() < 0.3:
            letter = chr(ord("A") + rng.randrange(26))
            out.append(letter if ch.isupper() else letter.lower())
        else:
            out.append(ch)
    return "".join(out)


def synthetic_products(base: list[dict], count: int, *, seed: int = SEED,
                       now: datetime | None = None) -> Iterator[tuple[int, ProductRow]]:
    """(merchant number, row) for `count` products; `merchant_id` is left 0 for the caller."""
    rng = random.Random(seed)
    now = now or datetime(2026, 11, 29, tzinfo=UTC)
    by_brand: dict[str | None, list[int]] = {}
    for i, p in enumerate(base):
        by_brand.setdefault(p["brand"], []).append(i)
    for i in range(count):
        a = base[rng.randrange(len(base))]
        donors = by_brand[a["brand"]]
        b = base[donors[rng.randrange(len(donors))]]
        words = [(_mutate_code(w, rng) if CODE_RE.match(w) and rng.random() < 0.7 else w)
                 for w in a["title"].split()]
        if rng.random() < 0.3:
            words.append(VARIANTS[rng.randrange(len(VARIANTS))])
        title = " ".join(words)
        description = (a["description"] + " " + b["description"][:160]).strip()
        categories = " | ".join(a["categories"] or [_kind(title)])
        low = title.lower()
        tags = [a["brand"]] if a["brand"] else []
        if rng.random() < 0.125:
            tags += [tag for pattern, tag in INTEREST_RES if pattern.search(low)][:1]
            tags.append(f"recipient:{RECIPIENTS[rng.randrange(len(RECIPIENTS))]}")
            tags.append(f"age:{AGES[rng.randrange(len(AGES))]}")
        rated = rng.random() < 0.7
        merchant = i * MERCHANTS // count
        product_id = f"S{i}"
        price = max(99, int(a["price"] * rng.uniform(0.6, 1.5)))
        url = f"https://shop{merchant + 1}.example/p/{product_id}"
        yield merchant, {
            "merchant_id": 0, "product_id": product_id, "title": title,
            "description": description, "brand": a["brand"], "url": url,
            "image_url": f"https://cdn.shop{merchant + 1}.example/img/{product_id}.jpg",
            "categories": categories, "tags": tags, "price_amount": price, "currency": "USD",
            "in_stock": rng.random() < 0.94,
            "rating_value": round(min(5.0, max(1.0, rng.gauss(4.2, 0.5))), 1) if rated else None,
            "rating_scale": 5.0 if rated else None,
            "rating_count": int(rng.paretovariate(1.2) * 3) if rated else None,
            "document": {"id": product_id, "title": title, "description": {"plain": description},
                         "url": url, "categories": [{"value": categories}], "tags": tags,
                         "price_range": {"min": {"amount": price, "currency": "USD"},
                                         "max": {"amount": price, "currency": "USD"}},
                         "metadata": {"brand": a["brand"]},
                         "variants": [{"id": product_id, "title": title,
                                       "price": {"amount": price, "currency": "USD"}}]},
            "updated_at": now - timedelta(seconds=rng.uniform(0, 90 * 86400)),
        }


def write_catalog(*, database_url: str, feed: Path, count: int, seed: int = SEED) -> None:
    """Create `MERCHANTS` merchants in the US market and give them `count` products, each
    merchant's in one transaction, streamed."""
    runtime = build_runtime(Settings(env="test", database_url=database_url))
    products = synthetic_products(load_base(feed), count, seed=seed)
    pending = next(products, None)
    for number in range(MERCHANTS):
        with Session(runtime.engine) as session:
            merchant = create_merchant(session=session, merchant_in=MerchantCreate(
                slug=f"synth-{number + 1}", name=f"Synthetic Shop {number + 1}", market="US"))
            session.flush()

            def own_rows(merchant_id: int, number: int = number) -> Iterator[ProductRow]:
                nonlocal pending
                while pending is not None and pending[0] == number:
                    row = pending[1]
                    row["merchant_id"] = merchant_id
                    yield row
                    pending = next(products, None)

            replace_catalog(session=session, merchant=merchant, rows=own_rows(merchant.id or 0))
            session.commit()
    runtime.close()
    seal(runtime.engine)


def seal(engine: Engine) -> None:
    """Close every connection and fold the write-ahead log into the database file, so that
    the file alone holds the catalog and can be moved."""
    engine.dispose()
    if engine.url.database:
        with closing(sqlite3.connect(engine.url.database)) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            conn.execute("PRAGMA journal_mode=DELETE")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--products", type=int, default=1_000_000)
    parser.add_argument("--db", required=True, help="SQLite file to create")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--icecat", default=str(ROOT.parent / "shared" / "data" / "icecat"))
    args = parser.parse_args()
    started = time.perf_counter()
    write_catalog(database_url=f"sqlite:///{args.db}",
                  feed=Path(args.icecat) / "products.ucp.jsonl.gz", count=args.products,
                  seed=args.seed)
    print(json.dumps({"products": args.products, "db": args.db,
                      "seconds": round(time.perf_counter() - started, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
