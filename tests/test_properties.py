"""Property-based tests of the doors: whatever document arrives, `parse_order`, the command line and
the HTTP API either take an order that fits every column it will be written to, or refuse it cleanly
(OrderInputError, exit 2, HTTP 4xx) with nothing started; never a traceback, never a 500.

Documents are valid orders with hostile values put at any field (NUL and other control characters,
lone surrogates, huge and negative numbers, JSON nested thousands deep, very long strings, unicode,
wrong types), arbitrary JSON values, and arbitrary text. A valid order gets a unique id and an unknown
SKU, so it runs quickly to `rejected` at the validate step: which also proves the database stored it.
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import Column

from domain.api_keys import Role
from models import tables as t
from models.orders import MAX_MONEY, MAX_QUANTITY, OrderInput
from services.orders import OrderInputError, UnknownOrder, order_view, parse_order
from tests.helpers import cli, order_doc, unique, wait_status

SKU = "NO-SUCH-PRODUCT"  # never in the catalog: a valid order is rejected at once, nothing reserved


def examples(n: int) -> Any:
    return hypothesis_settings(
        max_examples=n,
        deadline=None,
        database=None,  # no .hypothesis directory in the tree
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,  # tmp_path, capsys, the HTTP client: shared, on purpose
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
        ],
    )


# ---- documents ----


@dataclass(frozen=True)
class Raw:
    """JSON text put in verbatim (what json.dumps cannot write: deep nesting, 5,000-digit numbers)."""

    text: str


MISSING = object()

FIELDS = [
    "order_id",
    "channel",
    "customer",
    "customer.id",
    "customer.name",
    "customer.email",
    "customer.phone",
    "shipping_address",
    "shipping_address.name",
    "shipping_address.line1",
    "shipping_address.line2",
    "shipping_address.city",
    "shipping_address.postal_code",
    "shipping_address.country",
    "lines",
    "lines.0",
    "lines.0.sku",
    "lines.0.quantity",
    "lines.0.unit_price",
    "currency",
    "payment",
    "payment.method",
    "payment.token",
    "delivery_instructions",
    "surprise",  # an unknown field
    "customer.surprise",
]

HOSTILE = [
    None,
    True,
    False,
    0,
    -1,
    1,
    2**31 - 1,
    2**31,
    2**63,
    -(2**63),
    10**30,
    0.5,
    1e308,
    -0.0,
    float("nan"),
    float("inf"),
    "",
    " ",
    "\x00",
    "Ada\x00Lovelace",
    "\t",
    "\n",
    "Ada\nLovelace",
    "line\r\nbreak",
    "\x1b[31mred",
    "\x7f",
    "\x85",
    "\x9f",
    "\u2028",
    "\ud800",
    "Lon\udfffdon",
    "\ufeff",
    "zero\u200bwidth",
    "😀",
    "Zoë 李",
    "10.00",
    "0.01",
    "9999999999.99",
    "10000000000.00",
    "99999.99",
    "1e10",
    "NaN",
    "Infinity",
    "-0.01",
    "0.001",
    "GB",
    "XK",
    "EUR",
    "card",
    "web",
    "tok_visa",
    "ada@example.com",
    "ADA@EXAMPLE.COM",
    "a@b",
    "+44 20 7946 0000",
    "SW1Y 4JH",
    [],
    {},
    [1],
    {"sku": SKU, "quantity": 1},
    [{"sku": SKU, "quantity": MAX_QUANTITY, "unit_price": "99999.99"}],
    [{"sku": SKU, "quantity": MAX_QUANTITY, "unit_price": "100000.00"}],
]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)

hostile_values = st.one_of(
    st.sampled_from(HOSTILE),
    st.text(max_size=40),  # unicode
    st.text(st.characters(max_codepoint=0xA0), max_size=12),  # heavy on control characters
    st.builds(
        lambda piece, n: piece * n,
        st.sampled_from(["a", "é", "€", "😀", " ", "\x00", "\n"]),
        st.integers(0, 2500),
    ),  # long strings around every column's length
    st.integers(),
    st.integers(MAX_QUANTITY - 2, MAX_QUANTITY + 2),
    st.decimals(allow_nan=False, allow_infinity=False, places=2, max_value=10**11).map(str),
    st.integers(1, 3000).map(lambda n: Raw("[" * n + "]" * n)),  # nested thousands deep
    st.integers(4000, 6000).map(lambda n: Raw("9" * n)),  # a number Python will not convert
    json_values,
)

prices = st.decimals(min_value=0, max_value=10**10, places=2).map(str)
order_lines = st.lists(
    st.fixed_dictionaries(
        {"sku": st.just(SKU), "quantity": st.integers(1, MAX_QUANTITY + 1)}, optional={"unit_price": prices}
    ),
    min_size=1,
    max_size=4,
)
# values an order source could well send: most are accepted, some just over a bound
plausible_values = st.one_of(
    st.text(st.characters(exclude_categories=("Cc", "Cs", "Zl", "Zp")), min_size=1, max_size=210),
    st.text(st.characters(exclude_categories=("Cs",)), max_size=30),
    st.emails(),
    st.from_regex(r"\+?[0-9 ()./-]{5,30}", fullmatch=True),
    st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,70}", fullmatch=True),
    st.integers(1, MAX_QUANTITY + 1),
    prices,
    order_lines,
)

TEXT_FIELDS = [
    "customer.name",
    "shipping_address.name",
    "shipping_address.line1",
    "shipping_address.line2",
    "shipping_address.city",
    "payment.token",
    "delivery_instructions",
]
names = st.text(st.characters(exclude_categories=("Cc", "Cs", "Zl", "Zp")), min_size=1, max_size=210)
names = names | st.tuples(names, st.sampled_from("\x00\x01\t\n\x7f\x85\u2028")).map(
    lambda p: p[0] + p[1] + p[0]
)
# one value an order source could well send, at the field it belongs to
plausible_mutation = st.one_of(
    st.tuples(st.sampled_from(TEXT_FIELDS), names),
    st.tuples(
        st.just("delivery_instructions"), st.text(st.characters(exclude_categories=("Cs",)), max_size=510)
    ),
    st.tuples(st.just("customer.email"), st.emails()),
    st.tuples(st.just("customer.phone"), st.from_regex(r"\+?[0-9 ()./-]{5,30}", fullmatch=True)),
    st.tuples(
        st.sampled_from(["customer.id", "lines.0.sku"]),
        st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,70}", fullmatch=True),
    ),
    st.tuples(st.just("lines.0.quantity"), st.integers(1, MAX_QUANTITY + 1)),
    st.tuples(st.just("lines.0.unit_price"), prices),
    st.tuples(st.just("lines"), order_lines),
)

mutations = st.lists(
    st.tuples(st.sampled_from(FIELDS), st.one_of(hostile_values, plausible_values, st.just(MISSING))),
    min_size=1,
    max_size=3,
)


@dataclass(frozen=True)
class Case:
    kind: str  # "mutated", "json", "text"
    mutations: tuple[tuple[str, Any], ...] = ()
    value: Any = None


# the fault-injection run's findings, tried first by every door test
FAULTS = [
    Case("mutated", (("lines.0.quantity", 2**31),)),
    Case("mutated", (("lines", [{"sku": SKU, "quantity": 2_147_483_647, "unit_price": "10.00"}]),)),
    Case("mutated", (("customer.name", "Ada\x00Lovelace"),)),
    Case("mutated", (("delivery_instructions", "ring\x00twice"),)),
    Case("mutated", (("customer.name", Raw("[" * 1000 + "]" * 1000)),)),
]


def with_faults(test: Any) -> Any:
    for case in reversed(FAULTS):
        test = example(case=case)(test)
    return test


cases = st.one_of(
    mutations.map(lambda m: Case("mutated", tuple(m))),
    st.lists(plausible_mutation, min_size=1, max_size=4).map(lambda m: Case("mutated", tuple(m))),
    json_values.map(lambda v: Case("json", value=v)),
    st.text(max_size=200).map(lambda v: Case("text", value=v)),
)


def _apply(doc: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    target: Any = doc
    for part in parents:
        target = (target[0] if target else None) if isinstance(target, list) else target.get(part)
        if not isinstance(target, dict | list):
            return  # an earlier mutation replaced or removed the parent
    if isinstance(target, list):
        if value is not MISSING and target:
            target[0] = value
        return
    if value is MISSING:
        target.pop(last, None)
    else:
        target[last] = value


def render(value: Any) -> str:
    """JSON text of a document, with Raw pieces put in verbatim."""
    raws: list[str] = []

    def swap(v: Any) -> Any:
        if isinstance(v, Raw):
            raws.append(v.text)
            return f"@@RAW{len(raws) - 1}@@"
        if isinstance(v, dict):
            return {k: swap(x) for k, x in v.items()}
        if isinstance(v, list):
            return [swap(x) for x in v]
        return v

    text = json.dumps(swap(value))
    for n, raw in enumerate(raws):
        text = text.replace(f'"@@RAW{n}@@"', raw)
    return text


def document(case: Case) -> tuple[str, str | None]:
    """The document's text, and the fresh order id it carries (None: the case chose its own, or none)."""
    if case.kind == "text":
        return case.value, None
    if case.kind == "json":
        return render(case.value), None
    doc = order_doc([(SKU, 1)], order_id=unique("P"))
    order_id = doc["order_id"]
    for path, value in case.mutations:
        _apply(doc, path, value)
    return render(doc), order_id if doc.get("order_id") == order_id else None


