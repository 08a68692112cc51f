"""The money invariants (domain/money_invariants.py) and the check after every test (tests/ledger_guard.py)
find a broken ledger and name the order and its figures. The ledgers here are written by hand."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from db import SessionFactory
from domain import journal
from domain.money_invariants import check_money
from models import tables as t
from models.events import PaymentKind
from tests.helpers import add_order_row, add_products, unique
from tests.ledger_guard import LedgerWatch

pytestmark = pytest.mark.ledger_may_break(
    "writes broken payments and stock ledgers by hand for the check to find"
)


def ledger_of(sessions: SessionFactory, *movements: tuple[PaymentKind, str]) -> str:
    """An order (total 20.01) whose payments ledger holds these approved movements, in this order."""
    order_id = unique("MONEY")
    with sessions.begin() as session:
        add_order_row(
            session,
            order_id,
            unique("C"),
            status="completed",
            payment_status="captured",
            placed_at=datetime.now(UTC),
            total=Decimal("20.01"),
        )
        for n, (kind, amount) in enumerate(movements):
            session.add(
                t.Payment(
                    order_id=order_id,
                    kind=kind,
                    status="approved",
                    amount=Decimal(amount),
                    currency="EUR",
                    idempotency_key=f"{order_id}:{n}",
                    reference=f"ref-{order_id}-{n}",
                )
            )
    return order_id


A, C, R, G, V = (
    PaymentKind.authorization,
    PaymentKind.capture,
    PaymentKind.refund,
    PaymentKind.goodwill_refund,
    PaymentKind.void,
)


def test_a_sound_ledger_passes(sessions: SessionFactory) -> None:
    order = ledger_of(sessions, (A, "20.01"), (C, "12.00"), (V, "8.01"), (R, "5.00"), (G, "7.00"))
    assert check_money(sessions, [order]) == []


def test_refunds_together_beyond_the_capture(sessions: SessionFactory) -> None:
    order = ledger_of(sessions, (A, "20.01"), (C, "10.00"), (R, "6.00"), (G, "5.00"))
    assert check_money(sessions, [order]) == [
        f"order {order}: refunded more than captured "
        "(authorized 20.01, captured 10.00, refunded 11.00, voided 0.00)"
    ]


def test_a_capture_after_the_void(sessions: SessionFactory) -> None:
    order = ledger_of(sessions, (A, "20.01"), (C, "10.00"), (V, "10.01"), (C, "5.00"))
    assert check_money(sessions, [order]) == [
        f"order {order}: captured what a void released "
        "(authorized 20.01, captured 15.00, refunded 0.00, voided 10.01)"
    ]


def test_a_kind_the_journal_does_not_book(sessions: SessionFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """A payment kind the ledger records and the journal forgets (as a new kind would be): the journal's
    refunds no longer equal the ledger's."""
    order = ledger_of(sessions, (A, "20.01"), (C, "20.01"), (G, "5.00"))
    monkeypatch.delitem(journal.BOOK, PaymentKind.goodwill_refund)
    assert check_money(sessions, [order]) == [
        f"order {order}: the journal books no goodwill_refund ({order}:2)",
        f"order {order}: the journal books 0.00 in 0 cash rows signed -1 as refunded, "
        "the ledger's refunded is 5.00",
    ]


async def test_the_check_after_a_test_reports_once(sessions: SessionFactory) -> None:
    watch = LedgerWatch(sessions, patience=0)
    watch.changed_orders()
    order = ledger_of(sessions, (A, "20.01"), (C, "25.00"))
    found = await watch.verify()
    assert [line for line in found if order in line] == [
        f"order {order}: captured more than authorized "
        "(authorized 20.01, captured 25.00, refunded 0.00, voided 0.00)"
    ]
    assert await watch.verify() == []


async def test_a_stock_level_its_movements_do_not_explain(sessions: SessionFactory) -> None:
    watch = LedgerWatch(sessions, patience=0)
    watch.changed_orders()
    sku = add_products(sessions, {"mug": 5})["mug"]
    _set_on_hand(sessions, sku, 7)  # not through the stock ledger
    try:
        found = await watch.verify()
        assert [line for line in found if sku in line] == [
            f"stock ledger: {sku}@W1: level on_hand=7 reserved=0, movements sum to on_hand=5 reserved=0"
        ]
        assert await watch.verify() == []
    finally:  # mended: other tests check the whole database's stock ledger
        _set_on_hand(sessions, sku, 5)


def _set_on_hand(sessions: SessionFactory, sku: str, units: int) -> None:
    with sessions.begin() as session:
        stock = session.get(t.Stock, (sku, "W1"))
        assert stock is not None
        stock.on_hand = units
