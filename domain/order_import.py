"""Batch order files, parsed and validated: JSON Lines (one order document a line) or CSV (one row a
line item, grouped by order id). Pure parsing: no Temporal, no database.

Every order is validated by `OrderInput`, the same model as `place` and the HTTP API use, and its
problems name the file's lines (a CSV file's header is line 1) and the field or column, so a person can
find and fix them. One bad row refuses its own order only. Every order needs an `order_id`: it is the
idempotency key that makes re-importing a file safe.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

from pydantic import ValidationError

from models import strict_json
from models.imports import ImportFormat
from models.orders import OrderInput
from models.text import printable
from models.validation import field_problems

__all__ = [
    "CSV_COLUMNS",
    "MAX_IMPORT_ORDERS",
    "ImportFileError",
    "ImportFormat",
    "ParsedOrder",
    "decode_import",
    "format_for",
    "format_rows",
    "parse_import",
]

MAX_IMPORT_ORDERS = 10_000  # orders per file; the rest are refused (import them in another file)
MAX_ROWS_TEXT = 200  # the length of a `rows` text (it is stored in a String(200) column)

# Order-level CSV columns: where each goes in the order document. They must agree across an order's rows.
ORDER_COLUMNS: dict[str, tuple[str, ...]] = {
    "channel": ("channel",),
    "customer_id": ("customer", "id"),
    "customer_name": ("customer", "name"),
    "customer_email": ("customer", "email"),
    "customer_phone": ("customer", "phone"),
    "ship_name": ("shipping_address", "name"),
    "ship_line1": ("shipping_address", "line1"),
    "ship_line2": ("shipping_address", "line2"),
    "ship_city": ("shipping_address", "city"),
    "ship_postal_code": ("shipping_address", "postal_code"),
    "ship_country": ("shipping_address", "country"),
    "currency": ("currency",),
    "payment_token": ("payment", "token"),
    "delivery_instructions": ("delivery_instructions",),
}
# The order's money (issue 26, docs/orders.md), all optional: one shipping line, one discount code and
# per row one tax line and one discount allocation (JSON Lines takes any number of each).
ORDER_MONEY_COLUMNS = (
    "shipping_title",
    "shipping_price",
    "shipping_tax_rate",
    "shipping_tax",
    "discount_code",
    "discount_amount",
    "taxes_included",
    "total_price",
)
LINE_COLUMNS = ("sku", "quantity", "unit_price")  # one line item per row
LINE_MONEY_COLUMNS = ("tax_title", "tax_rate", "tax_price", "discount")
CSV_COLUMNS = ("order_id", *ORDER_COLUMNS, *ORDER_MONEY_COLUMNS, *LINE_COLUMNS, *LINE_MONEY_COLUMNS)
OPTIONAL_COLUMNS = frozenset(
    {"customer_phone", "ship_line2", "delivery_instructions", "unit_price"}
    | set(ORDER_MONEY_COLUMNS)
    | set(LINE_MONEY_COLUMNS)
)
COLUMN_OF = {path: column for column, path in ORDER_COLUMNS.items()} | {("order_id",): "order_id"}

JSONL_SUFFIXES = {".jsonl": ImportFormat.jsonl, ".ndjson": ImportFormat.jsonl, ".csv": ImportFormat.csv}
MISSING_ID = "missing (every order needs its id: it keeps a re-import from placing the order twice)"


class ImportFileError(ValueError):
    """The file itself cannot be read as an import (not UTF-8, a bad CSV header, malformed CSV):
    nothing in it is imported."""


@dataclass
class ParsedOrder:
    order_id: str | None  # as the file gives it (None when it has none)
    rows: str  # the file's line numbers it came from: "3", "4-6", "4, 7"
    order: OrderInput | None  # the validated order; None when refused
    problems: list[str] = field(default_factory=list)  # each naming the line(s) and the field or column


def format_for(name: str) -> ImportFormat | None:
    """The format a file name's extension names (.csv, .jsonl, .ndjson), or None."""
    return JSONL_SUFFIXES.get(PurePath(name).suffix.lower())


