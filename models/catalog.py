"""The catalog file: warehouses, products and stock levels (`starter.py catalog load FILE.json`)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from models.orders import Identifier, Money, Text


class _Row(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WarehouseRow(_Row):
    code: Annotated[str, Field(pattern=r"^[A-Z0-9]{2,16}$")]
    name: Text
    priority: int = 100  # smaller ships first when warehouses tie


class ProductRow(_Row):
    sku: Identifier
    name: Text
    price: Money
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
    weight_g: Annotated[int, Field(ge=0)]
    active: bool = True


class StockRow(_Row):
    sku: Identifier
    warehouse: str
    on_hand: Annotated[int, Field(strict=True, ge=0)]
    reorder_point: Annotated[int, Field(ge=0)] | None = None
    reorder_qty: Annotated[int, Field(gt=0)] | None = None


class CatalogFile(_Row):
    warehouses: list[WarehouseRow] = []
    products: list[ProductRow] = []
    stock: list[StockRow] = []

    @model_validator(mode="after")
    def _stock_rows_are_unique(self) -> CatalogFile:
        seen = set()
        for row in self.stock:
            if (row.sku, row.warehouse) in seen:
                raise ValueError(f"stock for {row.sku} in {row.warehouse} is listed twice")
            seen.add((row.sku, row.warehouse))
        return self