# ---- what an accepted order must be: it fits every column it is written to ----

CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
CONTROL_BUT_NEWLINES = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


def _fits(value: str | None, column: Column[Any]) -> None:
    if value is None:
        assert column.nullable, column
        return
    value.encode("utf-8")  # storable at all: no lone surrogates
    length = getattr(column.type, "length", None)
    assert length is None or len(value) <= length, (column, value)


def assert_fits_the_columns(order: OrderInput) -> None:
    customers, orders, lines = t.Customer.__table__.c, t.Order.__table__.c, t.OrderLine.__table__.c
    _fits(order.order_id or "O-0123456789AB", orders.id)  # none: the door assigns one
    _fits(order.customer.id, customers.id)
    _fits(order.customer.name, customers.name)
    _fits(str(order.customer.email), customers.email)
    _fits(order.customer.phone, customers.phone)
    _fits(order.channel.value, orders.channel)
    _fits(order.currency, orders.currency)
    _fits(order.payment.method, orders.payment_method)
    _fits(order.delivery_instructions, orders.delivery_instructions)
    total = Decimal(0)
    for line in order.lines:
        _fits(line.sku, lines.sku)
        assert 0 < line.quantity <= MAX_QUANTITY < 2**31
        if line.unit_price is not None:
            exponent = line.unit_price.as_tuple().exponent
            assert 0 <= line.unit_price <= MAX_MONEY and isinstance(exponent, int) and exponent >= -2
            total += line.quantity * line.unit_price
    assert total <= MAX_MONEY

    def strings(value: Any) -> list[tuple[str, str]]:
        if isinstance(value, dict):
            return [(f"{k}.{p}".rstrip("."), s) for k, v in value.items() for p, s in strings(v)]
        if isinstance(value, list):
            return [pair for v in value for pair in strings(v)]
        return [("", value)] if isinstance(value, str) else []

    for field, value in strings(order.model_dump(mode="json")):
        value.encode("utf-8")
        pattern = CONTROL_BUT_NEWLINES if field == "delivery_instructions" else CONTROL
        assert not pattern.search(value), (field, value)


