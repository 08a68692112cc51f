"""Past sales loaded as closed, historical orders: for reports and the demand forecast.

A historical order has no workflow and moved no money and no current stock. It is written the way a
live order leaves the database once it has ended, so that reports and the forecast read both alike:
an `orders` row (with `imported_from` set), its lines, one delivered shipment with `picked`
reservations (the units that left the warehouse: the demand), the milestone events with the live
event names, and for Olist the customer's review. Cancelled orders have no shipment.

The whole file is read and checked before anything is written, and everything is written in one
transaction: a bad file is refused with its line number and nothing of it is imported. Orders
already in the database (same id) are left as they are, so importing a file again adds nothing.
"""

from __future__ import annotations

import csv
import functools
import gzip
import io
import re
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from pathlib import Path
from typing import Any, TextIO, cast

from pydantic import BaseModel, ConfigDict
from sqlalchemy import Table, insert, select, text
from sqlalchemy.orm import Session

from db import SessionFactory
from models import tables as t
from models.choices import HistoryFormat
from models.events import OrderEventType, ReasonCode
from models.orders import MAX_MONEY, MAX_QUANTITY, Channel, OrderStatus, PaymentStatus, ShipmentStatus

CENT = Decimal("0.01")
CHUNK = 2_000  # orders per bulk insert (and per progress report)
HISTORY_WAREHOUSE = ("HIST", "Historical sales")  # created only when the database has no warehouse
UNKNOWN_WEIGHT_G = 0  # the files give no weight; the products are inactive until the catalog sets one
MAX_KEY = 40  # ids from the files: order and customer ids get a prefix and must fit String(64)
PAYMENT_METHOD = "card"  # the only method the orders table holds (models.orders.PaymentIn)


class SkipReason(StrEnum):
    """Why rows (Online Retail) or orders (Olist) of a file were not imported."""

    non_product = "non_product"  # postage, manual entries, fees: no goods
    stock_adjustment = "stock_adjustment"  # negative quantity at price 0 on a sale invoice: a stock count
    zero_price = "zero_price"  # free items and adjustments at price 0: not a sale
    cancelled_line = "cancelled_line"  # a cancellation line netted out of an earlier sale
    unmatched_cancellation = "unmatched_cancellation"  # cancels a sale not in the file
    not_finished = "not_finished"  # Olist orders still under way when the data was exported


class HistoryImportError(ValueError):
    """A file that cannot be imported (the message names the file's line); nothing was written."""


class HistoryImportSummary(BaseModel):
    model_config = ConfigDict(frozen=True)

    format: HistoryFormat
    orders_imported: int
    orders_already_present: int
    cancelled_orders: int  # of the imported: ended cancelled (no shipment, no demand)
    lines: int
    units: int  # units shipped by the imported orders (their picked reservations)
    skipped: dict[str, int]  # SkipReason -> rows (Online Retail) or orders (Olist)
    products_created: int
    customers_created: int
    warehouse: str
    elapsed_seconds: float


# ---- what the parsers produce ----


@dataclass
class _Line:
    sku: str
    quantity: int
    unit_price: Decimal


@dataclass
class _Order:
    id: str
    channel: Channel
    customer_id: str
    status: OrderStatus
    currency: str
    placed_at: datetime
    address: dict[str, Any]
    lines: list[_Line]
    events: list[tuple[datetime, OrderEventType, str]]  # (at, type, detail), in order
    shipping: Decimal = Decimal(0)  # what the customer paid for the delivery (Olist's freight)
    shipped_at: datetime | None = None  # a delivered shipment when set
    delivered_at: datetime | None = None
    feedback: tuple[int, str | None, datetime] | None = None


@dataclass
class _Parsed:
    orders: list[_Order] = field(default_factory=list)
    customers: dict[str, tuple[str, str]] = field(default_factory=dict)  # id -> (name, email)
    products: dict[str, tuple[str, int]] = field(default_factory=dict)  # sku -> (name, weight_g)
    currency: str = ""
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: SkipReason, n: int = 1) -> None:
        self.skipped[reason.value] = self.skipped.get(reason.value, 0) + n


# ---- reading files ----


