"""Batch imports: CSV and JSON Lines files parsed and validated per order, placed once however often the
file is imported or the import is resumed (real dev server, real worker, real database)."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from db import SessionFactory
from domain import order_import
from domain.order_import import (
    CSV_COLUMNS,
    ImportFileError,
    ImportFormat,
    decode_import,
    format_rows,
    parse_import,
)
from models import tables as t
from models.imports import ImportState, ImportStatus
from models.orders import OrderInput
from models.workflow_names import order_id_of
from services import imports
from services.imports import (
    ImportBusy,
    ImportInterrupted,
    create_import,
    import_status,
    run_import,
    unfinished_imports,
)
from services.orders import UnknownOrder, order_view, place_order
from tests.helpers import add_products, cli, ledger, order_doc, unique, wait_status

PLACED = ("confirmed", "picking", "packed", "shipped")


# ---- files ----


def csv_row(order_id: str, sku: str, quantity: Any, **columns: Any) -> dict[str, Any]:
    """One CSV row (a line item) of an order for Ada; `columns` override any column."""
    return {
        "order_id": order_id,
        "channel": "csv",
        "customer_id": "C-7",
        "customer_name": "Ada Lovelace",
        "customer_email": "ada@example.com",
        "customer_phone": "+44 20 7946 0000",
        "ship_name": "Ada Lovelace",
        "ship_line1": "12 St James's Sq",
        "ship_line2": "",
        "ship_city": "London",
        "ship_postal_code": "SW1Y 4JH",
        "ship_country": "GB",
        "currency": "EUR",
        "payment_token": "tok_visa",
        "delivery_instructions": "",
        "sku": sku,
        "quantity": quantity,
        "unit_price": "",
        **columns,
    }


def csv_text(rows: list[dict[str, Any]], columns: list[str] | tuple[str, ...] = CSV_COLUMNS) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(columns), lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def jsonl(*docs: dict[str, Any] | str) -> str:
    return "\n".join(doc if isinstance(doc, str) else json.dumps(doc) for doc in docs) + "\n"


def by_id(parsed: list[order_import.ParsedOrder]) -> dict[str | None, order_import.ParsedOrder]:
    return {p.order_id: p for p in parsed}


# ---- parsing CSV ----


MONEY = {  # issue 26: order-level money columns, the same on every row of the order
    "shipping_title": "Standard",
    "shipping_price": "5.00",
    "shipping_tax_rate": "0.2",
    "shipping_tax": "1.00",
    "discount_code": "THREE",
    "discount_amount": "3.00",
    "total_price": "50.40",
}


def test_csv_takes_the_money_columns_and_reconciles_them():
    taxed = {"tax_title": "VAT", "tax_rate": "0.2"}
    rows = [
        csv_row("M-1", "MUG", 3, unit_price="10.00", tax_price="5.40", discount="3.00", **taxed, **MONEY),
        csv_row("M-1", "LAMP", 1, unit_price="10.00", tax_price="2.00", **taxed, **MONEY),
        csv_row("M-2", "MUG", 1, unit_price="10.00", **(MONEY | {"total_price": "50.41"})),
    ]
    parsed = by_id(parse_import(csv_text(rows), ImportFormat.csv))

    order = parsed["M-1"].order
    assert order is not None, parsed["M-1"].problems
    money = order.money([Decimal("10.00"), Decimal("10.00")])
    assert (money.subtotal, money.discounts, money.shipping, money.tax, money.total) == (
        Decimal("40.00"),
        Decimal("3.00"),
        Decimal("5.00"),
        Decimal("8.40"),
        Decimal("50.40"),
    )
    # the other order's figures do not add up: refused, the difference named; M-1 is not held back
    assert parsed["M-2"].order is None
    assert any("discount_codes add up to 3.00" in p for p in parsed["M-2"].problems)


def test_jsonl_takes_the_money_fields():
    doc = order_doc([("MUG", 2)], order_id="J-1")
    doc["lines"][0] |= {"unit_price": "10.00", "discount_allocations": [{"amount": "1.00"}]}
    doc |= {"shipping_lines": [{"title": "Post", "price": "4.00"}], "total_price": "23.00"}
    bad = doc | {"order_id": "J-2", "total_price": "23.01"}
    parsed = by_id(parse_import(jsonl(doc, bad), ImportFormat.jsonl))
    assert parsed["J-1"].order is not None and parsed["J-1"].problems == []
    assert parsed["J-2"].order is None and "a difference of 0.01" in " ".join(parsed["J-2"].problems)


def test_csv_groups_the_rows_of_an_order_wherever_they_are():
    text = csv_text([csv_row("A-1", "TEE", 1), csv_row("B-1", "MUG", 2), csv_row("A-1", "CAP", 3)])

    parsed = parse_import(text, ImportFormat.csv)

    assert [(p.order_id, p.rows, p.problems) for p in parsed] == [("A-1", "2, 4", []), ("B-1", "3", [])]
    first = parsed[0].order
    assert first is not None and first.channel == "csv" and first.shipping_address.line2 is None
    assert [(line.sku, line.quantity) for line in first.lines] == [("TEE", 1), ("CAP", 3)]
    assert first.customer.phone == "+44 20 7946 0000" and first.delivery_instructions is None


def test_csv_columns_in_any_order_and_optional_ones_left_out():
    optional = {"customer_phone", "ship_line2", "delivery_instructions", "unit_price"}
    optional |= set(order_import.ORDER_MONEY_COLUMNS) | set(order_import.LINE_MONEY_COLUMNS)
    columns = [c for c in reversed(CSV_COLUMNS) if c not in optional]
    (parsed,) = parse_import(csv_text([csv_row("A-1", "TEE", 2)], columns), ImportFormat.csv)
    assert parsed.problems == [] and parsed.order is not None
    assert parsed.order.customer.phone is None and parsed.order.lines[0].unit_price is None


def test_rows_of_one_order_must_agree_on_the_order_columns():
    text = csv_text(
        [
            csv_row("A-1", "TEE", 1),
            csv_row("B-1", "MUG", 1),
            csv_row("A-1", "CAP", 1, ship_city="Paris"),
        ]
    )

    parsed = by_id(parse_import(text, ImportFormat.csv))

    assert parsed["A-1"].order is None and parsed["A-1"].rows == "2, 4"
    assert parsed["A-1"].problems == [
        "lines 2, 4: ship_city: the rows of one order disagree ('London' on line 2, 'Paris' on line 4)"
    ]
    assert parsed["B-1"].order is not None and parsed["B-1"].problems == []


@pytest.mark.parametrize(
    ("quantity", "problem"),
    [
        ("0", "line 3: quantity: Input should be greater than 0"),
        ("-2", "line 3: quantity: Input should be greater than 0"),
        ("1.5", "line 3: quantity: Input should be a valid integer"),
        ("two", "line 3: quantity: Input should be a valid integer"),
        ("", "line 3: quantity: Field required"),
    ],
)
def test_a_bad_quantity_refuses_its_order_naming_the_line(quantity: str, problem: str):
    text = csv_text([csv_row("A-1", "TEE", 1), csv_row("A-1", "MUG", quantity), csv_row("B-1", "TEE", 1)])

    parsed = by_id(parse_import(text, ImportFormat.csv))

    assert (parsed["A-1"].order, parsed["A-1"].problems) == (None, [problem])
    assert parsed["B-1"].order is not None


def test_model_errors_name_the_rows_and_columns():
    text = csv_text(
        [
            csv_row("A-1", "TEE", 1, customer_email="ada.example.com"),
            csv_row("A-1", "MUG", 1, customer_email="ada.example.com", unit_price="1.234"),
            csv_row("B-1", "TEE", 1, ship_country="UK"),
        ]
    )

    parsed = by_id(parse_import(text, ImportFormat.csv))

    (email, price) = parsed["A-1"].problems
    assert email.startswith("lines 2-3: customer_email: value is not a valid email address")
    assert price == "line 3: unit_price: Decimal input should have no more than 2 decimal places"
    assert parsed["B-1"].problems == [
        "line 4: ship_country: Value error, 'UK' is not an ISO 3166-1 alpha-2 country code (like GB, DE, US)"
    ]


def test_a_row_without_an_order_id_is_refused_alone():
    text = csv_text([csv_row("A-1", "TEE", 1), csv_row("", "MUG", 1), csv_row("A-1", "CAP", 1)])

    first, missing = parse_import(text, ImportFormat.csv)

    assert (first.order_id, first.rows, first.problems) == ("A-1", "2, 4", [])
    assert (missing.order_id, missing.rows, missing.order) == (None, "3", None)
    assert missing.problems == [
        "line 3: order_id: missing (every order needs its id: it keeps a re-import from placing the order twice)"
    ]


def test_line_numbers_count_quoted_line_breaks_and_blank_lines():
    text = csv_text([csv_row("A-1", "TEE", 1, delivery_instructions="ring twice\nthen wait")])
    text += "\n" + csv_text([csv_row("B-1", "TEE", 0)]).split("\n", 1)[1]  # blank line 4, then row 5

    parsed = by_id(parse_import(text, ImportFormat.csv))

    assert parsed["A-1"].rows == "2" and parsed["A-1"].order is not None
    assert parsed["A-1"].order.delivery_instructions == "ring twice\nthen wait"
    assert parsed["B-1"].problems == ["line 5: quantity: Input should be greater than 0"]


@pytest.mark.parametrize(
    ("header", "named"),
    [
        ([*CSV_COLUMNS, "gift_wrap", "vip"], "unknown column gift_wrap, vip"),
        ([c for c in CSV_COLUMNS if c not in ("sku", "currency")], "missing column currency, sku"),
        ([*CSV_COLUMNS, "sku"], "column sku appears more than once"),
    ],
)
def test_a_header_that_does_not_fit_refuses_the_whole_file(header: list[str], named: str):
    text = ",".join(header) + "\n" + ",".join("x" for _ in header) + "\n"
    with pytest.raises(ImportFileError, match=named):
        parse_import(text, ImportFormat.csv)


def test_a_csv_file_without_header_or_with_broken_quoting_is_refused_whole():
    with pytest.raises(ImportFileError, match="no header row"):
        parse_import("\n\n", ImportFormat.csv)
    broken = csv_text([csv_row("A-1", "TEE", 1)]) + 'B-1,"never closed\n'
    with pytest.raises(ImportFileError, match="line 3: malformed CSV"):
        parse_import(broken, ImportFormat.csv)


# ---- parsing JSON Lines ----


def test_jsonl_every_line_an_order_each_refused_on_its_own():
    good = order_doc([("TEE", 1)])
    no_id = {k: v for k, v in order_doc([("TEE", 1)]).items() if k != "order_id"}
    bad_qty = order_doc([("TEE", 0)])
    deep = "[" * 1000 + "]" * 1000
    text = jsonl(
        good, "", "   ", '{"order_id": "X-1", ', no_id, bad_qty, {**good, "channel": "fax"}, deep, "[1]"
    )

    parsed = parse_import(text, ImportFormat.jsonl)

    assert [(p.rows, p.order_id, p.order is not None) for p in parsed] == [
        ("1", good["order_id"], True),
        ("4", None, False),
        ("5", None, False),
        ("6", bad_qty["order_id"], False),
        ("7", good["order_id"], False),
        ("8", None, False),
        ("9", None, False),
    ]
    problems = [p.problems for p in parsed]
    assert problems[1] == [
        "line 4: invalid JSON: Expecting property name enclosed in double quotes at column 21"
    ]
    assert problems[2] == [
        "line 5: order_id: missing (every order needs its id: it keeps a re-import from placing the order twice)"
    ]
    assert problems[3] == ["line 6: lines.0.quantity: Input should be greater than 0"]
    assert problems[4] == ["line 7: order_id: duplicate of line 1 in this file"]
    assert problems[5] == ["line 8: invalid JSON: nested too deeply"]
    assert problems[6] == ["line 9: order: Input should be a valid dictionary or instance of OrderInput"]


@pytest.mark.parametrize(
    "line",
    [
        "[" * 100_000,
        '{"order_id": "X-1", "customer": ' + "[" * 5000 + "]" * 5000 + "}",
        '{"order_id": "X-1", "lines": [{"quantity": ' + "9" * 5000 + "}]}",
    ],
    ids=["nesting-100000", "nested-field", "huge-number"],
)
def test_pathological_json_is_refused_not_crashing(line: str):
    (parsed,) = parse_import(line + "\n", ImportFormat.jsonl)
    assert parsed.order is None and parsed.problems[0].startswith("line 1: invalid JSON")


def test_at_most_max_orders_per_file_the_rest_refused_as_one(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(order_import, "MAX_IMPORT_ORDERS", 2)
    docs = [order_doc([("TEE", 1)], order_id=f"L-{i}") for i in range(5)]

    parsed = parse_import(jsonl(*docs), ImportFormat.jsonl)

    assert [p.order_id for p in parsed] == ["L-0", "L-1", None]
    assert parsed[2].rows == "3-5" and parsed[2].order is None
    assert parsed[2].problems == [
        "lines 3-5: 3 more order(s), from line 3 on, were not imported: a file holds at most 2 orders "
        "(import them in another file)"
    ]
    rows = [csv_row(f"C-{i}", "TEE", 1) for i in range(4)] + [csv_row("C-0", "MUG", 1)]
    parsed = parse_import(csv_text(rows), ImportFormat.csv)
    assert [(p.order_id, p.rows) for p in parsed] == [("C-0", "2, 6"), ("C-1", "3"), (None, "4-5")]
    assert "2 more order(s), from line 4 on (order ids C-2 … C-3), were not imported" in parsed[2].problems[0]


def test_text_must_be_utf8_and_rows_read_like_people_write_them():
    assert decode_import("\ufefforder_id,ü\n".encode()) == "order_id,ü\n"
    with pytest.raises(ImportFileError, match="not UTF-8 text: byte 0xe9 on line 2"):
        decode_import("order_id\ncaf\u00e9\n".encode("latin-1"))
    assert format_rows([7, 4, 5, 6, 9]) == "4-7, 9"
    long = format_rows(range(1, 2000, 2))
    assert len(long) <= 200 and long.endswith(", …")


def test_the_documented_example_is_a_valid_file():
    doc = (Path(__file__).parent.parent / "docs" / "orders.md").read_text()
    example = doc.split("## Importing orders in bulk", 1)[1].split("```csv\n", 1)[1].split("```", 1)[0]

    parsed = parse_import(example, ImportFormat.csv)

    assert [(p.order_id, p.rows, p.problems) for p in parsed] == [("B-2001", "2, 4", []), ("B-2002", "3", [])]


# ---- end to end: the command line ----


def payments(sessions: SessionFactory, order_id: str, kind: str) -> int:
    with sessions() as session:
        return (
            session.scalar(
                select(func.count(t.Payment.id)).where(
                    t.Payment.order_id == order_id, t.Payment.kind == kind, t.Payment.status == "approved"
                )
            )
            or 0
        )


def refusals(out: str) -> list[tuple[str, str, str]]:
    """The rows of the printed table of refused orders: (LINES, ORDER, REASON)."""
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("LINES"))
    order_at, reason_at = lines[header].index("ORDER"), lines[header].index("REASON")
    return [
        (line[:order_at].strip(), line[order_at:reason_at].strip(), line[reason_at:].strip())
        for line in lines[header + 2 :]
        if line.strip()
    ]


async def assert_never_started(client: Client, *order_ids: str) -> None:
    for order_id in order_ids:
        with pytest.raises(UnknownOrder):
            await order_view(client, order_id)


@pytest.mark.usefixtures("worker")
async def test_import_a_csv_file_then_import_it_again(client, settings, sessions, tmp_path, capsys):
    skus = add_products(sessions, {"TEE": 20, "MUG": 20}, price="10.00")
    good1, good2, zero, split = unique("G"), unique("G"), unique("B"), unique("B")
    rows = [
        csv_row(good1, skus["TEE"], 1),  # line 2
        csv_row(zero, skus["TEE"], 0),  # line 3: a bad quantity
        csv_row(good2, skus["MUG"], 3),  # line 4
        csv_row(split, skus["TEE"], 1),  # line 5
        csv_row("", skus["TEE"], 1),  # line 6: no order id
        csv_row(good1, skus["MUG"], 2),  # line 7: the second line of good1
        csv_row(split, skus["MUG"], 1, ship_postal_code="10115"),  # line 8: disagrees with line 5
    ]
    path = tmp_path / "orders.csv"
    path.write_text(csv_text(rows))

    status, out = await cli(settings, "import", str(path))

    assert status == 1
    assert ": 5 order(s): accepted 2, duplicates 0, refused 3" in out
    assert refusals(out) == [
        ("3", zero, "line 3: quantity: Input should be greater than 0"),
        (
            "5, 8",
            split,
            "lines 5, 8: ship_postal_code: the rows of one order disagree ('SW1Y 4JH' on line 5, "
            "'10115' on line 8)",
        ),
        (
            "6",
            "-",
            "line 6: order_id: missing (every order needs its id: it keeps a re-import from placing the order twice)",
        ),
    ]
    assert "3 of 5 orders were refused" in capsys.readouterr().err
    view = await wait_status(client, good1, *PLACED)
    assert [(line.sku, line.quantity) for line in view.lines] == [(skus["TEE"], 1), (skus["MUG"], 2)]
    assert view.channel == "csv"
    await wait_status(client, good2, *PLACED)
    await assert_never_started(client, zero, split)

    again, out = await cli(settings, "import", str(path), "--json")

    assert again == 1
    second = ImportStatus.model_validate_json(out)
    assert (second.total, second.accepted, second.duplicates, second.refused) == (5, 0, 2, 3)
    assert (second.status, second.pending) == (ImportState.done, 0)
    assert second.duplicate_orders == [good1, good2]
    assert [(p.rows, p.order_id) for p in second.problems] == [("3", zero), ("5, 8", split), ("6", None)]
    for order_id in (good1, good2):
        assert payments(sessions, order_id, "authorization") == 1
        assert ledger(sessions, order_id)["authorization"] == Decimal("30.00")
    await assert_never_started(client, zero, split)


@pytest.mark.usefixtures("worker")
async def test_import_json_lines_with_duplicates_and_conflicts(client, settings, sessions, tmp_path, capsys):
    skus = add_products(sessions, {"TEE": 20})
    earlier = order_doc([(skus["TEE"], 1)])
    conflicting = order_doc([(skus["TEE"], 1)])
    await place_order(client, settings, OrderInput.model_validate(earlier))
    await place_order(client, settings, OrderInput.model_validate(conflicting))
    fresh = order_doc([(skus["TEE"], 2)], channel="marketplace")
    path = tmp_path / "batch.ndjson"
    path.write_text(
        jsonl(earlier, {**conflicting, "lines": [{"sku": skus["TEE"], "quantity": 5}]}, "", fresh)
    )

    status, out = await cli(settings, "import", str(path))

    assert status == 1
    assert ": 3 order(s): accepted 1, duplicates 1, refused 1" in out
    assert f"already placed before, nothing new started: {earlier['order_id']}" in out
    assert f"order {conflicting['order_id']} was placed before with different content" in out
    assert "1 of 3 orders were refused" in capsys.readouterr().err
    for doc in (earlier, conflicting, fresh):
        await wait_status(client, doc["order_id"], *PLACED)
        assert payments(sessions, doc["order_id"], "authorization") == 1
    assert (await order_view(client, conflicting["order_id"])).lines[0].quantity == 1  # untouched


@pytest.mark.usefixtures("worker")
async def test_import_from_stdin_needs_the_format(client, settings, sessions, monkeypatch, capsys):
    skus = add_products(sessions, {"TEE": 5})
    doc = order_doc([(skus["TEE"], 1)])
    monkeypatch.setattr("sys.stdin", io.StringIO(jsonl(doc)))
    assert await cli(settings, "import", "-") == (2, "")
    assert "reading stdin needs --format" in capsys.readouterr().err

    monkeypatch.setattr("sys.stdin", io.StringIO(jsonl(doc)))
    status, out = await cli(settings, "import", "-", "--format", "jsonl")

    assert status == 0 and ": 1 order(s): accepted 1, duplicates 0, refused 0" in out
    await wait_status(client, doc["order_id"], *PLACED)


def import_count(sessions: SessionFactory) -> int:
    with sessions() as session:
        return session.scalar(select(func.count(t.OrderImport.id))) or 0


@pytest.mark.parametrize(
    ("name", "content", "argv", "message"),
    [
        ("orders.txt", b"{}", [], "cannot tell the format of"),
        ("orders.jsonl", "caf\u00e9".encode("latin-1"), [], "not UTF-8 text"),
        ("orders.csv", b"order_id,sku,colour\nA-1,TEE,red\n", [], "unknown column colour; missing column"),
        ("orders.csv", b"", [], "no header row"),
        ("orders.csv", b"", ["--format", "xml"], None),
    ],
    ids=["extension", "not-utf8", "bad-header", "empty-csv", "unknown-format"],
)
async def test_an_unreadable_file_exits_2_and_imports_nothing(
    settings, sessions, tmp_path, capsys, name: str, content: bytes, argv: list[str], message: str | None
):
    path = tmp_path / name
    path.write_bytes(content)
    before = import_count(sessions)

    if message is None:  # argparse refuses the choice itself
        with pytest.raises(SystemExit) as exit_:
            await cli(settings, "import", str(path), *argv)
        assert exit_.value.code == 2
    else:
        assert await cli(settings, "import", str(path), *argv) == (2, "")
        assert message in capsys.readouterr().err
    assert import_count(sessions) == before


async def test_a_missing_file_exits_2(settings, tmp_path, capsys):
    assert await cli(settings, "import", str(tmp_path / "missing.csv")) == (2, "")
    assert "cannot read" in capsys.readouterr().err


# ---- resuming, leases, outages ----


def outcomes(sessions: SessionFactory, import_id: str) -> list[tuple[str | None, str]]:
    with sessions() as session:
        return [
            (o.order_id, o.outcome)
            for o in session.scalars(
                select(t.ImportOutcome)
                .where(t.ImportOutcome.import_id == import_id)
                .order_by(t.ImportOutcome.seq)
            )
        ]


def set_lease(sessions: SessionFactory, import_id: str, from_now: timedelta | None) -> None:
    with sessions() as session:
        session.execute(
            update(t.OrderImport)
            .where(t.OrderImport.id == import_id)
            .values(lease_until=None if from_now is None else t.utcnow() + from_now)
        )
        session.commit()


def set_pending(sessions: SessionFactory, import_id: str, order_id: str, doc: dict[str, Any]) -> None:
    """As if the run had crashed after placing the order and before recording it."""
    with sessions() as session:
        session.execute(
            update(t.ImportOutcome)
            .where(t.ImportOutcome.import_id == import_id, t.ImportOutcome.order_id == order_id)
            .values(outcome="pending", order_json=OrderInput.model_validate(doc).model_dump_json())
        )
        session.commit()


@pytest.mark.usefixtures("worker")
async def test_a_resumed_import_places_each_order_once(client, settings, sessions):
    skus = add_products(sessions, {"TEE": 20})
    docs = [order_doc([(skus["TEE"], 1)]) for _ in range(4)]
    before, crashed, rest = docs[0], docs[1], docs[2:]
    ids = [doc["order_id"] for doc in docs]
    await place_order(client, settings, OrderInput.model_validate(before))  # placed before the import
    created = await asyncio.to_thread(create_import, sessions, jsonl(*docs), ImportFormat.jsonl, "test")
    assert (created.status, created.pending, created.created_by) == (ImportState.running, 4, "test")
    assert created.id in unfinished_imports(sessions)
    # A first runner placed one order and died holding its lease (which has run out since).
    await place_order(client, settings, OrderInput.model_validate(crashed))
    set_lease(sessions, created.id, timedelta(seconds=-1))
    seen: list[ImportStatus] = []

    status = await run_import(client, settings, sessions, created.id, progress=seen.append)

    assert (status.status, status.total, status.accepted, status.duplicates, status.pending) == (
        ImportState.done,
        4,
        3,
        1,
        0,
    )
    assert status.duplicate_orders == [before["order_id"]] and status.finished_at is not None
    assert [(s.accepted + s.duplicates, s.pending) for s in seen] == [(1, 3), (2, 2), (3, 1), (4, 0)]
    assert (seen[-1].accepted, seen[-1].duplicates) == (3, 1)
    assert created.id not in unfinished_imports(sessions)

    # Run again: nothing is pending, nothing is placed.
    seen.clear()
    assert await run_import(client, settings, sessions, created.id, progress=seen.append) == status
    assert seen == []

    # A crash after the last placement but before it was recorded: resuming counts it accepted once.
    set_pending(sessions, created.id, rest[-1]["order_id"], rest[-1])
    with sessions() as session:
        session.execute(update(t.OrderImport).where(t.OrderImport.id == created.id).values(status="running"))
        session.commit()
    resumed = await run_import(client, settings, sessions, created.id)
    assert (resumed.accepted, resumed.duplicates, resumed.pending, resumed.status) == (
        3,
        1,
        0,
        ImportState.done,
    )
    assert outcomes(sessions, created.id) == list(
        zip(ids, ["duplicate", "accepted", "accepted", "accepted"], strict=True)
    )
    for order_id in ids:
        await wait_status(client, order_id, *PLACED)
        assert payments(sessions, order_id, "authorization") == 1


@pytest.mark.usefixtures("worker")
async def test_two_runners_never_work_the_same_import(client, settings, sessions):
    skus = add_products(sessions, {"TEE": 20})
    docs = [order_doc([(skus["TEE"], 1)]) for _ in range(6)]
    created = await asyncio.to_thread(create_import, sessions, jsonl(*docs), ImportFormat.jsonl, None)

    set_lease(sessions, created.id, timedelta(seconds=30))  # another runner holds it
    with pytest.raises(ImportBusy, match="being run by another runner"):
        await run_import(client, settings, sessions, created.id)
    assert import_status(sessions, created.id).pending == 6  # type: ignore[union-attr]
    set_lease(sessions, created.id, None)

    results = await asyncio.gather(
        *(run_import(client, settings, sessions, created.id, concurrency=2) for _ in range(2)),
        return_exceptions=True,
    )

    finished = [r for r in results if isinstance(r, ImportStatus)]
    assert finished and all(isinstance(r, ImportStatus | ImportBusy) for r in results)
    status = import_status(sessions, created.id)
    assert status is not None
    assert (status.status, status.accepted, status.duplicates, status.pending) == (ImportState.done, 6, 0, 0)
    for doc in docs:
        await wait_status(client, doc["order_id"], *PLACED)
        assert payments(sessions, doc["order_id"], "authorization") == 1


@pytest.mark.usefixtures("worker")
async def test_a_runner_whose_lease_was_taken_over_stops(client, settings, sessions, monkeypatch):
    monkeypatch.setattr(imports, "RENEW_EVERY", 0.005)  # renew (and so notice a takeover) at once
    skus = add_products(sessions, {"TEE": 20})
    docs = [order_doc([(skus["TEE"], 1)]) for _ in range(8)]
    created = await asyncio.to_thread(create_import, sessions, jsonl(*docs), ImportFormat.jsonl, None)

    def take_over(now: ImportStatus) -> None:  # after the first order, another runner takes the import
        if now.accepted == 1:
            set_lease(sessions, created.id, timedelta(minutes=5))

    with pytest.raises(ImportBusy, match="taken over by another runner"):
        await run_import(client, settings, sessions, created.id, progress=take_over, concurrency=1)

    status = import_status(sessions, created.id)
    assert status is not None and status.status == ImportState.running and status.pending < 8
    set_lease(sessions, created.id, None)  # the other runner is gone
    finished = await run_import(client, settings, sessions, created.id)
    assert (finished.status, finished.accepted, finished.pending) == (ImportState.done, 8, 0)
    for doc in docs:
        await wait_status(client, doc["order_id"], *PLACED)
        assert payments(sessions, doc["order_id"], "authorization") == 1


class TemporalDown:
    """The real client, except that starting the named orders' workflows fails as if Temporal were down."""

    def __init__(self, client: Client, failing: set[str]) -> None:
        self._client = client
        self.failing = failing

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    async def start_workflow(self, *args: Any, id: str, **kwargs: Any) -> Any:
        if order_id_of(id) in self.failing:
            raise RPCError("connection refused", RPCStatusCode.UNAVAILABLE, b"")
        return await self._client.start_workflow(*args, id=id, **kwargs)