def decode_import(data: bytes) -> str:
    """A file's bytes as text: UTF-8 (a leading byte-order mark is dropped), else ImportFileError."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ImportFileError(
            f"the file is not UTF-8 text: byte 0x{data[exc.start]:02x} on line {line} "
            f"(save it as UTF-8 and import it again)"
        ) from None
    return text.removeprefix("\ufeff")


def parse_import(text: str, fmt: ImportFormat) -> list[ParsedOrder]:
    """Every order of the file, in file order, validated or refused with its problems.

    Raises ImportFileError when the file as a whole is unreadable (for CSV: no header, unknown,
    missing or repeated columns, broken quoting)."""
    text = text.removeprefix("\ufeff")
    if ImportFormat(fmt) == ImportFormat.csv:
        return _parse_csv(text)
    return _parse_jsonl(text)


def format_rows(lines: Iterable[int], limit: int = MAX_ROWS_TEXT) -> str:
    """Line numbers as people read them: "5", "4-6", "4, 7, 9-12" (cut short with "…" past `limit`)."""
    numbers = sorted(set(lines))
    runs: list[str] = []
    start = prev = None
    for n in [*numbers, None]:
        if prev is not None and n == prev + 1:
            prev = n
            continue
        if start is not None:
            runs.append(str(start) if start == prev else f"{start}-{prev}")
        start = prev = n
    text = ", ".join(runs)
    if len(text) <= limit:
        return text
    cut = text[: limit - 3].rsplit(", ", 1)[0]
    return f"{cut}, …"


def _where(lines: Iterable[int]) -> str:
    numbers = set(lines)
    return f"line {format_rows(numbers)}" if len(numbers) == 1 else f"lines {format_rows(numbers)}"


def _limit(parsed: list[ParsedOrder], first_lines: list[int], last_line: int, ids: Sequence[str]) -> None:
    """Refuse, as one entry, the orders after the first MAX_IMPORT_ORDERS (in place)."""
    if len(parsed) <= MAX_IMPORT_ORDERS:
        return
    rest = len(parsed) - MAX_IMPORT_ORDERS
    first = first_lines[MAX_IMPORT_ORDERS]
    named = [i for i in ids if i]
    which = f" (order ids {named[0]} … {named[-1]})" if len(named) > 1 else ""
    del parsed[MAX_IMPORT_ORDERS:]
    rows = f"{first}-{last_line}" if last_line > first else str(first)
    parsed.append(
        ParsedOrder(
            order_id=None,
            rows=rows,
            order=None,
            problems=[
                f"{'lines' if '-' in rows else 'line'} {rows}: {rest} more order(s), from line {first} on{which}, "
                f"were not imported: a file holds at most {MAX_IMPORT_ORDERS} orders (import them in another file)"
            ],
        )
    )


def _display_id(value: Any) -> str | None:
    """An order id as the file gives it, for people (None when it is not text; cut to 64 characters;
    control characters escaped, so that the refusal can be stored and shown)."""
    if not isinstance(value, str) or not value.strip():
        return None
    value = printable(value.strip())
    return value if len(value) <= 64 else value[:63] + "…"


# ---- JSON Lines ----


def _parse_jsonl(text: str) -> list[ParsedOrder]:
    parsed: list[ParsedOrder] = []
    first_lines: list[int] = []
    ids: list[str] = []
    seen: dict[str, int] = {}  # order id -> the line it first appeared on
    last_line = 0
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.removesuffix("\r")
        if not line.strip():
            continue
        last_line = number
        if len(parsed) >= MAX_IMPORT_ORDERS:  # beyond the limit: counted, not parsed
            parsed.append(ParsedOrder(None, str(number), None))
            first_lines.append(number)
            ids.append("")
            continue
        order = _jsonl_order(number, line, seen)
        parsed.append(order)
        first_lines.append(number)
        ids.append(order.order_id or "")
    _limit(parsed, first_lines, last_line, ids[MAX_IMPORT_ORDERS:])
    return parsed


def _jsonl_order(number: int, line: str, seen: dict[str, int]) -> ParsedOrder:
    where = f"line {number}"
    try:
        data = strict_json.loads(line)
    except strict_json.DuplicateKeys as exc:
        return ParsedOrder(None, str(number), None, [f"{where}: {problem}" for problem in exc.problems])
    except json.JSONDecodeError as exc:
        return ParsedOrder(
            None, str(number), None, [f"{where}: invalid JSON: {exc.msg} at column {exc.colno}"]
        )
    except RecursionError:
        return ParsedOrder(None, str(number), None, [f"{where}: invalid JSON: nested too deeply"])
    except ValueError:  # an integer of thousands of digits
        return ParsedOrder(None, str(number), None, [f"{where}: invalid JSON: a number is too long"])
    raw_id = data.get("order_id") if isinstance(data, dict) else None
    order_id = _display_id(raw_id)
    if isinstance(raw_id, str) and order_id is not None:
        key = raw_id.strip()
        if key in seen:
            return ParsedOrder(
                order_id,
                str(number),
                None,
                [f"{where}: order_id: duplicate of line {seen[key]} in this file"],
            )
        seen[key] = number
    problems = []
    if isinstance(data, dict) and raw_id in (None, ""):
        problems.append(f"{where}: order_id: {MISSING_ID}")
    try:
        order = OrderInput.model_validate(data)
    except ValidationError as exc:
        problems += [f"{where}: {problem}" for problem in field_problems(exc)]
        order = None
    except (RecursionError, ValueError) as exc:  # pathological input the validator cannot walk
        problems.append(f"{where}: order: cannot be validated ({type(exc).__name__})")
        order = None
    return ParsedOrder(order_id, str(number), None if problems else order, problems)


# ---- CSV ----


@dataclass
class _Row:
    line: int
    cells: dict[str, str]
    problems: list[str]


def _parse_csv(text: str) -> list[ParsedOrder]:
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header: list[str] | None = None
    rows: list[_Row] = []
    end = 0  # the last physical line read so far
    try:
        for record in reader:
            start, end = end + 1, reader.line_num
            if not any(cell.strip() for cell in record):
                continue  # a blank line
            if header is None:
                header = _header(record, start)
                continue
            rows.append(_row(record, start, header))
    except csv.Error as exc:
        raise ImportFileError(f"line {end + 1}: malformed CSV: {exc}") from None
    if header is None:
        raise ImportFileError(
            "the file has no header row; the first line names the columns: " + ", ".join(CSV_COLUMNS)
        )

    # Group the rows by order id (an order's rows need not be adjacent); a row without one is refused.
    groups: dict[str, list[_Row]] = {}
    entries: list[tuple[int, str | None, list[_Row]]] = []  # (first line, order id, rows), in file order
    for row in rows:
        order_id = row.cells.get("order_id", "")
        if not order_id:
            row.problems.append(f"line {row.line}: order_id: {MISSING_ID}")
            entries.append((row.line, None, [row]))
        elif order_id in groups:
            groups[order_id].append(row)
        else:
            groups[order_id] = [row]
            entries.append((row.line, order_id, groups[order_id]))

    parsed: list[ParsedOrder] = []
    for index, (_, entry_id, group) in enumerate(entries):
        if index >= MAX_IMPORT_ORDERS:
            parsed.append(ParsedOrder(entry_id, "", None))  # counted by _limit, never validated
            continue
        parsed.append(_csv_order(entry_id, group))
    last_line = max((row.line for _, _, group in entries[MAX_IMPORT_ORDERS:] for row in group), default=0)
    _limit(
        parsed,
        [first for first, _, _ in entries],
        last_line,
        [i or "" for _, i, _ in entries[MAX_IMPORT_ORDERS:]],
    )
    return parsed


def _header(record: list[str], line: int) -> list[str]:
    names = [cell.strip().lower() for cell in record]
    problems = []
    unnamed = [str(i) for i, name in enumerate(names, start=1) if not name]
    if unnamed:
        problems.append(f"column {', '.join(unnamed)} has no name")
    unknown = [name for name in names if name and name not in CSV_COLUMNS]
    if unknown:
        problems.append(f"unknown column {', '.join(unknown)}")
    repeated = sorted({name for name in names if name and names.count(name) > 1})
    if repeated:
        problems.append(f"column {', '.join(repeated)} appears more than once")
    missing = [name for name in CSV_COLUMNS if name not in names and name not in OPTIONAL_COLUMNS]
    if missing:
        problems.append(f"missing column {', '.join(missing)}")
    if problems:
        raise ImportFileError(
            f"line {line}: the CSV header does not fit: {'; '.join(problems)} "
            f"(the columns are {', '.join(CSV_COLUMNS)})"
        )
    return names


def _row(record: list[str], line: int, header: list[str]) -> _Row:
    problems = []
    extra = record[len(header) :]
    if any(cell.strip() for cell in extra):
        problems.append(f"line {line}: the row has {len(record)} fields, the header {len(header)} columns")
    # Cells missing at the end of a short row are empty: a required one is then reported as required.
    cells = {name: (record[i].strip() if i < len(record) else "") for i, name in enumerate(header)}
    return _Row(line, cells, problems)


def _csv_order(order_id: str | None, group: list[_Row]) -> ParsedOrder:
    lines = [row.line for row in group]
    rows = format_rows(lines)
    problems = [problem for row in group for problem in row.problems]
    if order_id is None:
        return ParsedOrder(None, rows, None, problems)

    # Order-level columns must agree across the order's rows.
    disagreeing = set()
    for column in (*ORDER_COLUMNS, *ORDER_MONEY_COLUMNS):
        values: dict[str, int] = {}
        for row in group:
            values.setdefault(row.cells.get(column, ""), row.line)
        if len(values) > 1:
            disagreeing.add(column)
            shown = ", ".join(f"{_quote(value)} on line {at}" for value, at in values.items())
            problems.append(f"{_where(lines)}: {column}: the rows of one order disagree ({shown})")

    first = group[0].cells
    doc: dict[str, Any] = {"order_id": order_id, "payment": {"method": "card"}}
    for column, path in ORDER_COLUMNS.items():
        value = first.get(column, "")
        if value:
            _put(doc, path, value)
        elif column in OPTIONAL_COLUMNS:
            _put(doc, path, None)
        else:
            _put(doc, path[:-1], None, create_only=True)  # a required field left out: "Field required"
    doc["lines"] = [_line(row.cells) for row in group]
    doc.update(_order_money(first))

    try:
        order = OrderInput.model_validate(doc)
    except ValidationError as exc:
        order = None
        for err in exc.errors():
            loc = tuple(err["loc"])
            where, column = _locate(loc, lines)
            if column not in disagreeing:
                problems.append(f"{_where(where)}: {column}: {err['msg']}")
    return ParsedOrder(_display_id(order_id), rows, None if problems else order, problems)


def _line(cells: dict[str, str]) -> dict[str, Any]:
    line: dict[str, Any] = {}
    if cells.get("sku"):
        line["sku"] = cells["sku"]
    quantity = cells.get("quantity", "")
    if quantity:
        digits = quantity.removeprefix("+").removeprefix("-")
        # a whole number becomes an int; anything else stays text, which the model refuses as not an integer
        line["quantity"] = (
            int(quantity) if digits.isascii() and digits.isdigit() and len(digits) <= 18 else quantity
        )
    if cells.get("unit_price"):
        line["unit_price"] = cells["unit_price"]
    if cells.get("tax_price") or cells.get("tax_rate") or cells.get("tax_title"):
        tax = {"title": cells.get("tax_title") or "tax", "rate": cells.get("tax_rate") or "0"}
        line["tax_lines"] = [tax | {"price": cells.get("tax_price") or None}]
    if cells.get("discount"):
        line["discount_allocations"] = [{"amount": cells["discount"]}]
    return line


def _order_money(cells: dict[str, str]) -> dict[str, Any]:
    """The order-level money columns as the order document's fields (left out when empty)."""
    doc: dict[str, Any] = {}
    if cells.get("shipping_price") or cells.get("shipping_title") or cells.get("shipping_tax"):
        shipping: dict[str, Any] = {
            "title": cells.get("shipping_title") or "shipping",
            "price": cells.get("shipping_price") or None,
        }
        if cells.get("shipping_tax"):
            rate = cells.get("shipping_tax_rate") or "0"
            shipping["tax_lines"] = [{"title": "tax", "rate": rate, "price": cells["shipping_tax"]}]
        doc["shipping_lines"] = [shipping]
    if cells.get("discount_code") or cells.get("discount_amount"):
        code = {"code": cells.get("discount_code") or None, "amount": cells.get("discount_amount") or None}
        doc["discount_codes"] = [code]
    if cells.get("taxes_included"):
        doc["taxes_included"] = cells["taxes_included"]  # the model reads true/false, yes/no, 1/0
    if cells.get("total_price"):
        doc["total_price"] = cells["total_price"]
    return doc