def _open_text(path: Path) -> TextIO:
    """The file as text; gzip (by its magic bytes) is read directly."""
    try:
        with path.open("rb") as raw:
            gz = raw.read(2) == b"\x1f\x8b"
        if gz:
            return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig", newline="")
        return path.open(encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise HistoryImportError(f"cannot read {path}: {exc.strerror}") from None


def _records(path: Path, required: Iterable[str]) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number where the record starts, record) of a CSV file with a header of at least `required`.
    A real CSV parser: quoted fields may hold line breaks, so a record's line is counted, not assumed."""
    with _open_text(path) as text:
        reader = csv.reader(text)
        try:
            header = next(reader, None)
            if header is None:
                raise HistoryImportError(f"{path.name} line 1: the file is empty (expected a header)")
            header = [h.strip() for h in header]
            missing = [c for c in required if c not in header]
            if missing:
                raise HistoryImportError(
                    f"{path.name} line 1: missing column{'s' * (len(missing) > 1)} {', '.join(missing)}"
                    f" (the header has {', '.join(header)})"
                )
            start = reader.line_num + 1
            for row in reader:
                if row:  # blank lines are no records
                    if len(row) != len(header):
                        raise HistoryImportError(
                            f"{path.name} line {start}: {len(row)} fields where the header has {len(header)}"
                        )
                    yield start, dict(zip(header, row, strict=True))
                start = reader.line_num + 1
        except (csv.Error, UnicodeDecodeError, EOFError, gzip.BadGzipFile) as exc:
            raise HistoryImportError(f"{path.name} line {reader.line_num}: unreadable: {exc}") from None


def _where(path: Path, line: int) -> str:
    return f"{path.name} line {line}"


def _timestamp(value: str, column: str, where: str, required: bool = True) -> datetime | None:
    """A file's local timestamp, taken as UTC (neither file says which zone it is in)."""
    value = value.strip()
    if not value:
        if required:
            raise HistoryImportError(f"{where}: {column} is empty")
        return None
    at = _parse_time(value)
    if at is None:
        raise HistoryImportError(f"{where}: {column} {value!r} is not a date (YYYY-MM-DD HH:MM:SS)")
    return at


@functools.lru_cache(maxsize=65_536)  # an invoice's rows share one time: parse it once
def _parse_time(value: str) -> datetime | None:
    for pattern in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d"):
        try:
            return datetime.strptime(value, pattern).replace(tzinfo=UTC)
        except ValueError:
            continue
    return None


def _integer(value: str, column: str, where: str) -> int:
    try:
        number = int(value.strip())
    except ValueError:
        raise HistoryImportError(f"{where}: {column} {value!r} is not a whole number") from None
    if abs(number) > MAX_QUANTITY:  # also keeps it far inside the INTEGER columns
        raise HistoryImportError(f"{where}: {column} {number} is beyond {MAX_QUANTITY:,}")
    return number


def _key(value: str, column: str, where: str, longest: int = MAX_KEY) -> str:
    """An id from the file, short enough for the columns it becomes part of."""
    value = value.strip()
    if not value:
        raise HistoryImportError(f"{where}: {column} is empty")
    if len(value) > longest:
        raise HistoryImportError(f"{where}: {column} {value[:20]!r}... is longer than {longest} characters")
    return value


def _money(value: str, column: str, where: str) -> Decimal:
    try:
        amount = Decimal(value.strip())
    except InvalidOperation:
        raise HistoryImportError(f"{where}: {column} {value!r} is not a number") from None
    if not amount.is_finite() or not 0 <= amount <= MAX_MONEY:
        raise HistoryImportError(f"{where}: {column} {value!r} is not an amount of money (0 to {MAX_MONEY})")
    return amount.quantize(CENT)


def _address(
    name: str, city: str, postal_code: str, country: str, region: str | None = None
) -> dict[str, Any]:
    """The keys of models.orders.Address; what the files do not give stays empty."""
    return {
        "name": name,
        "line1": "",
        "line2": region,
        "city": city,
        "postal_code": postal_code,
        "country": country,
    }


def _lines_label(n: int) -> str:
    return f"{n} line{'s' * (n != 1)}"