# ---- (a) parse_order ----


@examples(400)
@with_faults
@given(case=cases)
def test_parse_order_returns_an_order_that_fits_or_raises_order_input_error(case: Case):
    text, _ = document(case)
    try:
        order = parse_order(text)
    except OrderInputError as exc:
        assert str(exc)  # the reason, for the person who sent it
        event("refused")
        return
    event("accepted")
    assert_fits_the_columns(order)


@examples(100)
@given(text=st.text(max_size=300), garbage=st.binary(max_size=300))
def test_parse_order_takes_any_text_or_bytes_without_crashing(text: str, garbage: bytes):
    for document_ in (text, garbage, text.encode("utf-8", "surrogatepass")):
        with contextlib.suppress(OrderInputError):
            assert_fits_the_columns(parse_order(document_))


# ---- (b) the command line ----


async def started(client: Any, order_id: str) -> bool:
    try:
        await order_view(client, order_id)
    except UnknownOrder:
        return False
    return True


async def settles_rejected(client: Any, order_id: str) -> None:
    """A valid order is recorded, then rejected for its unknown SKU by the validate step: the database
    took every value (a value it refused would end the order earlier, or never)."""
    view = await wait_status(client, order_id, "rejected", timeout=30)
    reasons = [e.detail for e in view.events if e.type == "order_rejected"]
    assert len(reasons) == 1 and "unknown SKU" in reasons[0], view.events


@pytest.mark.usefixtures("worker")
@examples(40)
@with_faults
@given(case=cases)
async def test_the_cli_exits_0_or_2_and_never_prints_a_traceback(
    client, settings, sessions, tmp_path: Path, capsys: pytest.CaptureFixture[str], case: Case
):
    text, order_id = document(case)
    path = tmp_path / f"{unique('order')}.json"
    path.write_text(text.encode("utf-8", "surrogatepass").decode("utf-8", "replace"))  # a UTF-8 file
    capsys.readouterr()

    status, out = await cli(settings, "place", str(path))

    err = capsys.readouterr().err
    event(f"exit {status}")
    assert "Traceback" not in err and "Traceback" not in out
    assert status in (0, 2), (status, out, err)
    if status == 2:
        assert out == "" and err.startswith("error: ")
        if order_id is not None:
            assert not await started(client, order_id)
            with sessions() as session:
                assert session.get(t.Order, order_id) is None
    else:
        await settles_rejected(client, out.strip() or order_id)


# ---- (c) the HTTP API ----


@pytest.mark.usefixtures("worker")
@examples(60)
@with_faults
@given(case=cases)
async def test_the_api_answers_4xx_or_places_the_order_never_500(
    http, api_keys, client, sessions, case: Case
):
    text, order_id = document(case)
    headers = {"Authorization": f"Bearer {api_keys[Role.source]}", "Content-Type": "application/json"}

    answer = await http.post("/orders", content=text.encode("utf-8", "surrogatepass"), headers=headers)

    event(f"HTTP {answer.status_code}")
    assert "Traceback" not in answer.text
    assert answer.status_code in (200, 201, 409, 400, 413, 415, 422), answer.text
    if answer.status_code in (200, 201):
        await settles_rejected(client, answer.json()["order_id"])
    elif answer.status_code != 409:
        assert answer.json()["error"] in ("invalid_json", "invalid_request", "too_large"), answer.text
        if order_id is not None:
            assert not await started(client, order_id)
            with sessions() as session:
                assert session.get(t.Order, order_id) is None