@pytest.mark.usefixtures("worker")
async def test_a_temporal_outage_mid_import_loses_no_order(client, settings, sessions):
    skus = add_products(sessions, {"TEE": 20})
    docs = [order_doc([(skus["TEE"], 1)]) for _ in range(3)]
    first, failing, never_tried = (doc["order_id"] for doc in docs)
    created = await asyncio.to_thread(create_import, sessions, jsonl(*docs), ImportFormat.jsonl, "cli:test")
    down = TemporalDown(client, {failing})

    with pytest.raises(ImportInterrupted) as stopped:
        await run_import(down, settings, sessions, created.id, concurrency=1)  # type: ignore[arg-type]

    status = stopped.value.status
    assert (status.status, status.accepted, status.pending) == (ImportState.running, 1, 2)
    assert "2 order(s) not yet placed" in str(stopped.value) and "connection refused" in str(stopped.value)
    assert outcomes(sessions, created.id) == [
        (first, "accepted"),
        (failing, "pending"),
        (never_tried, "pending"),
    ]
    await assert_never_started(client, failing, never_tried)
    with sessions() as session:
        assert session.get(t.OrderImport, created.id).lease_until is None  # type: ignore[union-attr]
    assert created.id in unfinished_imports(sessions)

    finished = await run_import(client, settings, sessions, created.id)

    assert (finished.status, finished.accepted, finished.duplicates, finished.pending) == (
        ImportState.done,
        3,
        0,
        0,
    )
    for order_id in (first, failing, never_tried):
        view = await wait_status(client, order_id, *PLACED)
        assert any(e.type == "order_received" for e in view.events)
        assert payments(sessions, order_id, "authorization") == 1
