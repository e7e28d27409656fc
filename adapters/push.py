"""Products pushed by a merchant over Vitrine's API, in ACP feed-style batches.

A batch is `{"products": [UCP product, ...]}` (upsert) or `{"ids": [...]}` (delete). Each item
is validated on its own: a bad item is reported with its index and reason while the good ones
are applied.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from adapters.product import Product, validation_reason

MAX_BATCH = 1000


class UpsertBatch(BaseModel):
    """ACP `upsert_products_request`: products in the UCP shape, validated one by one."""

    # Anything goes here: each item is validated on its own, so one bad item is one error.
    products: list[Any] = Field(min_length=1, max_length=MAX_BATCH)


class DeleteBatch(BaseModel):
    ids: list[str] = Field(min_length=1, max_length=MAX_BATCH)


@dataclass(frozen=True)
class ItemError:
    index: int
    id: str | None
    reason: str


@dataclass
class PushReport:
    upserted: int = 0
    deleted: int = 0
    errors: list[ItemError] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {"upserted": self.upserted, "deleted": self.deleted,
                "rejected": len(self.errors),
                "errors": [{"index": e.index, "id": e.id, "reason": e.reason}
                           for e in self.errors]}


def parse_batch(batch: UpsertBatch) -> tuple[list[tuple[int, Product]], list[ItemError]]:
    """Validate each pushed item into a UCP product; duplicates in one batch are errors."""
    valid: list[tuple[int, Product]] = []
    errors: list[ItemError] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(batch.products):
        raw_id = item.get("id") if isinstance(item, dict) else None
        item_id = str(raw_id) if raw_id is not None else None
        try:
            product = Product.model_validate(item)
        except ValidationError as exc:
            errors.append(ItemError(index, item_id, validation_reason(exc)))
            continue
        if product.id in seen:
            errors.append(ItemError(index, product.id,
                                    f"duplicate id (first at index {seen[product.id]})"))
            continue
        seen[product.id] = index
        valid.append((index, product))
    return valid, errors
