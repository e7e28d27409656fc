"""Sponsored products: which of its products a merchant pays to have considered for a card.

Sponsorship never buys relevance. `catalog.ranking.choose` shows a sponsored product only when
its own score is close to the best organic card's, at most one per answer and always
labelled; this module only keeps which products are sponsored.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import UniqueConstraint, and_, delete
from sqlmodel import Field, Session, SQLModel, col, select

from catalog.columns import product_ref
from catalog.models import CatalogProduct, Merchant
from core.db import utcnow
from core.errors import InvalidInput

MAX_SPONSORED = 50  # per merchant: a sponsored slot is for a few products, not a catalog


class UnknownProducts(InvalidInput):
    """None of the products to sponsor is in the merchant's catalog."""

    def __init__(self, product_ids: list[str]) -> None:
        super().__init__("none of these products is in your catalog: "
                         + ", ".join(p[:80] for p in product_ids[:10]))
        self.product_ids = product_ids


class SponsoredProduct(SQLModel, table=True):
    """One product a merchant sponsors."""

    __table_args__ = (UniqueConstraint("merchant_id", "product_id"),)

    id: int | None = Field(default=None, primary_key=True)
    merchant_id: int = Field(foreign_key="merchant.id", index=True)
    product_id: str = Field(max_length=200)
    created_at: datetime = Field(default_factory=utcnow)


def set_sponsored(*, session: Session, merchant: Merchant,
                  product_ids: list[str]) -> tuple[list[str], list[str]]:
    """Replace the merchant's sponsored products; returns (sponsored, unknown ids).

    Ids the merchant's catalog does not hold are reported and left out.

    Raises:
        InvalidInput: more than `MAX_SPONSORED` products.
        UnknownProducts: none of the ids is in the merchant's catalog (nothing changed).
    """
    wanted = list(dict.fromkeys(product_ids))
    if len(wanted) > MAX_SPONSORED:
        raise InvalidInput(f"at most {MAX_SPONSORED} sponsored products per merchant, "
                           f"got {len(wanted)}")
    known = set(session.exec(select(CatalogProduct.product_id).where(
        CatalogProduct.merchant_id == merchant.id,
        col(CatalogProduct.product_id).in_(wanted)))) if wanted else set()
    if wanted and not known:
        # Nothing to apply: leave what is sponsored today as it is.
        raise UnknownProducts(wanted)
    clear_sponsored(session=session, merchant=merchant)
    sponsored = [p for p in wanted if p in known]
    for product_id in sponsored:
        session.add(SponsoredProduct(merchant_id=merchant.id or 0, product_id=product_id))
    merchant.revision += 1  # the market's index carries the sponsored flag: rebuild it
    session.add(merchant)
    return sponsored, [p for p in wanted if p not in known]


def clear_sponsored(*, session: Session, merchant: Merchant) -> None:
    """Stop sponsoring all of a merchant's products (also before the merchant is removed)."""
    session.execute(delete(SponsoredProduct).where(
        col(SponsoredProduct.merchant_id) == merchant.id))


def unsponsor(*, session: Session, merchant: Merchant, product_ids: Iterable[str]) -> None:
    """Stop sponsoring these products (they left the merchant's catalog)."""
    ids = list(product_ids)
    if ids:
        session.execute(delete(SponsoredProduct).where(
            col(SponsoredProduct.merchant_id) == merchant.id,
            col(SponsoredProduct.product_id).in_(ids)))


def sponsored_ids(*, session: Session, merchant: Merchant) -> list[str]:
    """The merchant's sponsored products that its catalog still holds."""
    return list(session.exec(
        select(SponsoredProduct.product_id).join(CatalogProduct, and_(
            col(CatalogProduct.merchant_id) == col(SponsoredProduct.merchant_id),
            col(CatalogProduct.product_id) == col(SponsoredProduct.product_id)))
        .where(SponsoredProduct.merchant_id == merchant.id).order_by(col(SponsoredProduct.id))))


def sponsored_refs(*, session: Session, market: str) -> frozenset[str]:
    """The refs ("merchant-slug:product-id") of every sponsored product in a market."""
    # Joined with the catalog: a product deleted and pushed again later is not sponsored
    # by a row left from before.
    rows = session.exec(select(Merchant.slug, SponsoredProduct.product_id).join(
        SponsoredProduct, col(SponsoredProduct.merchant_id) == col(Merchant.id)).join(
        CatalogProduct, and_(
            col(CatalogProduct.merchant_id) == col(SponsoredProduct.merchant_id),
            col(CatalogProduct.product_id) == col(SponsoredProduct.product_id))).where(
        Merchant.market == market))
    return frozenset(product_ref(slug, product_id) for slug, product_id in rows)
