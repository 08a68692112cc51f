"""The Olist sample as orders and a catalog: real marketplace orders nobody on this project invented.

Read in place from `../shared/data/olist` beside the repository (never copied into it); a clear
message, not a traceback, when it is absent.
"""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from config import PROJECT_DIR
from models.catalog import CatalogFile, ProductRow, StockRow, WarehouseRow
from models.money import CENT
from models.orders import Address, Channel, CustomerIn, LineIn, OrderInput, PaymentIn, ShippingLineIn

OLIST_DIR = PROJECT_DIR.parent / "shared" / "data" / "olist"  # ../shared/data/olist from the repository


@dataclass(frozen=True)
class Sample:
    catalog: CatalogFile
    orders: list[OrderInput]


def read_csv(name: str, data_dir: Path) -> list[dict[str, str]]:
    if not (data_dir / name).is_file():
        raise SystemExit(
            f"the Olist sample is missing: expected {name} in ../shared/data/olist next to the repository "
            f"({data_dir}); the benchmarks replay real orders from it"
        )
    with open(data_dir / name, newline="", encoding="utf-8") as f:  # quoted fields span lines
        return list(csv.DictReader(f))


def sku_of(product_id: str) -> str:
    return "OL-" + product_id[:10].upper()


def load_sample(count: int, data_dir: Path = OLIST_DIR) -> Sample:
    """The first `count` Olist orders that have items, and a catalog holding exactly their products."""
    items_by_order: dict[str, list[dict[str, str]]] = {}
    for item in read_csv("olist_order_items_dataset.csv", data_dir):
        items_by_order.setdefault(item["order_id"], []).append(item)
    chosen = [o for o in read_csv("olist_orders_dataset.csv", data_dir) if o["order_id"] in items_by_order]
    chosen = chosen[:count]
    if len(chosen) < count:
        raise SystemExit(f"the Olist sample has only {len(chosen)} orders with items")
    items = [item for o in chosen for item in items_by_order[o["order_id"]]]
    catalog = build_catalog(items, read_csv("olist_products_dataset.csv", data_dir))
    return Sample(
        catalog=catalog,
        orders=build_orders(
            chosen, items_by_order, read_csv("olist_customers_dataset.csv", data_dir), catalog
        ),
    )


def build_catalog(items: list[dict[str, str]], products: list[dict[str, str]]) -> CatalogFile:
    """One product per Olist product at its first price; 1000 units each in SP, none in RJ."""
    info = {p["product_id"]: p for p in products}
    rows: dict[str, ProductRow] = {}
    for item in items:
        sku = sku_of(item["product_id"])
        if sku in rows:
            continue  # a later item at another price: the catalog keeps the first
        product = info.get(item["product_id"], {})
        category = product.get("product_category_name") or "product"
        rows[sku] = ProductRow(
            sku=sku,
            name=f"Olist {category} {sku}",
            price=Decimal(item["price"]).quantize(CENT),
            currency="BRL",
            weight_g=int(float(product.get("product_weight_g") or 500)),
        )
    return CatalogFile(
        warehouses=[
            WarehouseRow(code="SP", name="São Paulo", priority=10),
            WarehouseRow(code="RJ", name="Rio de Janeiro", priority=20),
        ],
        products=list(rows.values()),
        stock=[StockRow(sku=sku, warehouse="SP", on_hand=1000) for sku in rows],
    )


def build_orders(
    orders: list[dict[str, str]],
    items_by_order: dict[str, list[dict[str, str]]],
    customers: list[dict[str, str]],
    catalog: CatalogFile,
) -> list[OrderInput]:
    by_id = {c["customer_id"]: c for c in customers}
    prices = {p.sku: p.price for p in catalog.products}
    numbers: dict[str, int] = {}  # customer_unique_id -> n, in order of first appearance
    built = []
    for order in orders:
        customer = by_id[order["customer_id"]]
        n = numbers.setdefault(customer["customer_unique_id"], len(numbers) + 1)
        built.append(
            to_order_input(order["order_id"], items_by_order[order["order_id"]], customer, n, prices)
        )
    return built


def to_order_input(
    order_id: str, items: list[dict[str, str]], customer: dict[str, str], n: int, prices: dict[str, Decimal]
) -> OrderInput:
    """One marketplace order; a line per sku, its quantity the number of item rows, at the catalog's
    price; the items' freight is its shipping line (issue 26: the customer paid it, so it is captured)."""
    quantities = Counter(sku_of(item["product_id"]) for item in items)
    freight = sum((Decimal(item["freight_value"] or "0") for item in items), Decimal(0)).quantize(CENT)
    name = f"Olist customer {n}"
    return OrderInput(
        order_id="OL-" + order_id[:12].upper(),
        channel=Channel.marketplace,
        customer=CustomerIn(id=customer["customer_unique_id"][:16], name=name, email=f"c{n}@example.com"),
        shipping_address=Address(
            name=name,
            line1="Rua Exemplo 1",
            city=customer["customer_city"],
            postal_code=customer["customer_zip_code_prefix"].zfill(5) + "-000",
            country="BR",
        ),
        lines=[LineIn(sku=sku, quantity=qty, unit_price=prices[sku]) for sku, qty in quantities.items()],
        currency="BRL",
        payment=PaymentIn(token="tok_visa"),
        shipping_lines=[ShippingLineIn(title="Olist freight", price=freight)] if freight else [],
    )
