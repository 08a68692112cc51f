"""`starter.py import-history`: past sales become closed, historical orders (no workflow, no money moved).

Everything here runs on a database of its own (of the suite's kind: SQLite, or PostgreSQL in CI), so
that the counts are exact and the 17,756 imported Online Retail orders stay out of the suite's database.
No Temporal server is needed: importing history starts no workflow.
"""

from __future__ import annotations

import csv
import gzip
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import func, select

from config import Settings
from db import SessionFactory
from domain.dashboard import orders_by_status
from domain.history_import import (
    NON_PRODUCT_CODES,
    OLIST_COLUMNS,
    RETAIL_COLUMNS,
    HistoryFormat,
    HistoryImportError,
    import_history,
)
from domain.reconcile import ended_orders_still_holding
from models import tables as t
from tests.helpers import RETAIL_YEAR, SHARED_DATA, cli, fresh_database

OLIST = SHARED_DATA / "olist"
RETAIL_HEADER = list(RETAIL_COLUMNS)
ROW_TABLES = (
    t.Order,
    t.OrderLine,
    t.OrderEvent,
    t.Shipment,
    t.Reservation,
    t.Customer,
    t.Product,
    t.Feedback,
)


@pytest.fixture(scope="module")
def history_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, SessionFactory]]:
    """A freshly migrated database of the suite's kind (no warehouses, no products), and its sessions."""
    with fresh_database(tmp_path_factory.mktemp("history"), "history") as database:
        yield database


@pytest.fixture
def sessions(history_db: tuple[str, SessionFactory]) -> SessionFactory:
    return history_db[1]


def invoice_prefix() -> str:
    """Invoice numbers no other test (and not the real file, 536365..581587) uses."""
    return f"9{uuid.uuid4().int % 10**8:08d}"


def write_retail(path: Path, rows: list[list[str]], header: list[str] = RETAIL_HEADER) -> Path:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def row_counts(sessions: SessionFactory) -> dict[str, int]:
    with sessions() as session:
        return {
            table.__tablename__: session.scalar(select(func.count()).select_from(table))
            for table in ROW_TABLES
        }


def events(sessions: SessionFactory, order_id: str) -> list[tuple[int, str, str]]:
    with sessions() as session:
        rows = session.execute(
            select(t.OrderEvent.seq, t.OrderEvent.type, t.OrderEvent.detail)
            .where(t.OrderEvent.order_id == order_id)
            .order_by(t.OrderEvent.seq)
        ).all()
    return [tuple(r) for r in rows]


def lines(sessions: SessionFactory, order_id: str) -> list[tuple[str, int, Decimal]]:
    with sessions() as session:
        rows = session.execute(
            select(t.OrderLine.sku, t.OrderLine.quantity, t.OrderLine.unit_price)
            .where(t.OrderLine.order_id == order_id)
            .order_by(t.OrderLine.line_no)
        ).all()
    return [(sku, q, Decimal(p)) for sku, q, p in rows]


def picked(sessions: SessionFactory, order_id: str) -> dict[str, int]:
    with sessions() as session:
        rows = session.execute(
            select(t.Reservation.sku, t.Reservation.quantity).where(
                t.Reservation.order_id == order_id, t.Reservation.status == "picked"
            )
        ).all()
    return dict(rows)


# ---- Online Retail: a hand-made file ----


def retail_rows(p: str) -> list[list[str]]:
    """A file with a bit of everything: postage, a mega order cancelled minutes later, a partial
    cancellation of a guest's order, a stock count, a free item and a cancellation of nothing here."""
    a, b, sku_x, sku_y = f"{p}1", f"{p}2", f"X{p}", f"Y{p}"
    return [
        [a, sku_x, "RED MUG", "6", "2011-03-01 09:15:00", "2.55", "12345", "United Kingdom"],
        [a, sku_y, "BLUE MUG", "3", "2011-03-01 09:15:00", "1.00", "12345", "United Kingdom"],
        [a, "POST", "POSTAGE", "1", "2011-03-01 09:15:00", "18.00", "12345", "United Kingdom"],
        [b, sku_x, "RED MUG", "5000", "2011-03-02 10:00:00", "2.00", "12345", "United Kingdom"],
        [f"C{p}2", sku_x, "RED MUG", "-5000", "2011-03-02 10:05:00", "2.00", "12345", "United Kingdom"],
        [f"{p}3", sku_y, "BLUE MUG", "4", "2011-03-03 11:00:00", "1.00", "", "France"],
        [f"{p}3", sku_x, "RED MUG", "2", "2011-03-03 11:00:00", "2.55", "", "France"],
        [f"C{p}3", sku_y, "BLUE MUG", "-1", "2011-03-04 08:00:00", "1.00", "", "France"],
        [f"{p}4", sku_y, "damages", "-5", "2011-03-04 09:00:00", "0", "", "United Kingdom"],
        [f"{p}5", sku_x, "", "1", "2011-03-04 10:00:00", "0", "", "United Kingdom"],
        [f"C{p}9", sku_x, "RED MUG", "-2", "2011-03-05 10:00:00", "2.55", "55555", "Germany"],
    ]