# ---- Online Retail (UCI): one row per invoice line ----

RETAIL_COLUMNS = (
    "Invoice",
    "StockCode",
    "Description",
    "Quantity",
    "InvoiceDate",
    "Price",
    "Customer ID",
    "Country",
)
# Not goods: postage, manual entries, discounts, fees, samples and charity (the UCI data's own codes).
NON_PRODUCT_CODES = frozenset(
    {
        "M",
        "POST",
        "D",
        "DOT",
        "BANK CHARGES",
        "C2",
        "AMAZONFEE",
        "S",
        "PADS",
        "CRUK",
        "B",
        "ADJUST",
        "TEST001",
    }
)
_GIFT_VOUCHER = re.compile(r"^gift_", re.IGNORECASE)

# The retailer's country names (the file gives names, the address an ISO code); unknown ones stay empty.
RETAIL_COUNTRIES = {
    "Australia": "AU", "Austria": "AT", "Bahrain": "BH", "Belgium": "BE", "Brazil": "BR", "Canada": "CA",
    "Channel Islands": "JE", "Cyprus": "CY", "Czech Republic": "CZ", "Denmark": "DK", "EIRE": "IE",
    "Finland": "FI", "France": "FR", "Germany": "DE", "Greece": "GR", "Hong Kong": "HK", "Iceland": "IS",
    "Israel": "IL", "Italy": "IT", "Japan": "JP", "Lebanon": "LB", "Lithuania": "LT", "Malta": "MT",
    "Netherlands": "NL", "Norway": "NO", "Poland": "PL", "Portugal": "PT", "RSA": "ZA", "Saudi Arabia": "SA",
    "Singapore": "SG", "Spain": "ES", "Sweden": "SE", "Switzerland": "CH", "USA": "US",
    "United Arab Emirates": "AE", "United Kingdom": "GB", "Korea": "KR", "Thailand": "TH", "Nigeria": "NG",
    "West Indies": "", "European Community": "", "Unspecified": "",
}  # fmt: skip


@dataclass
class _RetailLine:
    invoice: str
    sku: str
    quantity: int  # what is left after cancellations
    price: Decimal
    at: datetime
    line: int


