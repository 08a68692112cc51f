"""The money invariants of orders, read from the database: each a line naming the order and its figures.

- The payments ledger (`ledger_totals`): authorized >= captured >= refunded (every refund kind counted),
  and nothing captured out of what a void released: captured + voided <= authorized.
- The finance journal (domain/journal.py, the ERP's view of the same `payments` rows) equals the ledger,
  to the cent: its rows sum to the ledger's per kind; per order, each book and sign (captures, refunds,
  authorizations, voids) sums to the ledger's figure for it; every row's net + tax + shipping is its
  signed amount; and it books every kind the ledger records.

The tests check them after every integration test (tests/ledger_guard.py), chaos after a run
(chaos/invariants.py). Both read only committed rows: a payment recorded between two of the reads
can make them disagree for a moment, so a caller watching live orders asks again before it believes
a finding.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from decimal import Decimal

from db import SessionFactory
from domain.journal import BOOK, SIGN, Book, Journal, journal
from domain.payment_ledger import LedgerTotals, ledger_totals
from domain.reports import CENT, Period

ZERO = Decimal("0.00")
# Which journal rows make each figure of the ledger's totals: (book, sign). A field the ledger gains is
# compared once it is named here.
FIGURES: dict[str, tuple[Book, int]] = {
    "authorized": (Book.hold, 1),
    "voided": (Book.hold, -1),
    "captured": (Book.cash, 1),
    "refunded": (Book.cash, -1),
}
_Booked = dict[tuple[str, Book, int], tuple[int, Decimal]]  # (order, book, sign) -> (rows, amount)


def check_money(sessions: SessionFactory, order_ids: Collection[str]) -> list[str]:
    """Every money invariant these orders break; empty when all hold."""
    ids = sorted(set(order_ids))
    if not ids:
        return []
    entries = journal(sessions, Period(), ids)
    problems = _journal_rows(entries)
    booked = _booked(entries)
    with sessions() as session:
        for order_id in ids:
            totals = ledger_totals(session, order_id)
            problems += _ledger_order(order_id, totals, booked)
            problems += _journal_order(order_id, totals, booked)
    return problems


def _journal_rows(entries: Journal) -> list[str]:
    problems = []
    if not entries.balanced:
        problems.append(f"the journal's rows sum to {entries.totals}, the ledger's to {entries.ledger}")
    for row in entries.rows:
        if row.kind not in BOOK or row.kind not in SIGN:
            problems.append(f"order {row.order_id}: the journal books no {row.kind} ({row.idempotency_key})")
            continue
        split = row.split
        if split.net + split.tax + split.shipping != row.signed_amount:
            problems.append(
                f"order {row.order_id}: journal row {row.idempotency_key} splits {row.signed_amount} into "
                f"net {split.net} + tax {split.tax} + shipping {split.shipping}"
            )
    return problems


def _booked(entries: Journal) -> _Booked:
    sums: defaultdict[tuple[str, Book, int], tuple[int, Decimal]] = defaultdict(lambda: (0, ZERO))
    for row in entries.rows:
        if row.kind in BOOK and row.kind in SIGN:
            key = (row.order_id, BOOK[row.kind], SIGN[row.kind])
            n, amount = sums[key]
            sums[key] = (n + 1, amount + row.amount)
    return dict(sums)


def _ledger_order(order_id: str, totals: LedgerTotals, booked: _Booked) -> list[str]:
    voided = totals.voided
    figures = (
        f"authorized {_money(totals.authorized)}, captured {_money(totals.captured)}, "
        f"refunded {_money(totals.refunded)}, voided {_money(voided)}"
    )
    problems = []
    if totals.captured > totals.authorized:
        problems.append(f"order {order_id}: captured more than authorized ({figures})")
    if totals.refunded > totals.captured:
        problems.append(f"order {order_id}: refunded more than captured ({figures})")
    if voided and totals.captured + voided > totals.authorized:
        problems.append(f"order {order_id}: captured what a void released ({figures})")
    return problems


def _journal_order(order_id: str, totals: LedgerTotals, booked: _Booked) -> list[str]:
    problems = []
    for figure, (book, sign) in FIGURES.items():
        ledger: Decimal = getattr(totals, figure)
        rows, amount = booked.get((order_id, book, sign), (0, ZERO))
        if amount != ledger:
            problems.append(
                f"order {order_id}: the journal books {_money(amount)} in {rows} {book} rows signed "
                f"{sign:+d} as {figure}, the ledger's {figure} is {_money(ledger)}"
            )
    return problems


def _money(amount: Decimal) -> str:
    """To the cent, unless it has more: then all of it (the ledger's figure a journal row cannot book)."""
    return f"{amount:.2f}" if amount == amount.quantize(CENT) else str(amount.normalize())