def test_online_retail_file_becomes_closed_historical_orders(
    sessions: SessionFactory, tmp_path: Path
) -> None:
    p = invoice_prefix()
    sku_x, sku_y = f"X{p}", f"Y{p}"
    with sessions.begin() as session:  # a live customer and product of the same ids are left alone
        session.add(t.Customer(id="hist-retail-12345", name="Ann Real", email="ann@example.com"))
        session.add(
            t.Product(
                sku=sku_y, name="Blue mug (catalog)", price=Decimal("1.50"), currency="GBP", weight_g=300
            )
        )
    with sessions() as session:
        guest_existed = session.get(t.Customer, "hist-retail-guest") is not None
    before = row_counts(sessions)

    summary = import_history(
        sessions, write_retail(tmp_path / "sales.csv.gz", retail_rows(p)), HistoryFormat.online_retail
    )

    assert (summary.orders_imported, summary.orders_already_present, summary.cancelled_orders) == (3, 0, 1)
    assert summary.skipped == {
        "cancelled_line": 2,
        "non_product": 1,
        "stock_adjustment": 1,
        "unmatched_cancellation": 1,
        "zero_price": 1,
    }
    assert (summary.lines, summary.units, summary.products_created) == (5, 6 + 3 + 3 + 2, 1)
    assert summary.warehouse == "HIST"  # the database has no warehouse: one is made for history
    with sessions() as session:
        orders = {
            o.id: o for o in session.scalars(select(t.Order).where(t.Order.id.like(f"hist-retail-%{p}%")))
        }
        assert sorted(orders) == [f"hist-retail-{p}1", f"hist-retail-{p}2", f"hist-retail-{p}3"]
        first, mega, guest = (
            orders[f"hist-retail-{p}1"],
            orders[f"hist-retail-{p}2"],
            orders[f"hist-retail-{p}3"],
        )
        assert (first.status, first.payment_status, first.currency, first.channel) == (
            "completed",
            "captured",
            "GBP",
            "web",
        )
        assert first.imported_from == "online-retail"
        assert Decimal(first.total) == Decimal("18.30")  # 6 x 2.55 + 3 x 1.00; postage is no product
        assert first.placed_at == datetime(2011, 3, 1, 9, 15, tzinfo=UTC)
        assert first.shipping_address["country"] == "GB"
        assert (mega.status, mega.payment_status, Decimal(mega.total)) == (
            "cancelled",
            "voided",
            Decimal("10000.00"),
        )
        assert guest.customer_id == "hist-retail-guest" and guest.shipping_address["country"] == "FR"
        assert Decimal(guest.total) == Decimal("8.10")  # 3 x 1.00 (one cancelled) + 2 x 2.55
        shipments = session.execute(
            select(t.Shipment.id, t.Shipment.status, t.Shipment.warehouse, t.Shipment.shipped_at)
            .where(t.Shipment.order_id.in_(list(orders)))
            .order_by(t.Shipment.id)
        ).all()
        assert shipments == [
            (f"hist-retail-{p}1-S1", "delivered", "HIST", datetime(2011, 3, 1, 9, 15, tzinfo=UTC)),
            (f"hist-retail-{p}3-S1", "delivered", "HIST", datetime(2011, 3, 3, 11, 0, tzinfo=UTC)),
        ]
        assert session.get(t.Customer, "hist-retail-12345").name == "Ann Real"
        kept = session.get(t.Product, sku_y)
        assert (kept.name, Decimal(kept.price), kept.active) == ("Blue mug (catalog)", Decimal("1.50"), True)
        made = session.get(t.Product, sku_x)
        assert (made.name, made.currency, made.active) == ("RED MUG", "GBP", False)
        assert session.get(t.Warehouse, "HIST") is not None
        assert (
            session.scalar(
                select(func.count()).select_from(t.Payment).where(t.Payment.order_id.in_(list(orders)))
            )
            == 0
        )
        assert (
            session.scalar(select(func.count()).select_from(t.StockMovement)) == 0
        )  # no current stock moved

    assert lines(sessions, f"hist-retail-{p}1") == [(sku_x, 6, Decimal("2.55")), (sku_y, 3, Decimal("1.00"))]
    assert lines(sessions, f"hist-retail-{p}2") == [
        (sku_x, 5000, Decimal("2.00"))
    ]  # as ordered, then cancelled
    assert picked(sessions, f"hist-retail-{p}1") == {sku_x: 6, sku_y: 3}
    assert picked(sessions, f"hist-retail-{p}2") == {}  # nothing left the warehouse: no demand
    assert picked(sessions, f"hist-retail-{p}3") == {sku_y: 3, sku_x: 2}
    assert [e[1] for e in events(sessions, f"hist-retail-{p}1")] == [
        "order_received",
        "order_confirmed",
        "shipment_shipped",
        "order_completed",
    ]
    assert [e[:2] for e in events(sessions, f"hist-retail-{p}2")] == [
        (1, "order_received"),
        (2, "order_cancelled"),
    ]
    after = row_counts(sessions)
    assert {k: after[k] - before[k] for k in after} == {
        "orders": 3,
        "order_lines": 5,
        "order_events": 4 + 2 + 4,
        "shipments": 2,
        "reservations": 4,
        # the guest (unless an earlier test made it); 12345 existed, 55555 only cancelled what is not here
        "customers": 0 if guest_existed else 1,
        "products": 1,
        "feedback": 0,
    }