def _parse_online_retail(path: Path) -> _Parsed:
    parsed = _Parsed(currency="GBP")
    sales: list[_RetailLine] = []
    cancellations: list[tuple[str, _RetailLine]] = []  # (customer key, line)
    invoices: dict[str, tuple[datetime, str, str]] = {}  # sale invoice -> (first time, customer, country)
    descriptions: dict[str, str] = {}
    for line, row in _records(path, RETAIL_COLUMNS):
        where = _where(path, line)
        invoice, sku = _key(row["Invoice"], "Invoice", where), _key(row["StockCode"], "StockCode", where, 64)
        quantity = _integer(row["Quantity"], "Quantity", where)
        price = _money(row["Price"], "Price", where)
        at = _timestamp(row["InvoiceDate"], "InvoiceDate", where)
        assert at is not None
        customer = row["Customer ID"].strip().removesuffix(".0")  # Online Retail II writes 13085.0
        if customer:
            _key(customer, "Customer ID", where)
        if sku.upper() in NON_PRODUCT_CODES or _GIFT_VOUCHER.match(sku):
            parsed.skip(SkipReason.non_product)
            continue
        if invoice.upper().startswith("C"):
            if quantity >= 0:
                raise HistoryImportError(
                    f"{where}: cancellation {invoice} has quantity {quantity} (must be < 0)"
                )
            cancellations.append((customer, _RetailLine(invoice, sku, -quantity, price, at, line)))
            continue
        if quantity < 0:
            # The real file has such rows only at price 0, blank customer, notes like "damages": stock
            # counts booked on an invoice, not sales. Anything else negative is a broken file.
            if price != 0:
                raise HistoryImportError(
                    f"{where}: negative quantity {quantity} on sale invoice {invoice} (only cancellation"
                    " invoices, starting with C, take units back)"
                )
            parsed.skip(SkipReason.stock_adjustment)
            continue
        if quantity == 0:
            raise HistoryImportError(f"{where}: quantity 0 on invoice {invoice}")
        if price == 0:
            parsed.skip(SkipReason.zero_price)
            continue
        first = invoices.get(invoice)
        if first is None or at < first[0]:
            invoices[invoice] = (at, customer, row["Country"].strip())
        if (text := row["Description"].strip()) and sku not in descriptions:
            descriptions[sku] = text[:200]
        sales.append(_RetailLine(invoice, sku, quantity, price, at, line))

    ordered = {id(s): s.quantity for s in sales}  # what each sale line was before cancellations
    _net_cancellations(sales, cancellations, invoices, parsed)

    by_invoice: dict[str, list[_RetailLine]] = defaultdict(list)
    for sale in sales:
        by_invoice[sale.invoice].append(sale)
    for invoice, lines in by_invoice.items():
        at, customer, country = invoices[invoice]
        customer_id = f"hist-retail-{customer or 'guest'}"
        name = f"Online Retail customer {customer}" if customer else "Online Retail guest"
        parsed.customers.setdefault(customer_id, (name, f"retail-{customer or 'guest'}@history.invalid"))
        kept = [x for x in lines if x.quantity > 0]
        for x in lines:
            parsed.products.setdefault(
                x.sku, (descriptions.get(x.sku, f"Online Retail {x.sku}"), UNKNOWN_WEIGHT_G)
            )
        order_id = f"hist-retail-{invoice}"
        events = [
            (
                at,
                OrderEventType.order_received,
                f"{_lines_label(len(lines))} via web (Online Retail invoice {invoice})",
            )
        ]
        if kept:
            events += [
                (at, OrderEventType.order_confirmed, "historical order"),
                (at, OrderEventType.shipment_shipped, f"{order_id}-S1 left the warehouse"),
                (at, OrderEventType.order_completed, "imported from Online Retail"),
            ]
        else:  # every line was taken back by cancellation invoices: what was ordered, cancelled
            events.append(
                (at, OrderEventType.order_cancelled, "every line was cancelled by a cancellation invoice")
            )
        parsed.orders.append(
            _Order(
                id=order_id,
                channel=Channel.web,
                customer_id=customer_id,
                status=OrderStatus.completed if kept else OrderStatus.cancelled,
                currency="GBP",
                placed_at=at,
                address=_address(name, "", "", RETAIL_COUNTRIES.get(country, ""), region=country or None),
                lines=[_Line(x.sku, x.quantity, x.price) for x in kept]
                or [_Line(x.sku, ordered[id(x)], x.price) for x in lines],
                events=events,
                shipped_at=at if kept else None,
            )
        )
    return parsed


def _net_cancellations(
    sales: list[_RetailLine],
    cancellations: list[tuple[str, _RetailLine]],
    invoices: dict[str, tuple[datetime, str, str]],
    parsed: _Parsed,
) -> None:
    """Take each cancellation's units off the same customer's latest sale line of the SKU, at or
    before the cancellation, that still has that many units (the mega-orders cancelled minutes later
    thus vanish); a cancellation matching no sale is counted and dropped."""
    open_lines: dict[tuple[str, str], list[_RetailLine]] = defaultdict(list)  # (customer, sku) -> by time
    for sale in sorted(sales, key=lambda s: (s.at, s.line)):
        open_lines[(invoices[sale.invoice][1], sale.sku)].append(sale)
    for customer, cancel in sorted(cancellations, key=lambda c: (c[1].at, c[1].line)):
        candidates = open_lines.get((customer, cancel.sku), [])
        match = next(
            (s for s in reversed(candidates) if s.at <= cancel.at and s.quantity >= cancel.quantity), None
        )
        if match is None:
            parsed.skip(SkipReason.unmatched_cancellation)
            continue
        match.quantity -= cancel.quantity
        parsed.skip(SkipReason.cancelled_line)


# ---- Olist: several CSV files joined by order_id ----

