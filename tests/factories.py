"""Factories for test data: UCP products and feed files."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any


def ucp_product(id: str = "P-1", title: str = "Regador de Metal 2 L", amount: int = 8990,
                currency: str = "BRL", available: bool = True, tags: list[str] | None = None,
                rating: float | None = 4.5, **extra: Any) -> dict:
    """A valid UCP catalog product; keyword arguments override or add fields."""
    product: dict[str, Any] = {
        "id": id,
        "title": title,
        "description": {"plain": f"{title}, descrição de teste."},
        "url": f"https://shop.example/p/{id}",
        "categories": [{"value": "Jardim > Ferramentas", "taxonomy": "merchant"}],
        "media": [{"type": "image", "url": f"https://shop.example/img/{id}.jpg"}],
        "variants": [{"id": id, "title": title,
                      "price": {"amount": amount, "currency": currency},
                      "availability": {"available": available}}],
        "tags": tags if tags is not None else ["jardinagem", "interest:gardening"],
        "metadata": {"brand": "Tramontina"},
    }
    if rating is not None:
        product["rating"] = {"value": rating, "scale_max": 5, "count": 100}
    product.update(extra)
    return product


def write_jsonl(path: Path, rows: list[dict | str], *, gz: bool = False) -> Path:
    """Write rows (dicts as JSON, strings verbatim) one per line."""
    text = "".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n"
                   for r in rows)
    return _write(path, text, gz=gz)


def _write(path: Path, text: str, *, gz: bool) -> Path:
    if gz:
        with gzip.open(path, "wt", encoding="utf-8") as fh:
            fh.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


GMC_HEADER = ["id", "title", "description", "link", "image_link", "availability", "price",
              "brand", "product_type", "custom_label_0"]


def write_tsv(path: Path, rows: list[list[str]], header: list[str] | None = None,
              *, gz: bool = False) -> Path:
    lines = ["\t".join(header or GMC_HEADER)] + ["\t".join(r) for r in rows]
    return _write(path, "\n".join(lines) + "\n", gz=gz)
