"""Input that storage cannot hold is refused at the door (CLI exit 2, HTTP 422/400, the field named),
and a database error no retry can fix is a refusal, not a step retried for ever.

The fault-injection cases (a quantity of 2^31, an overflowing total, a NUL in a name or in the
delivery instructions, JSON nested 1,000 deep) are kept here as plain regression tests.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy.exc import DataError, IntegrityError, OperationalError
from temporalio.client import Client
from temporalio.exceptions import ApplicationError

from activities import bad_data_refusal
from activities.orders import OrderActivities
from config import Settings
from db import SessionFactory
from domain.api_keys import Role
from models import tables as t
from models.orders import (
    MAX_MONEY,
    MAX_QUANTITY,
    CancelIn,
    FeedbackIn,
    LineIn,
    NoteIn,
    OrderInput,
    PlaceOrder,
    ReturnIn,
)
from models.steps import ErrorType, EventBatch, EventRecord
from models.stock import StockAdjustmentIn, StockReceiptIn
from services.orders import OrderInputError, UnknownOrder, order_view, parse_order, policy_from
from tests.helpers import add_products, cli, order_doc, place, rejection, unique

# ---- the fault-injection cases, at both doors ----


def _set(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    *parents, last = path.split(".")
    target: Any = doc
    for part in parents:
        target = target[int(part)] if part.isdigit() else target[part]
    target[last] = value
    return doc


def with_line(quantity: int, unit_price: str | None = None) -> dict[str, Any]:
    doc = order_doc([(unique("NOSUCH"), quantity)])
    if unit_price is not None:
        doc["lines"][0]["unit_price"] = unit_price
    return doc


def nested(depth: int) -> str:
    """An order document whose customer name is a list nested `depth` deep (json.dumps cannot write it)."""
    doc = order_doc([(unique("NOSUCH"), 1)])
    return json.dumps(doc).replace('"Ada Lovelace"', "[" * depth + "]" * depth, 1)


# (document text, the field the CLI names, the HTTP status, the field the API names or None)
FAULTS = {
    "quantity-2^31": (lambda: json.dumps(with_line(2**31)), "lines.0.quantity", 422, "lines.0.quantity"),
    "quantity-int32-max-at-10.00": (
        lambda: json.dumps(with_line(2_147_483_647, "10.00")),
        "lines.0.quantity",
        422,
        "lines.0.quantity",
    ),
    "quantity-2^63": (lambda: json.dumps(with_line(2**63)), "lines.0.quantity", 422, "lines.0.quantity"),
    "total-above-numeric-12-2": (
        lambda: json.dumps(with_line(MAX_QUANTITY, "9999999.99")),
        "lines: Value error, the order total",
        422,
        "lines",
    ),
    "nul-in-name": (
        lambda: json.dumps(_set(order_doc([("S", 1)]), "customer.name", "Ada\x00Lovelace")),
        "customer.name",
        422,
        "customer.name",
    ),
    "nul-in-instructions": (
        lambda: json.dumps(_set(order_doc([("S", 1)]), "delivery_instructions", "ring\x00twice")),
        "delivery_instructions",
        422,
        "delivery_instructions",
    ),
    "control-char-in-address": (
        lambda: json.dumps(_set(order_doc([("S", 1)]), "shipping_address.line1", "12\x1bSq")),
        "shipping_address.line1",
        422,
        "shipping_address.line1",
    ),
    "lone-surrogate-in-city": (
        lambda: json.dumps(_set(order_doc([("S", 1)]), "shipping_address.city", "Lon\ud800don")),
        "shipping_address.city",
        422,
        "shipping_address.city",
    ),
    "name-longer-than-its-column": (
        lambda: json.dumps(_set(order_doc([("S", 1)]), "customer.name", "A" * 201)),
        "customer.name",
        422,
        "customer.name",
    ),
    "nested-1000-deep": (lambda: nested(1000), "invalid JSON: nested too deeply", 400, None),
    "nested-100000-deep": (lambda: nested(100_000), "invalid JSON: nested too deeply", 400, None),
    "number-of-5000-digits": (
        lambda: json.dumps(with_line(1)).replace('"quantity": 1', '"quantity": ' + "9" * 5000),
        "invalid JSON: a number is too long",
        400,
        None,
    ),
}


def order_id_in(text: str) -> str:
    return text.split('"order_id": "', 1)[1].split('"', 1)[0]


async def nothing_started(client: Client, sessions: SessionFactory, order_id: str) -> bool:
    with sessions() as session:
        if session.get(t.Order, order_id) is not None:
            return False
    try:
        await order_view(client, order_id)
    except UnknownOrder:
        return True
    return False


@pytest.mark.parametrize("fault", list(FAULTS))
async def test_fault_injection_case_is_refused_by_the_cli_with_the_field_named(
    client, settings, sessions, tmp_path: Path, capsys: pytest.CaptureFixture[str], fault: str
):
    make, field, _, _ = FAULTS[fault]
    text = make()
    path = tmp_path / "order.json"
    path.write_text(text)

    status, out = await cli(settings, "place", str(path))

    assert (status, out) == (2, "")
    stderr = capsys.readouterr().err
    assert stderr.startswith("error: ") and field in stderr, stderr
    assert "Traceback" not in stderr
    assert await nothing_started(client, sessions, order_id_in(text))


async def test_a_file_that_is_not_utf8_is_invalid_input(settings, tmp_path: Path, capsys):
    path = tmp_path / "order.json"
    path.write_bytes(json.dumps(order_doc([("S", 1)])).encode().replace(b"Ada", b"\xffda"))
    status, out = await cli(settings, "place", str(path))
    assert (status, out) == (2, "")
    assert "not UTF-8" in capsys.readouterr().err


@pytest.mark.parametrize("fault", list(FAULTS))
async def test_fault_injection_case_is_refused_by_the_api_with_the_field_named(
    http, api_keys, client, sessions, fault: str
):
    make, _, status, field = FAULTS[fault]
    text = make()
    headers = {"Authorization": f"Bearer {api_keys[Role.source]}", "Content-Type": "application/json"}

    answer = await http.post("/orders", content=text.encode(), headers=headers)

    assert answer.status_code == status, answer.text
    assert "Traceback" not in answer.text
    if field is not None:
        assert any(p.startswith(f"{field}:") for p in answer.json()["problems"]), answer.json()
    assert await nothing_started(client, sessions, order_id_in(text))


# ---- what fits is accepted, up to the bounds ----


def test_the_bounds_themselves_are_accepted():
    doc = order_doc([("SKU-1", MAX_QUANTITY)])
    doc["lines"][0]["unit_price"] = "99999.99"  # 100,000 x 99,999.99 = 9,999,999,999.00 <= MAX_MONEY
    doc["customer"]["name"] = "Zoë 李 Ñúñez 😀" + "x" * 187  # 200 characters
    doc["delivery_instructions"] = "Ring twice.\nThen wait:\tthe concierge is slow." + "x" * 455
    doc["shipping_address"]["line2"] = ""
    order = parse_order(json.dumps(doc))
    assert order.lines[0].quantity == MAX_QUANTITY
    assert len(order.customer.name) == 200 and len(order.delivery_instructions or "") == 500
    assert Decimal("9999999999.99") == MAX_MONEY


@pytest.mark.parametrize(
    ("model", "fields", "field"),
    [
        (CancelIn, {"reason": "changed\x00my mind"}, "reason"),
        (CancelIn, {"reason": "two\vlines"}, "reason"),
        (NoteIn, {"text": "called\x07the customer"}, "text"),
        (FeedbackIn, {"score": 5, "comment": "great\x00"}, "comment"),
        (ReturnIn, {"sku": "S", "quantity": MAX_QUANTITY + 1, "reason": "broken"}, "quantity"),
        (ReturnIn, {"sku": "S", "quantity": 1, "reason": "broken\x00"}, "reason"),
        (StockAdjustmentIn, {"sku": "S", "warehouse": "W1", "delta": 1, "reason": "count\x00"}, "reason"),
        (
            StockReceiptIn,
            {"sku": "S", "warehouse": "W1", "quantity": 1, "purchase_order": "PO\x00"},
            "purchase_order",
        ),
        (StockReceiptIn, {"sku": "S", "warehouse": "W1", "quantity": 2**31}, "quantity"),
    ],
)
def test_support_and_stock_bodies_refuse_what_their_columns_cannot_hold(model, fields, field):
    with pytest.raises(ValidationError) as caught:
        model.model_validate(fields)
    assert [e["loc"][0] for e in caught.value.errors()] == [field]


def test_reasons_notes_and_comments_may_span_lines():
    assert NoteIn(text="Called the customer.\nShe will call back.").text.count("\n") == 1
    assert CancelIn(reason="Ordered twice.\nSee ticket 42.").reason.count("\n") == 1
    assert FeedbackIn(score=4, comment="Good.\r\n\tFast delivery.").comment is not None


def test_parse_order_raises_only_order_input_errors_for_unreadable_input():
    for text in ("[" * 1000, b"\xff\xfe\x00", b"\xc3\x28", "1" * 5000, "", "null"):
        with pytest.raises(OrderInputError):
            parse_order(text)


# ---- the validate step refuses a total the money columns cannot hold (catalog prices) ----


async def test_an_order_whose_catalog_total_overflows_is_rejected_by_the_validate_step(
    client, settings, sessions, worker
):
    sku = add_products(sessions, {"GOLD": 5}, price="9999999.99")["GOLD"]
    doc = order_doc([(sku, MAX_QUANTITY)])  # no unit_price: the door cannot know the total

    order_id = await place(client, settings, doc)

    view = await rejection(client, order_id)
    (reason,) = [e.detail for e in view.events if e.type == "order_rejected"]
    assert reason == f"the order total 999999999000.00 is above the maximum {MAX_MONEY}"
    with sessions() as session:
        row = session.get(t.Order, order_id)
        assert row is not None and (row.status, row.total) == ("rejected", None)


def test_admit_order_refuses_an_overflowing_total_as_invalid_order(sessions, settings):
    sku = add_products(sessions, {"GOLD": 5}, price="9999999.99")["GOLD"]
    request = place_request(OrderInput.model_validate(order_doc([(sku, MAX_QUANTITY)])), settings)
    with pytest.raises(ApplicationError) as caught:
        OrderActivities(sessions).admit_order(request)
    assert caught.value.non_retryable and caught.value.type == ErrorType.invalid_order


# ---- activities: a database error no retry can fix is a refusal (crafted input bypasses the models) ----


def place_request(order: OrderInput, settings: Settings) -> PlaceOrder:
    return PlaceOrder.model_construct(
        order=order, policy=policy_from(settings), placed_at=datetime.now(UTC), placed_by=None
    )


def crafted_order(**changes: Any) -> OrderInput:
    """A valid order with a unique id and customer, then `changes` applied without validation."""
    order = OrderInput.model_validate(order_doc([("SKU-1", 1)], order_id=unique("BAD")))
    customer = order.customer.model_copy(update={"id": unique("C")})
    order = order.model_copy(update={"customer": customer})
    for path, value in changes.items():
        if path.startswith("customer__"):
            customer = order.customer.model_copy(update={path.removeprefix("customer__"): value})
            order = order.model_copy(update={"customer": customer})
        elif path == "quantity":
            order = order.model_copy(update={"lines": [LineIn.model_construct(sku="SKU-1", quantity=value)]})
        else:
            order = order.model_copy(update={path: value})
    return order


def record(activities: OrderActivities, request: PlaceOrder) -> None:
    """Record the order (admit_order records it first, then refuses a crafted order's unknown SKU)."""
    try:
        activities.admit_order(request)
    except ApplicationError as exc:
        assert exc.type == ErrorType.invalid_order, exc


def is_postgres(sessions: SessionFactory) -> bool:
    with sessions() as session:
        return session.get_bind().dialect.name == "postgresql"


def assert_refused(call: Any, *args: Any) -> ApplicationError:
    """The call fails with an error the worker's RefuseBadData turns into a non-retryable refusal."""
    with pytest.raises(Exception) as caught:
        call(*args)
    refusal = bad_data_refusal(caught.value)
    assert refusal is not None, caught.value
    assert refusal.non_retryable and refusal.type == ErrorType.invalid_data
    assert refusal.message.startswith("the data cannot be stored: ")
    return refusal


RECORD_ORDER_CASES = {
    # (changes, refused on PostgreSQL, refused on SQLite: SQLite stores what PostgreSQL refuses)
    "quantity-2^63": ({"quantity": 2**63}, True, True),
    "quantity-2^31": ({"quantity": 2**31}, True, False),
    "nul-in-name": ({"customer__name": "Ada\x00"}, True, False),
    "nul-in-instructions": ({"delivery_instructions": "ring\x00"}, True, False),
    "lone-surrogate-in-name": ({"customer__name": "Ada\ud800"}, True, True),
    "name-missing": ({"customer__name": None}, True, True),
    "phone-longer-than-its-column": ({"customer__phone": "0" * 41}, True, False),
}


@pytest.mark.parametrize("case", list(RECORD_ORDER_CASES))
def test_admit_order_refuses_data_the_database_cannot_hold(sessions, settings, case):
    changes, on_postgres, on_sqlite = RECORD_ORDER_CASES[case]
    order = crafted_order(**changes)
    request = place_request(order, settings)
    activities = OrderActivities(sessions)
    if on_postgres if is_postgres(sessions) else on_sqlite:
        assert_refused(activities.admit_order, request)
        with sessions() as session:
            assert session.get(t.Order, request.order_id) is None  # nothing half-written
            assert session.get(t.Customer, order.customer.id) is None
    else:
        record(activities, request)  # this database stores it; the doors refuse it anyway


def event(order_id: str, **changes: Any) -> EventRecord:
    fields = {
        "order_id": order_id,
        "seq": 1,
        "at": datetime.now(UTC),
        "type": "order_received",
        "detail": "1 line via web",
        "status": "received",
        "payment_status": "pending",
        "total": None,
    }
    return EventRecord.model_construct(**(fields | changes))


@pytest.mark.parametrize(
    ("changes", "on_sqlite"),
    [
        ({"seq": 2**63}, True),
        ({"detail": "note\x00"}, False),
        ({"total": Decimal("10000000000.00")}, False),  # Numeric(12, 2) overflows
        ({"type": None}, True),  # NOT NULL
    ],
    ids=["seq-2^63", "nul-in-detail", "total-overflow", "type-missing"],
)
def test_record_events_refuses_data_the_database_cannot_hold(sessions, settings, changes, on_sqlite):
    request = place_request(crafted_order(), settings)
    activities = OrderActivities(sessions)
    record(activities, request)
    bad = EventBatch(events=[event(request.order_id, **changes)])
    if is_postgres(sessions) or on_sqlite:
        assert_refused(activities.record_events, bad)
    else:
        activities.record_events(bad)
    activities.record_events(EventBatch(events=[event(request.order_id, seq=7)]))  # good events still go in


def test_recording_the_same_order_or_event_twice_is_still_idempotent(sessions, settings):
    request = place_request(crafted_order(), settings)
    activities = OrderActivities(sessions)
    record(activities, request)
    record(activities, request)
    activities.record_events(EventBatch(events=[event(request.order_id)]))
    activities.record_events(EventBatch(events=[event(request.order_id)]))
    with sessions() as session:
        assert session.query(t.OrderEvent).filter_by(order_id=request.order_id).count() == 1


def test_a_unique_key_race_is_retried_not_refused(sessions):
    """Two attempts insert the same new customer: the loser's IntegrityError stays retryable (its retry
    finds the winner's row), as admit_order and the gateways rely on."""
    customer_id = unique("C")
    with sessions.begin() as session:
        session.add(t.Customer(id=customer_id, name="Ada", email="ada@example.com"))

    with pytest.raises(IntegrityError) as caught, sessions.begin() as session:
        session.add(t.Customer(id=customer_id, name="Ada", email="ada@example.com"))
    assert bad_data_refusal(caught.value) is None


@pytest.mark.parametrize(
    "error",
    [
        OperationalError("SELECT 1", {}, Exception("connection refused")),
        OperationalError("UPDATE", {}, Exception("could not serialize access due to concurrent update")),
        OperationalError("UPDATE", {}, Exception("deadlock detected")),
        RuntimeError("a bug: fixed by a deploy, then the retry succeeds"),
        ValueError("not a driver's data error"),
    ],
    ids=["connection-refused", "serialization-failure", "deadlock", "bug", "value-error"],
)
def test_transient_errors_and_bugs_keep_retrying(error):
    assert bad_data_refusal(error) is None


def test_a_refusal_does_not_quote_the_refused_value():
    """The value a database refused may be a customer's name: the refusal (logged, and written into the
    order's story) names the problem, not the value."""
    orig = Exception('invalid input syntax for type integer: "Ada Lovelace, 12 St James\'s Sq"')
    refusal = bad_data_refusal(DataError("INSERT", {}, orig))
    assert refusal is not None and "Ada" not in refusal.message and "integer" in refusal.message