OLIST_FILES = {
    "orders": "olist_orders_dataset.csv",
    "items": "olist_order_items_dataset.csv",
    "customers": "olist_customers_dataset.csv",
    "products": "olist_products_dataset.csv",
    "reviews": "olist_order_reviews_dataset.csv",  # optional
    "categories": "product_category_name_translation.csv",  # optional
}
OLIST_COLUMNS = {
    "orders": (
        "order_id",
        "customer_id",
        "order_status",
        "order_purchase_timestamp",
        "order_approved_at",
        "order_delivered_carrier_date",
        "order_delivered_customer_date",
        "order_estimated_delivery_date",
    ),
    "items": ("order_id", "order_item_id", "product_id", "price"),
    "customers": (
        "customer_id",
        "customer_unique_id",
        "customer_zip_code_prefix",
        "customer_city",
        "customer_state",
    ),
    "products": ("product_id", "product_category_name", "product_weight_g"),
    "reviews": (
        "order_id",
        "review_score",
        "review_comment_title",
        "review_comment_message",
        "review_creation_date",
    ),
    "categories": ("product_category_name", "product_category_name_english"),
}
OLIST_DONE = {
    "delivered": OrderStatus.completed,
    "canceled": OrderStatus.cancelled,
    "unavailable": OrderStatus.cancelled,
}
OLIST_UNDER_WAY = frozenset({"created", "approved", "invoiced", "processing", "shipped"})


def olist_directory(path: Path) -> Path:
    """The folder of the Olist files: `path` itself, or the folder of its orders file."""
    return path if path.is_dir() else path.parent


def _parse_olist(path: Path) -> _Parsed:
    folder = olist_directory(path)
    files = {name: folder / file for name, file in OLIST_FILES.items()}
    for name in ("orders", "items", "customers", "products"):
        if not files[name].is_file():
            raise HistoryImportError(
                f"{folder}: no {files[name].name} (the Olist import reads the whole folder)"
            )
    parsed = _Parsed(currency="BRL")

    categories: dict[str, str] = {}
    if files["categories"].is_file():
        for _, row in _records(files["categories"], OLIST_COLUMNS["categories"]):
            categories[row["product_category_name"]] = row["product_category_name_english"]
    products: dict[str, tuple[str, int]] = {}
    for line, row in _records(files["products"], OLIST_COLUMNS["products"]):
        weight = row["product_weight_g"].strip()
        category = row["product_category_name"].strip()
        name = f"{categories.get(category, category) or 'product'} ({row['product_id'][:8]})"
        grams = (
            _integer(weight, "product_weight_g", _where(files["products"], line))
            if weight
            else UNKNOWN_WEIGHT_G
        )
        products[row["product_id"]] = (name, max(grams, 0))
    customers: dict[str, dict[str, str]] = {}
    for _, row in _records(files["customers"], OLIST_COLUMNS["customers"]):
        customers[row["customer_id"]] = row

    items: dict[str, list[_Line]] = defaultdict(list)
    freight: dict[str, Decimal] = defaultdict(Decimal)  # order id -> its items' freight: its shipping
    for line, row in _records(files["items"], OLIST_COLUMNS["items"]):
        where = _where(files["items"], line)
        _integer(row["order_item_id"], "order_item_id", where)
        price = _money(row["price"], "price", where)
        if value := (row.get("freight_value") or "").strip():  # optional: older extracts lack it
            freight[row["order_id"]] += _money(value, "freight_value", where)
        lines, sku = items[row["order_id"]], _key(row["product_id"], "product_id", where, 64)
        same = next((x for x in lines if x.sku == sku and x.unit_price == price), None)
        if same is None:  # one row per unit: the same product at the same price is one line
            lines.append(_Line(sku, 1, price))
        else:
            same.quantity += 1

    reviews: dict[str, tuple[int, str | None, datetime]] = {}
    if files["reviews"].is_file():
        for line, row in _records(files["reviews"], OLIST_COLUMNS["reviews"]):
            where = _where(files["reviews"], line)
            score = _integer(row["review_score"], "review_score", where)
            if not 1 <= score <= 5:
                raise HistoryImportError(f"{where}: review_score {score} is not 1..5")
            at = _timestamp(row["review_creation_date"], "review_creation_date", where)
            assert at is not None
            words = [row["review_comment_title"].strip(), row["review_comment_message"].strip()]
            comment = " — ".join(w for w in words if w) or None
            reviews[row["order_id"]] = (score, comment, at)  # the file's last review of an order stands

    first_line: dict[str, int] = {}
    for line, row in _records(files["orders"], OLIST_COLUMNS["orders"]):
        where = _where(files["orders"], line)
        if (seen := first_line.setdefault(row["order_id"], line)) != line:
            raise HistoryImportError(f"{where}: order_id {row['order_id']} is on line {seen} already")
        order = _olist_order(row, where, customers, items, reviews, parsed)
        if order is None:
            continue
        order.shipping = freight.get(row["order_id"], Decimal(0))
        parsed.orders.append(order)
        for x in order.lines:
            parsed.products.setdefault(
                x.sku, products.get(x.sku, (f"product ({x.sku[:8]})", UNKNOWN_WEIGHT_G))
            )
    return parsed


