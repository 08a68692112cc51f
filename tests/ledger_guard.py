"""After every integration test that ran on the suite's database: the money invariants
(domain/money_invariants.py) of every order whose payments changed, and the stock ledger check
(domain/stock.py `check_stock`). A finding fails the test (at its teardown), naming the order or the
SKU and the figures.

The database lives for the whole session, so what one test breaks on purpose must not fail the next:
a test marked `ledger_may_break("why")` is not checked, and the orders it moved money for and the
stock pairs it left broken are excused from then on; so are those of a test that failed or whose check
found something (reported once, not again by every later test).

Orders of earlier tests may still be running. The ledger's invariants hold at every instant, but the
checks read the database in several statements, so a finding is believed only once it has lasted:
the check asks again until it comes out clean or `PATIENCE` has passed.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Generator, Iterable
from dataclasses import dataclass, field

import pytest
from sqlalchemy import func, select

from db import SessionFactory
from domain.money_invariants import check_money
from domain.stock import check_stock
from models import tables as t

MARKER = "ledger_may_break"
PATIENCE = 10.0  # seconds a finding must last before it fails the test
STOCK = "stock ledger: "  # how a stock check line is told from a money one
_PAIR = re.compile(r"\S+@[^\s:]+")  # the `sku@warehouse` a stock check line is about


@dataclass
class LedgerWatch:
    sessions: SessionFactory
    seen: dict[str, int] = field(default_factory=dict)  # payments rows per order at the last look
    excused_orders: set[str] = field(default_factory=set)
    excused_pairs: set[str] = field(default_factory=set)
    patience: float = PATIENCE
    checks: int = 0  # tests checked, and the seconds it took (the session's summary says them)
    spent: float = 0.0

    def changed_orders(self) -> set[str]:
        """The orders with payments recorded since the last look."""
        with self.sessions() as session:
            now = dict(
                session.execute(select(t.Payment.order_id, func.count()).group_by(t.Payment.order_id)).all()
            )
        changed = {order for order, n in now.items() if self.seen.get(order) != n}
        self.seen.update(now)
        return changed - self.excused_orders

    def problems(self, orders: set[str]) -> list[str]:
        stock = [p for p in check_stock(self.sessions) if _pair(p) not in self.excused_pairs]
        return check_money(self.sessions, orders) + [STOCK + p for p in stock]

    async def verify(self) -> list[str]:
        """What lasts `patience` seconds of asking again; then excused, so it is reported once."""
        started = time.perf_counter()
        orders = self.changed_orders()
        deadline = asyncio.get_running_loop().time() + self.patience
        while True:
            found = await asyncio.to_thread(self.problems, orders)
            if not found or asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.2)
            orders |= self.changed_orders()
        if found:
            self.excuse(orders, [p.removeprefix(STOCK) for p in found if p.startswith(STOCK)])
        self.checks += 1
        self.spent += time.perf_counter() - started
        return found

    def excuse(self, orders: Iterable[str], stock_problems: Iterable[str]) -> None:
        self.excused_orders.update(orders)
        self.excused_pairs.update(_pair(p) for p in stock_problems)

    def excuse_what_changed(self) -> None:
        self.excuse(self.changed_orders(), check_stock(self.sessions))


def _pair(problem: str) -> str:
    found = _PAIR.search(problem)
    return found.group(0) if found else problem


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, object, object]:
    report = yield
    if call.when == "call":
        item.stash[_FAILED] = bool(getattr(report, "failed", False))
    return report


_FAILED = pytest.StashKey[bool]()
_WATCH = pytest.StashKey[LedgerWatch]()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    if (watch := config.stash.get(_WATCH, None)) is not None:
        terminalreporter.write_line(
            f"ledger guard: {watch.checks} tests checked in {watch.spent:.1f}s, "
            f"{len(watch.seen)} orders with payments"
        )


@pytest.fixture(scope="session")
def ledger_watch(sessions: SessionFactory, pytestconfig: pytest.Config) -> LedgerWatch:
    watch = LedgerWatch(sessions)
    pytestconfig.stash[_WATCH] = watch
    watch.changed_orders()  # what was there before the first test (nothing, on a fresh database)
    return watch


@pytest.fixture(autouse=True)
async def ledger_checked(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    if "database_url" not in request.fixturenames:  # the fast tier, and tests without the database
        yield
        return
    watch: LedgerWatch = request.getfixturevalue("ledger_watch")
    yield
    marker = request.node.get_closest_marker(MARKER)
    if marker is not None and not marker.args:
        pytest.fail(f"@pytest.mark.{MARKER} needs its reason")
    if marker is not None or request.node.stash.get(_FAILED, True):
        watch.excuse_what_changed()
        return
    if found := await watch.verify():
        pytest.fail(
            "the ledgers disagree after this test (tests/ledger_guard.py):\n  " + "\n  ".join(found),
            pytrace=False,
        )