def test_reimport_adds_nothing_and_an_overlapping_file_adds_only_its_new_orders(
    sessions: SessionFactory, tmp_path: Path
) -> None:
    p = invoice_prefix()
    rows = retail_rows(p)
    path = write_retail(tmp_path / "sales.csv", rows)
    import_history(sessions, path, HistoryFormat.online_retail)
    before = row_counts(sessions)

    again = import_history(sessions, path, HistoryFormat.online_retail)

    assert (again.orders_imported, again.orders_already_present, again.lines, again.units) == (0, 3, 0, 0)
    assert row_counts(sessions) == before
    more = rows + [
        [f"{p}6", f"X{p}", "RED MUG", "10", "2011-03-06 12:00:00", "2.55", "12345", "United Kingdom"]
    ]
    overlap = import_history(sessions, write_retail(tmp_path / "more.csv", more), HistoryFormat.online_retail)
    assert (overlap.orders_imported, overlap.orders_already_present, overlap.units) == (1, 3, 10)
    after = row_counts(sessions)
    assert (after["orders"] - before["orders"], after["reservations"] - before["reservations"]) == (1, 1)


# ---- bad files: refused with the line number, nothing imported ----


def good_row(p: str, n: int) -> list[str]:
    return [f"{p}{n}", f"G{p}", "GOOD MUG", "2", "2011-05-01 10:00:00", "3.00", "777", "United Kingdom"]