def _olist_order(
    row: dict[str, str],
    where: str,
    customers: dict[str, dict[str, str]],
    items: dict[str, list[_Line]],
    reviews: dict[str, tuple[int, str | None, datetime]],
    parsed: _Parsed,
) -> _Order | None:
    olist_status = row["order_status"].strip()
    status = OLIST_DONE.get(olist_status)
    if status is None:
        if olist_status not in OLIST_UNDER_WAY:
            raise HistoryImportError(f"{where}: unknown order_status {olist_status!r}")
        parsed.skip(SkipReason.not_finished)  # still under way when exported: how it ended is unknown
        return None
    placed = _timestamp(row["order_purchase_timestamp"], "order_purchase_timestamp", where)
    assert placed is not None
    approved = _timestamp(row["order_approved_at"], "order_approved_at", where, required=False)
    carrier = _timestamp(row["order_delivered_carrier_date"], "order_delivered_carrier_date", where, False)
    delivered = _timestamp(
        row["order_delivered_customer_date"], "order_delivered_customer_date", where, False
    )
    promised = _timestamp(row["order_estimated_delivery_date"], "order_estimated_delivery_date", where, False)
    customer = customers.get(row["customer_id"])
    if customer is None:
        raise HistoryImportError(f"{where}: customer_id {row['customer_id']} is not in the customers file")
    unique = _key(customer["customer_unique_id"] or row["customer_id"], "customer_unique_id", where)
    customer_id = f"hist-olist-{unique}"
    name = f"Olist customer {unique[:8]}"
    parsed.customers.setdefault(customer_id, (name, f"olist-{unique}@history.invalid"))
    order_id = f"hist-olist-{_key(row['order_id'], 'order_id', where)}"
    lines = items.get(row["order_id"], [])
    if status == OrderStatus.completed and not lines:
        raise HistoryImportError(f"{where}: delivered order {row['order_id']} has no items")
    events = [(placed, OrderEventType.order_received, f"{_lines_label(len(lines))} via marketplace (Olist)")]
    confirmed = approved or placed
    if status == OrderStatus.completed:
        shipped = carrier or placed
        events.append((confirmed, OrderEventType.order_confirmed, "historical order"))
        if promised is not None:
            events.append((confirmed, OrderEventType.delivery_promised, promised.date().isoformat()))
        events.append((shipped, OrderEventType.shipment_shipped, f"{order_id}-S1 handed to the carrier"))
        if delivered is not None:
            events.append((delivered, OrderEventType.shipment_delivered, f"{order_id}-S1 delivered"))
        events.append((delivered or shipped, OrderEventType.order_completed, "imported from Olist"))
    else:
        shipped = None
        if promised is not None:
            events.append((placed, OrderEventType.delivery_promised, promised.date().isoformat()))
        events.append((approved or placed, OrderEventType.order_cancelled, f"Olist status {olist_status}"))
    return _Order(
        id=order_id,
        channel=Channel.marketplace,
        customer_id=customer_id,
        status=status,
        currency="BRL",
        placed_at=placed,
        address=_address(
            name,
            customer["customer_city"].strip(),
            customer["customer_zip_code_prefix"].strip(),
            "BR",
            region=customer["customer_state"].strip() or None,
        ),
        lines=lines,
        events=events,
        shipped_at=shipped,
        delivered_at=delivered if shipped is not None else None,
        feedback=reviews.get(row["order_id"]),
    )


