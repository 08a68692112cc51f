"""The finance journal for the ERP (`starter.py export journal`): one row per money movement of the
payment ledger (`payments`) in a period, and the check that the rows sum exactly to the ledger.

Which rows: the gateway's *approved* movements only. A declined authorization moved no money and held
none, so it is not a journal entry (the report counts them apart).

Sign convention (`signed_amount`), for debit/credit clarity: a movement that increases what the
customer owes or has paid is positive, one that gives it back is negative. Two books are kept apart in
the `book` column, because a hold on a card is not cash:
- `hold`: authorization +amount (funds reserved on the card), void -amount (the reservation released);
- `cash`: capture +amount (money taken), refund -amount (money given back: a return, a lost parcel, a
  compensation), goodwill_refund -amount (support's goodwill refund: money given back, no goods back;
  its own `kind`, so finance books it apart from returns).
So per currency, the sum of the `cash` rows is the net revenue of the period and the sum of the `hold`
rows is what was authorized and not released. `amount` is always the ledger's own (never negative).

`net`, `tax`, `shipping` split `signed_amount` in its order's proportions (goods net of discounts and
tax, tax, shipping net of tax: models/order_money.py `movement_parts`) and add up to it exactly;
`discount` is a memo, the discount behind the row's goods, signed the same way. An order priced before
issue 26 books all of a movement as `net`.
"""

from __future__ import annotations

import csv
import os
import tempfile
from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from pathlib import Path

from sqlalchemy import ColumnElement, func, select

from db import SessionFactory
from domain.reports import CENT, ORDER_MONEY, Period
from models import tables as t
from models.events import PaymentKind
from models.order_money import MoneyParts, MovementParts, movement_parts, stored_parts

APPROVED = "approved"
COLUMNS = (
    "at",
    "order_id",
    "kind",
    "book",
    "amount",
    "signed_amount",
    "net",
    "tax",
    "shipping",
    "discount",
    "currency",
    "idempotency_key",
    "reference",
)


class Book(StrEnum):
    hold = "hold"
    cash = "cash"


SIGN = {
    PaymentKind.authorization: 1,
    PaymentKind.increment: 1,
    PaymentKind.void: -1,
    PaymentKind.capture: 1,
    PaymentKind.refund: -1,
    PaymentKind.goodwill_refund: -1,
}
BOOK = {
    PaymentKind.authorization: Book.hold,
    PaymentKind.increment: Book.hold,
    PaymentKind.void: Book.hold,
    PaymentKind.capture: Book.cash,
    PaymentKind.refund: Book.cash,
    PaymentKind.goodwill_refund: Book.cash,
}


class JournalMismatch(Exception):
    """The journal does not sum to the ledger (rows changed while it was read): nothing was written."""


@dataclass(frozen=True)
class JournalRow:
    at: datetime
    order_id: str
    kind: PaymentKind
    amount: Decimal
    currency: str
    idempotency_key: str
    reference: str
    parts: MoneyParts  # its order's, to split the amount

    @property
    def book(self) -> Book:
        return BOOK[self.kind]

    @property
    def signed_amount(self) -> Decimal:
        return self.amount * SIGN[self.kind]

    @property
    def split(self) -> MovementParts:
        """The signed amount's parts: net + tax + shipping == signed_amount."""
        return movement_parts(self.signed_amount, self.parts)

    def csv_row(self) -> list[str]:
        split = self.split
        return [
            self.at.astimezone(UTC).isoformat(timespec="microseconds"),
            self.order_id,
            self.kind.value,
            self.book.value,
            f"{self.amount:.2f}",
            f"{self.signed_amount:.2f}",
            f"{split.net:.2f}",
            f"{split.tax:.2f}",
            f"{split.shipping:.2f}",
            f"{split.discount:.2f}",
            self.currency,
            self.idempotency_key,
            self.reference,
        ]


@dataclass(frozen=True)
class KindTotal:
    kind: PaymentKind
    currency: str
    rows: int
    amount: Decimal


@dataclass(frozen=True)
class Journal:
    period: Period
    rows: list[JournalRow]
    totals: list[KindTotal]  # of the rows, per kind and currency
    ledger: list[KindTotal]  # the same sums, as the database adds them up

    @property
    def balanced(self) -> bool:
        return self.totals == self.ledger


def journal(sessions: SessionFactory, period: Period, order_ids: Collection[str] | None = None) -> Journal:
    """The period's approved movements (of these orders only, when given), oldest first, and the
    ledger's own sums (a second query: a payment recorded in between makes them differ, which
    `write_csv` refuses)."""
    window: list[ColumnElement[bool]] = [t.Payment.status == APPROVED, *period.where(t.Payment.created_at)]
    if order_ids is not None:
        window.append(t.Payment.order_id.in_(list(order_ids)))
    with sessions() as session, session.begin():
        rows = [
            JournalRow(
                at,
                order_id,
                PaymentKind(kind),
                Decimal(amount).quantize(CENT),
                currency,
                key,
                reference,
                stored_parts(*money),
            )
            for at, order_id, kind, amount, currency, key, reference, *money in session.execute(
                select(
                    t.Payment.created_at,
                    t.Payment.order_id,
                    t.Payment.kind,
                    t.Payment.amount,
                    t.Payment.currency,
                    t.Payment.idempotency_key,
                    t.Payment.reference,
                    *ORDER_MONEY,
                )
                .outerjoin(t.Order, t.Order.id == t.Payment.order_id)
                .where(*window)
                .order_by(t.Payment.created_at, t.Payment.id)
            )
        ]
        ledger = [
            KindTotal(PaymentKind(kind), currency, int(n), Decimal(total).quantize(CENT))
            for kind, currency, n, total in session.execute(
                select(t.Payment.kind, t.Payment.currency, func.count(), func.sum(t.Payment.amount))
                .where(*window)
                .group_by(t.Payment.kind, t.Payment.currency)
            )
        ]
    return Journal(period, rows, _totals(rows), sorted(ledger, key=_order))


def _totals(rows: list[JournalRow]) -> list[KindTotal]:
    sums: dict[tuple[PaymentKind, str], list[int | Decimal]] = defaultdict(lambda: [0, Decimal("0.00")])
    for row in rows:
        entry = sums[(row.kind, row.currency)]
        entry[0] += 1
        entry[1] += row.amount
    totals = [KindTotal(kind, cur, int(n), Decimal(a)) for (kind, cur), (n, a) in sums.items()]
    return sorted(totals, key=_order)


def _order(total: KindTotal) -> tuple[int, str]:
    return list(PaymentKind).index(total.kind), total.currency


def write_csv(entries: Journal, path: Path) -> None:
    """Write the journal to `path` if it sums to the ledger; the file appears whole or not at all."""
    if not entries.balanced:
        raise JournalMismatch(
            "the journal does not sum to the payment ledger (payments changed while it was read); "
            "nothing was written: run the export again"
        )
    folder = path.resolve().parent
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=folder)
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(COLUMNS)
            writer.writerows(row.csv_row() for row in entries.rows)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