@pytest.mark.parametrize(
    ("bad", "line", "words"),
    [
        (
            lambda p: [f"{p}3", "G", "MUG", "2", "01/05/2011 10:00", "3.00", "", "EIRE"],
            4,
            "InvoiceDate '01/05/2011 10:00' is not a date",
        ),
        (
            lambda p: [f"{p}3", "G", "MUG", "-2", "2011-05-01 10:00:00", "3.00", "", "EIRE"],
            4,
            "negative quantity -2",
        ),
        (
            lambda p: [f"{p}3", "G", "MUG", "six", "2011-05-01 10:00:00", "3.00", "", "EIRE"],
            4,
            "Quantity 'six' is not a whole number",
        ),
        (
            lambda p: [f"{p}3", "G", "MUG", "2", "2011-05-01 10:00:00", "3,00", "", "EIRE"],
            4,
            "Price '3,00' is not a number",
        ),
        (lambda p: [f"C{p}3", "G", "MUG", "2", "2011-05-01 10:00:00", "3.00", "", "EIRE"], 4, "must be < 0"),
        (
            lambda p: [f"{p}3", "G", "MUG", "9999999999", "2011-05-01 10:00:00", "3.00", "", "EIRE"],
            4,
            "Quantity 9999999999 is beyond 100,000",
        ),
        (
            lambda p: [f"{p}3" * 20, "G", "MUG", "2", "2011-05-01 10:00:00", "3.00", "", "EIRE"],
            4,
            "longer than 40",
        ),
    ],
    ids=[
        "bad-date",
        "negative-quantity",
        "non-numeric-quantity",
        "non-numeric-price",
        "positive-cancellation",
        "huge-quantity",
        "long-invoice",
    ],
)
def test_a_bad_row_is_refused_with_its_line_and_nothing_is_imported(
    sessions: SessionFactory, tmp_path: Path, bad, line: int, words: str
) -> None:
    p = invoice_prefix()
    path = write_retail(tmp_path / "bad.csv.gz", [good_row(p, 1), good_row(p, 2), bad(p), good_row(p, 4)])
    before = row_counts(sessions)
    with pytest.raises(HistoryImportError) as refused:
        import_history(sessions, path, HistoryFormat.online_retail)
    assert str(refused.value).startswith(f"bad.csv.gz line {line}: ")
    assert words in str(refused.value)
    assert row_counts(sessions) == before


def test_wrong_columns_are_refused_naming_the_missing_column(
    sessions: SessionFactory, tmp_path: Path
) -> None:
    header = [c for c in RETAIL_HEADER if c != "Quantity"]
    path = write_retail(
        tmp_path / "cols.csv", [["1", "G", "MUG", "2011-05-01 10:00:00", "3.00", "", "EIRE"]], header
    )
    before = row_counts(sessions)
    with pytest.raises(HistoryImportError, match=r"^cols.csv line 1: missing column Quantity "):
        import_history(sessions, path, HistoryFormat.online_retail)
    assert row_counts(sessions) == before


def test_an_unknown_warehouse_is_refused(sessions: SessionFactory, tmp_path: Path) -> None:
    path = write_retail(tmp_path / "ok.csv", [good_row(invoice_prefix(), 1)])
    before = row_counts(sessions)
    with pytest.raises(HistoryImportError, match="warehouse NOPE does not exist"):
        import_history(sessions, path, HistoryFormat.online_retail, warehouse="NOPE")
    assert row_counts(sessions) == before


# ---- Olist: a hand-made folder ----


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([header, *rows])


def olist_folder(folder: Path, p: str, review_score: str = "5") -> Path:
    folder.mkdir()
    o1, o2, o3 = f"{p}a", f"{p}b", f"{p}c"
    write_csv(
        folder / "olist_orders_dataset.csv",
        list(OLIST_COLUMNS["orders"]),
        [
            [o1, f"c{p}1", "delivered", "2018-01-02 10:00:00", "2018-01-02 11:00:00", "2018-01-03 09:00:00", "2018-01-09 15:30:00", "2018-01-20 00:00:00"],
            [o2, f"c{p}2", "canceled", "2018-02-01 08:00:00", "", "", "", "2018-02-20 00:00:00"],
            [o3, f"c{p}1", "processing", "2018-03-01 08:00:00", "2018-03-01 09:00:00", "", "", "2018-03-20 00:00:00"],
        ],
    )  # fmt: skip
    write_csv(
        folder / "olist_order_items_dataset.csv",
        [
            "order_id",
            "order_item_id",
            "product_id",
            "seller_id",
            "shipping_limit_date",
            "price",
            "freight_value",
        ],
        [
            [o1, "1", f"p{p}1", "s1", "2018-01-05 00:00:00", "49.90", "8.00"],
            [o1, "2", f"p{p}1", "s1", "2018-01-05 00:00:00", "49.90", "8.00"],
            [o1, "3", f"p{p}2", "s1", "2018-01-05 00:00:00", "10.00", "8.00"],
            [o3, "1", f"p{p}2", "s1", "2018-03-05 00:00:00", "10.00", "8.00"],
        ],
    )
    write_csv(
        folder / "olist_customers_dataset.csv",
        ["customer_id", "customer_unique_id", "customer_zip_code_prefix", "customer_city", "customer_state"],
        [
            [f"c{p}1", f"u{p}1", "01310", "sao paulo", "SP"],
            [f"c{p}2", f"u{p}2", "20040", "rio de janeiro", "RJ"],
        ],
    )
    write_csv(
        folder / "olist_products_dataset.csv",
        ["product_id", "product_category_name", "product_weight_g"],
        [[f"p{p}1", "beleza_saude", "350"], [f"p{p}2", "", ""]],
    )
    write_csv(
        folder / "olist_order_reviews_dataset.csv",
        [
            "review_id",
            "order_id",
            "review_score",
            "review_comment_title",
            "review_comment_message",
            "review_creation_date",
        ],
        [
            ["r1", o2, "1", "", "never came,\nnot happy", "2018-02-21 00:00:00"],  # a quoted line break
            ["r2", o1, review_score, "Ótimo", "chegou antes do prazo", "2018-01-10 00:00:00"],
        ],
    )
    write_csv(
        folder / "product_category_name_translation.csv",
        ["product_category_name", "product_category_name_english"],
        [["beleza_saude", "health_beauty"]],
    )
    return folder