# ---- writing ----

_PARSERS: dict[HistoryFormat, Callable[[Path], _Parsed]] = {
    HistoryFormat.olist: _parse_olist,
    HistoryFormat.online_retail: _parse_online_retail,
}
_PREFIX = {HistoryFormat.olist: "hist-olist-", HistoryFormat.online_retail: "hist-retail-"}


def import_history(
    sessions: SessionFactory,
    path: Path,
    fmt: HistoryFormat,
    warehouse: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> HistoryImportSummary:
    """Import the past sales of `path` (Olist: its folder or orders file) as historical orders.
    `progress` is called with the number of orders written since its last call."""
    started = time.perf_counter()
    if not path.exists():
        raise HistoryImportError(f"{path}: no such file or folder")
    parsed = _PARSERS[fmt](path)
    with sessions.begin() as session:
        code = _warehouse(session, warehouse)
        present = set(session.scalars(select(t.Order.id).where(t.Order.id.startswith(_PREFIX[fmt]))))
        new = [o for o in parsed.orders if o.id not in present]
        customers = _missing(session, t.Customer.id, {o.customer_id for o in new})
        _bulk(
            session,
            t.Customer,
            [{"id": c, "name": parsed.customers[c][0], "email": parsed.customers[c][1]} for c in customers],
        )
        skus = _missing(session, t.Product.sku, {x.sku for o in new for x in o.lines})
        _bulk(session, t.Product, _product_rows(skus, new, parsed))
        for start in range(0, len(new), CHUNK):
            chunk = new[start : start + CHUNK]
            _write_orders(session, chunk, fmt, code)
            if progress is not None:
                progress(len(chunk))
    if new:
        _refresh_planner_statistics(sessions)
    return HistoryImportSummary(
        format=fmt,
        orders_imported=len(new),
        orders_already_present=len(parsed.orders) - len(new),
        cancelled_orders=sum(o.status == OrderStatus.cancelled for o in new),
        lines=sum(len(o.lines) for o in new),
        units=sum(x.quantity for o in new if o.shipped_at is not None for x in o.lines),
        skipped=dict(sorted(parsed.skipped.items())),
        products_created=len(skus),
        customers_created=len(customers),
        warehouse=code,
        elapsed_seconds=round(time.perf_counter() - started, 3),
    )


def _warehouse(session: Session, code: str | None) -> str:
    """The warehouse the historical shipments left from: the one named, else the preferred one, else
    (an empty database) a `HIST` warehouse made for them."""
    if code is not None:
        if session.get(t.Warehouse, code) is None:
            raise HistoryImportError(f"warehouse {code} does not exist")
        return code
    preferred = session.scalar(
        select(t.Warehouse.code).order_by(t.Warehouse.priority, t.Warehouse.code).limit(1)
    )
    if preferred is not None:
        return preferred
    hist_code, name = HISTORY_WAREHOUSE
    session.add(t.Warehouse(code=hist_code, name=name, priority=1_000))  # last choice for live orders
    session.flush()
    return hist_code


def _missing(session: Session, column: Any, keys: set[str]) -> list[str]:
    """The keys not yet in `column` (existing customers and products are never touched)."""
    present: set[str] = set()
    wanted = sorted(keys)
    for start in range(0, len(wanted), 1_000):  # stay under the databases' bound-parameter limits
        present.update(session.scalars(select(column).where(column.in_(wanted[start : start + 1_000]))))
    return [k for k in wanted if k not in present]


def _product_rows(skus: list[str], orders: list[_Order], parsed: _Parsed) -> list[dict[str, Any]]:
    prices: dict[str, list[Decimal]] = defaultdict(list)
    for o in orders:
        for x in o.lines:
            prices[x.sku].append(x.unit_price)
    rows = []
    for sku in skus:
        name, weight = parsed.products[sku]
        price = Decimal(statistics.median_low(prices[sku])).quantize(CENT)  # robust to one-off deals
        rows.append(
            {
                "sku": sku,
                "name": name,
                "price": price,
                "currency": parsed.currency,
                "weight_g": weight,
                "active": False,
            }
        )
    return rows


def _bulk(session: Session, table: type[t.Base], rows: list[dict[str, Any]]) -> None:
    if rows:
        # Core executemany: no ORM bookkeeping per row
        session.execute(insert(cast(Table, table.__table__)), rows)


def _refresh_planner_statistics(sessions: SessionFactory) -> None:
    """After a bulk load PostgreSQL's planner still believes the tables are small, and the demand read
    (reservations joined to shipments) takes a minute instead of two seconds until autovacuum gets to
    them: analyze the tables the import filled, now. (SQLite plans without statistics.)"""
    with sessions.begin() as session:
        if session.get_bind().dialect.name == "postgresql":
            session.execute(text("ANALYZE orders, order_lines, shipments, reservations, order_events"))


def _write_orders(session: Session, orders: list[_Order], fmt: HistoryFormat, warehouse: str) -> None:
    order_rows, line_rows, shipment_rows, reservation_rows, event_rows, feedback_rows = [], [], [], [], [], []
    for o in orders:
        goods = sum((x.unit_price * x.quantity for x in o.lines), Decimal(0)).quantize(CENT)
        total = goods + o.shipping  # the rule of docs/orders.md, with no discount and no tax given
        cancelled = o.status == OrderStatus.cancelled
        order_rows.append(
            {
                "id": o.id,
                "channel": o.channel.value,
                "customer_id": o.customer_id,
                "status": o.status.value,
                # money as the business recorded it; no payments rows: no money moves on import
                "payment_status": (PaymentStatus.voided if cancelled else PaymentStatus.captured).value,
                "currency": o.currency,
                "total": total,
                "subtotal": goods,
                "shipping": o.shipping,
                "discounts": Decimal(0),
                "tax": Decimal(0),
                "shipping_tax": Decimal(0),
                "shipping_address": o.address,
                "payment_method": PAYMENT_METHOD,
                "placed_at": o.placed_at,
                "updated_at": o.events[-1][0],
                "imported_from": fmt.value,
            }
        )
        line_rows += [
            {"order_id": o.id, "line_no": n, "sku": x.sku, "quantity": x.quantity, "unit_price": x.unit_price}
            for n, x in enumerate(o.lines, start=1)
        ]
        event_rows += [
            {
                "order_id": o.id,
                "seq": seq,
                "at": at,
                "type": kind,
                "detail": detail,
                # an imported order was only ever cancelled by its source (a marketplace, an invoice)
                "reason_code": ReasonCode.cancelled_at_source
                if kind == OrderEventType.order_cancelled
                else None,
            }
            for seq, (at, kind, detail) in enumerate(o.events, start=1)
        ]
        if o.feedback is not None:
            score, comment, at = o.feedback
            feedback_rows.append({"order_id": o.id, "score": score, "comment": comment, "created_at": at})
        if o.shipped_at is None:
            continue
        shipment = f"{o.id}-S1"
        shipment_rows.append(
            {
                "id": shipment,
                "order_id": o.id,
                "warehouse": warehouse,
                "status": (ShipmentStatus.delivered).value,
                "created_at": o.placed_at,
                "picked_at": o.shipped_at,
                "shipped_at": o.shipped_at,
                "delivered_at": o.delivered_at,
            }
        )
        units: dict[str, int] = defaultdict(int)  # one reservation per SKU of the shipment
        for x in o.lines:
            units[x.sku] += x.quantity
        reservation_rows += [
            {
                "order_id": o.id,
                "shipment_id": shipment,
                "sku": sku,
                "warehouse": warehouse,
                "quantity": n,
                "status": "picked",
                "created_at": o.placed_at,
            }
            for sku, n in units.items()
        ]
    _bulk(session, t.Order, order_rows)
    _bulk(session, t.OrderLine, line_rows)
    _bulk(session, t.Shipment, shipment_rows)
    _bulk(session, t.Reservation, reservation_rows)
    _bulk(session, t.OrderEvent, event_rows)
    _bulk(session, t.Feedback, feedback_rows)
