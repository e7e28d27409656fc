"""The product model in the UCP catalog shape, validated at every adapter boundary.

Mirrors `shopping/types/product.json` of the Universal Commerce Protocol: amounts are integers
in ISO 4217 minor units; the first media item is the featured image; the first variant is the
featured variant.
"""

from __future__ import annotations

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from core.money import Money


class Price(BaseModel):
    model_config = ConfigDict(extra="ignore")

    amount: int = Field(ge=0, le=9007199254740991, strict=True)
    currency: str = Field(pattern=r"^[A-Z]{3}$")

    def to_money(self) -> Money:
        return Money(self.amount, self.currency)


class PriceRange(BaseModel):
    min: Price
    max: Price


class Description(BaseModel):
    model_config = ConfigDict(extra="ignore")

    plain: str | None = None
    html: str | None = None
    markdown: str | None = None

    def text(self) -> str:
        return self.plain or self.markdown or self.html or ""


class Media(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: str = "image"
    url: str = Field(min_length=1)
    alt_text: str | None = None


class Category(BaseModel):
    model_config = ConfigDict(extra="ignore")

    value: str = Field(min_length=1)
    taxonomy: str | None = None


class Availability(BaseModel):
    model_config = ConfigDict(extra="ignore")

    available: bool = True
    status: str | None = None


class Rating(BaseModel):
    model_config = ConfigDict(extra="ignore")

    value: float = Field(ge=0, allow_inf_nan=False)
    scale_max: float = Field(ge=1, le=100, allow_inf_nan=False)
    count: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _value_on_scale(self) -> Rating:
        if self.value > self.scale_max:
            raise ValueError(f"rating {self.value} is above its scale maximum {self.scale_max}")
        return self


class Variant(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str = Field(min_length=1)
    title: str = Field(min_length=1)
    description: Description = Field(default_factory=Description)
    price: Price
    availability: Availability = Field(default_factory=Availability)
    sku: str | None = None
    url: str | None = None


class Product(BaseModel):
    """A merchant's product as UCP describes it."""

    model_config = ConfigDict(extra="ignore")

    id: str = Field(min_length=1, max_length=200)
    title: str = Field(min_length=1, max_length=500)
    description: Description = Field(default_factory=Description)
    url: str | None = None
    categories: list[Category] = Field(default_factory=list)
    price_range: PriceRange | None = None
    media: list[Media] = Field(default_factory=list)
    variants: list[Variant] = Field(min_length=1)
    rating: Rating | None = None
    tags: list[str] = Field(default_factory=list)
    metadata: dict = Field(default_factory=dict)

    @field_validator("id", "title")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value.strip()

    @model_validator(mode="after")
    def _one_currency(self) -> Product:
        currencies = {v.price.currency for v in self.variants}
        if len(currencies) > 1:
            raise ValueError(f"variants mix currencies: {sorted(currencies)}")
        if self.price_range is None:
            amounts = [v.price.amount for v in self.variants]
            cur = self.variants[0].price.currency
            self.price_range = PriceRange(
                min=Price(amount=min(amounts), currency=cur),
                max=Price(amount=max(amounts), currency=cur),
            )
        elif self.price_range.min.currency not in currencies:
            raise ValueError("price_range currency differs from the variants' currency")
        return self

    @property
    def currency(self) -> str:
        return self.variants[0].price.currency

    @property
    def brand(self) -> str | None:
        brand = self.metadata.get("brand")
        return str(brand) if brand else None

    def in_stock(self) -> bool:
        return any(v.availability.available for v in self.variants)

    def cheapest_available(self) -> Variant | None:
        available = [v for v in self.variants if v.availability.available]
        return min(available, key=lambda v: v.price.amount) if available else None

    def image_url(self) -> str | None:
        for item in self.media:
            if item.type == "image":
                return item.url
        return None


def validation_reason(exc: ValidationError) -> str:
    """A one-line reason from a validation error ("variants.0.price.amount: ...")."""
    parts = []
    for err in exc.errors()[:3]:
        loc = ".".join(str(p) for p in err["loc"]) or "product"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)