def test_olist_folder_becomes_closed_historical_orders(sessions: SessionFactory, tmp_path: Path) -> None:
    p = uuid.uuid4().hex[:10]
    folder = olist_folder(tmp_path / "olist", p)

    summary = import_history(sessions, folder / "olist_orders_dataset.csv", HistoryFormat.olist)

    assert (summary.orders_imported, summary.cancelled_orders, summary.skipped) == (2, 1, {"not_finished": 1})
    assert (summary.lines, summary.units, summary.products_created, summary.customers_created) == (2, 3, 2, 2)
    delivered, cancelled = f"hist-olist-{p}a", f"hist-olist-{p}b"
    with sessions() as session:
        assert session.get(t.Order, f"hist-olist-{p}c") is None  # still processing when exported
        order = session.get(t.Order, delivered)
        assert (order.status, order.channel, order.currency, Decimal(order.total)) == (
            "completed",
            "marketplace",
            "BRL",
            Decimal("133.80"),  # items 109.80 and their freight 3 x 8.00: what the customer paid
        )
        # the freight is the order's shipping (issue 26): the journal and the report book it apart
        assert (order.subtotal, order.shipping, order.discounts, order.tax) == (
            Decimal("109.80"),
            Decimal("24.00"),
            Decimal("0.00"),
            Decimal("0.00"),
        )
        assert order.customer_id == f"hist-olist-u{p}1"
        assert (order.shipping_address["city"], order.shipping_address["postal_code"]) == (
            "sao paulo",
            "01310",
        )
        shipment = session.get(t.Shipment, f"{delivered}-S1")
        assert (shipment.shipped_at, shipment.delivered_at) == (
            datetime(2018, 1, 3, 9, 0, tzinfo=UTC),
            datetime(2018, 1, 9, 15, 30, tzinfo=UTC),
        )
        assert session.get(t.Shipment, f"{cancelled}-S1") is None
        assert session.get(t.Order, cancelled).status == "cancelled"
        feedback = session.get(t.Feedback, delivered)
        assert (feedback.score, feedback.comment) == (5, "Ótimo — chegou antes do prazo")
        assert session.get(t.Feedback, cancelled).comment == "never came,\nnot happy"
        product = session.get(t.Product, f"p{p}1")
        assert (product.name, Decimal(product.price), product.weight_g, product.active) == (
            f"health_beauty (p{p[:7]})",
            Decimal("49.90"),
            350,
            False,
        )
    assert lines(sessions, delivered) == [(f"p{p}1", 2, Decimal("49.90")), (f"p{p}2", 1, Decimal("10.00"))]
    assert picked(sessions, delivered) == {f"p{p}1": 2, f"p{p}2": 1}
    assert [(e[1], e[2]) for e in events(sessions, delivered)] == [
        ("order_received", "2 lines via marketplace (Olist)"),
        ("order_confirmed", "historical order"),
        ("delivery_promised", "2018-01-20"),
        ("shipment_shipped", f"{delivered}-S1 handed to the carrier"),
        ("shipment_delivered", f"{delivered}-S1 delivered"),
        ("order_completed", "imported from Olist"),
    ]
    assert [e[1] for e in events(sessions, cancelled)] == [
        "order_received",
        "delivery_promised",
        "order_cancelled",
    ]
    assert import_history(sessions, folder, HistoryFormat.olist).orders_already_present == 2