def _put(doc: dict[str, Any], path: tuple[str, ...], value: Any, create_only: bool = False) -> None:
    target = doc
    for part in path[:-1] if not create_only else path:
        target = target.setdefault(part, {})
    if not create_only:
        target[path[-1]] = value


def _locate(loc: tuple[Any, ...], lines: list[int]) -> tuple[list[int], str]:
    """A model error's location as the CSV rows and column it comes from."""
    if loc[:1] == ("lines",) and len(loc) > 1 and isinstance(loc[1], int) and loc[1] < len(lines):
        row = [lines[loc[1]]]
        if len(loc) > 4 and loc[2] in ("tax_lines", "discount_allocations"):  # lines.N.tax_lines.0.price
            return row, "discount" if loc[2] == "discount_allocations" else f"tax_{loc[4]}"
        return row, str(loc[2]) if len(loc) > 2 else "line item"
    if loc[:1] in (("shipping_lines",), ("discount_codes",)) and len(loc) > 2:
        field = str(loc[-1])
        if loc[0] == "discount_codes":
            return lines, f"discount_{field}" if field == "code" else "discount_amount"
        return lines, "shipping_tax" + (
            "_rate" if field == "rate" else ""
        ) if "tax_lines" in loc else f"shipping_{field}"
    if loc in COLUMN_OF:
        return lines, COLUMN_OF[loc]
    return lines, ".".join(str(part) for part in loc) or "order"


def _quote(value: str) -> str:
    if not value:
        return "empty"
    return repr(value if len(value) <= 40 else value[:39] + "…")