def test_olist_line_numbers_count_quoted_line_breaks(sessions: SessionFactory, tmp_path: Path) -> None:
    folder = olist_folder(tmp_path / "olist", uuid.uuid4().hex[:10], review_score="7")
    before = row_counts(sessions)
    with pytest.raises(HistoryImportError, match=r"^olist_order_reviews_dataset.csv line 4: review_score 7"):
        import_history(sessions, folder, HistoryFormat.olist)
    assert row_counts(sessions) == before


# ---- the command line ----


async def test_cli_prints_the_summary_and_refuses_a_bad_file(
    history_db: tuple[str, SessionFactory], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(database_url=history_db[0])
    path = write_retail(tmp_path / "sales.csv.gz", retail_rows(invoice_prefix()))
    status, out = await cli(settings, "import-history", str(path), "--format", "online-retail")
    assert status == 0
    assert "import-history (online-retail)" in out
    assert [
        line.split()[-1] for line in out.splitlines() if line.startswith(("orders imported", "units shipped"))
    ] == [
        "3",
        "14",
    ]
    status, out = await cli(settings, "import-history", str(path), "--format", "online-retail", "--json")
    assert status == 0 and '"orders_already_present": 3' in out

    bad = write_retail(
        tmp_path / "bad.csv", [good_row(invoice_prefix(), 1), ["1", "G", "MUG", "x", "", "1", "", ""]]
    )
    capsys.readouterr()
    status, out = await cli(settings, "import-history", str(bad), "--format", "online-retail")
    assert (status, out) == (2, "")
    assert "error: bad.csv line 3: Quantity 'x' is not a whole number" in capsys.readouterr().err


# ---- the real samples (shared/data beside the repository) ----

needs_retail = pytest.mark.skipif(
    not RETAIL_YEAR.is_file(), reason=f"the Online Retail year is not at {RETAIL_YEAR}"
)
# the sample's order ids are 32 hex digits (the hand-made ones above are shorter)
REAL_OLIST_ORDER = func.length(t.Order.id) == len("hist-olist-") + 32
needs_olist = pytest.mark.skipif(not OLIST.is_dir(), reason=f"the Olist sample is not at {OLIST}")


@needs_retail
def test_the_online_retail_year_imports_with_the_mega_orders_netted_out(
    sessions: SessionFactory, record_property
) -> None:
    started = time.perf_counter()
    summary = import_history(sessions, RETAIL_YEAR, HistoryFormat.online_retail)
    seconds = time.perf_counter() - started
    record_property("online_retail_import_seconds", round(seconds, 2))
    print(f"\nOnline Retail year: {summary.orders_imported} orders, {summary.lines} lines in {seconds:.1f} s")

    # the expectation, computed another way: pandas over the raw file
    raw = pd.read_csv(RETAIL_YEAR, dtype=str, keep_default_na=False)
    raw["q"], raw["price"] = raw.Quantity.astype(int), raw.Price.astype(float)
    sales = raw[
        ~raw.Invoice.str.startswith("C")
        & ~raw.StockCode.isin(NON_PRODUCT_CODES)
        & (raw.q > 0)
        & (raw.price > 0)
    ]
    assert summary.orders_imported + summary.orders_already_present == sales.Invoice.nunique() == 17_756
    assert summary.skipped["non_product"] == raw.StockCode.isin(["M", "POST"]).sum()
    with sessions() as session:
        assert (
            session.scalar(select(func.count()).select_from(t.Order).where(t.Order.id.like("hist-retail-5%")))
            == 17_756
        )
        skus = set(
            session.scalars(
                select(t.OrderLine.sku).where(t.OrderLine.order_id.like("hist-retail-5%")).distinct()
            )
        )
        assert skus == set(sales.StockCode) and len(skus) == 298  # the 300 minus M and POST
        for order_id, sku, day, mega in (
            ("hist-retail-581483", "23843", "2011-12-09", 80_995),
            ("hist-retail-541431", "23166", "2011-01-18", 74_215),
        ):
            assert session.get(t.Order, order_id).status == "cancelled"
            demand = session.scalar(
                select(func.coalesce(func.sum(t.Reservation.quantity), 0))
                .join(t.Shipment, t.Shipment.id == t.Reservation.shipment_id)
                .where(
                    t.Reservation.sku == sku,
                    t.Reservation.status == "picked",
                    t.Shipment.shipped_at >= datetime.fromisoformat(day).replace(tzinfo=UTC),
                    t.Shipment.shipped_at
                    < datetime.fromisoformat(day).replace(tzinfo=UTC) + pd.Timedelta(days=1),
                )
            )
            that_day = sales[(sales.StockCode == sku) & sales.InvoiceDate.str.startswith(day)].q.sum()
            assert mega in set(sales[sales.StockCode == sku].q)
            assert demand == that_day - mega < 1_000  # the cancelled mega order is no demand

    before = row_counts(sessions)
    again = import_history(sessions, RETAIL_YEAR, HistoryFormat.online_retail)
    assert (again.orders_imported, again.orders_already_present) == (0, 17_756)
    assert row_counts(sessions) == before


@needs_olist
def test_the_olist_sample_imports_its_finished_orders_by_status(sessions: SessionFactory) -> None:
    summary = import_history(sessions, OLIST, HistoryFormat.olist)

    raw = pd.read_csv(OLIST / "olist_orders_dataset.csv", dtype=str).order_status.value_counts()
    assert raw["delivered"] == 3_898
    under_way = raw.drop(["delivered", "canceled", "unavailable"]).sum()
    assert summary.skipped == {"not_finished": under_way} and under_way == 62
    assert summary.orders_imported + summary.orders_already_present == 4_000 - 62
    with sessions() as session:
        by_status = dict(
            session.execute(
                select(t.Order.status, func.count()).where(REAL_OLIST_ORDER).group_by(t.Order.status)
            ).all()
        )
        assert by_status == {"completed": raw["delivered"], "cancelled": raw["canceled"] + raw["unavailable"]}
        reviews = pd.read_csv(OLIST / "olist_order_reviews_dataset.csv", dtype=str)
        imported = {
            o.removeprefix("hist-olist-") for o in session.scalars(select(t.Order.id).where(REAL_OLIST_ORDER))
        }
        assert session.scalar(
            select(func.count())
            .select_from(t.Feedback)
            .where(func.length(t.Feedback.order_id) == len("hist-olist-") + 32)
        ) == len(set(reviews.order_id) & imported)

        # the freight is kept, to the cent (issue 26): each order's shipping is its items' freight, its
        # total items + freight; computed again here by pandas from the raw items file
        items = pd.read_csv(OLIST / "olist_order_items_dataset.csv", dtype=str)
        items = items[items.order_id.isin(imported)]
        want_freight = sum((Decimal(x) for x in items.freight_value), Decimal(0))
        want_goods = sum((Decimal(x) for x in items.price), Decimal(0))
        goods, freight, total = session.execute(
            select(func.sum(t.Order.subtotal), func.sum(t.Order.shipping), func.sum(t.Order.total)).where(
                REAL_OLIST_ORDER
            )
        ).one()
        assert (Decimal(goods), Decimal(freight)) == (want_goods, want_freight) and want_freight > 0
        assert Decimal(total) == want_goods + want_freight


def test_historical_orders_stay_out_of_the_live_views(sessions: SessionFactory, tmp_path: Path) -> None:
    """No workflow stands behind them: the dashboard's counts and the reconciler leave them out."""
    import_history(
        sessions,
        write_retail(tmp_path / "sales.csv", retail_rows(invoice_prefix())),
        HistoryFormat.online_retail,
    )
    with sessions() as session:
        assert (
            session.scalar(
                select(func.count()).select_from(t.Order).where(t.Order.imported_from.is_not(None))
            )
            > 0
        )
        assert orders_by_status(session) == {}  # this database holds historical orders only
    assert ended_orders_still_holding(sessions) == []
