"""Batch order imports over the Temporal client: one importer behind the command line and the HTTP API.

`create_import` parses and validates a file and stores one outcome row per order: `pending` (with the
validated order document) or `refused` (with its problems). `run_import` then places the pending orders
with bounded concurrency and records what became of each: `accepted` (this import started the order's
workflow), `duplicate` (the order id had been placed before with the same content: nothing new started)
or `refused` (placed before with a different content). The order id is the idempotency key, so running
an import again, importing the same file again, or two runners racing never place an order twice.

Resuming: a runner holds the import by a lease (`lease_until`, taken by a conditional UPDATE and renewed
while it works), so two runners never work the same import at once; a runner that dies lets its lease
expire and the next run takes over. An order whose placement failed for a reason that may pass
(Temporal unreachable, a timeout) stays `pending`: the run stops placing more, releases the lease and
raises ImportInterrupted; running the import again places what is still pending.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import ValidationError
from sqlalchemy import ColumnElement, exists, func, insert, select, update
from temporalio.client import Client

from config import Settings
from db import SessionFactory, rows_changed
from domain.order_import import ImportFormat, parse_import
from models import tables as t
from models.imports import ImportOutcomeKind, ImportProblem, ImportState, ImportStatus
from models.orders import OrderInput
from models.validation import field_problems
from services.orders import handle, place_order

LEASE = timedelta(seconds=60)  # how long a runner holds an import without renewing it
RENEW_EVERY = 15.0  # seconds between renewals (well inside the lease)
PLACE_TIMEOUT = 60.0  # seconds one placement may take before the run counts Temporal as unreachable

Progress = Callable[[ImportStatus], None]


class UnknownImport(LookupError):
    def __init__(self, import_id: str) -> None:
        super().__init__(f"unknown import {import_id}")


class ImportBusy(RuntimeError):
    """Another runner holds the import: it is placing these orders now, or it died and its lease has
    not run out yet (`until`, when known: after that a run may take the import over)."""

    def __init__(self, message: str, until: datetime | None = None) -> None:
        super().__init__(message)
        self.until = until


class ImportInterrupted(RuntimeError):
    """Some orders could not be placed for a reason that may pass (e.g. Temporal unreachable): they
    are still pending, and running the import again places them. `status` is where the import stands."""

    def __init__(self, status: ImportStatus, cause: BaseException) -> None:
        super().__init__(
            f"import {status.id} stopped with {status.pending} order(s) not yet placed: "
            f"{type(cause).__name__}: {cause}; run it again to place them"
        )
        self.status = status
        self.cause = cause


def new_import_id() -> str:
    return f"IMP-{uuid.uuid4().hex[:12].upper()}"


def create_import(sessions: SessionFactory, text: str, fmt: ImportFormat, by: str | None) -> ImportStatus:
    """Parse and validate the file and store the import: valid orders pending, invalid ones refused.

    Raises domain.order_import.ImportFileError when the file as a whole is unreadable (nothing stored)."""
    parsed = parse_import(text, ImportFormat(fmt))
    import_id = new_import_id()
    outcomes = [
        {
            "import_id": import_id,
            "seq": seq,
            "order_id": p.order_id,
            "rows": p.rows,
            "outcome": ImportOutcomeKind.pending if p.order else ImportOutcomeKind.refused,
            "reason": None if p.order else "; ".join(p.problems),
            "order_json": p.order.model_dump_json() if p.order else None,
        }
        for seq, p in enumerate(parsed, start=1)
    ]
    nothing_to_place = not any(p.order for p in parsed)
    now = t.utcnow()
    with sessions() as session:
        session.add(
            t.OrderImport(
                id=import_id,
                format=ImportFormat(fmt).value,
                status=ImportState.done if nothing_to_place else ImportState.running,
                created_by=by,
                created_at=now,
                finished_at=now if nothing_to_place else None,
            )
        )
        session.flush()
        if outcomes:
            session.execute(insert(t.ImportOutcome), outcomes)
        session.commit()
    status = import_status(sessions, import_id)
    assert status is not None
    return status


def import_status(sessions: SessionFactory, import_id: str) -> ImportStatus | None:
    """Where the import stands: counts per outcome, the refused orders with their reasons, the duplicates."""
    outcome = t.ImportOutcome
    with sessions() as session:
        row = session.get(t.OrderImport, import_id)
        if row is None:
            return None
        counts: dict[str, int] = dict(
            session.execute(
                select(outcome.outcome, func.count())
                .where(outcome.import_id == import_id)
                .group_by(outcome.outcome)
            )
            .tuples()
            .all()
        )
        refused = session.execute(
            select(outcome.rows, outcome.order_id, outcome.reason)
            .where(outcome.import_id == import_id, outcome.outcome == ImportOutcomeKind.refused)
            .order_by(outcome.seq)
        ).all()
        duplicates = session.scalars(
            select(outcome.order_id)
            .where(outcome.import_id == import_id, outcome.outcome == ImportOutcomeKind.duplicate)
            .order_by(outcome.seq)
        ).all()
    return ImportStatus(
        id=row.id,
        format=ImportFormat(row.format),
        status=ImportState(row.status),
        created_by=row.created_by,
        created_at=row.created_at,
        finished_at=row.finished_at,
        total=sum(counts.values()),
        pending=counts.get(ImportOutcomeKind.pending, 0),
        accepted=counts.get(ImportOutcomeKind.accepted, 0),
        duplicates=counts.get(ImportOutcomeKind.duplicate, 0),
        refused=counts.get(ImportOutcomeKind.refused, 0),
        problems=[ImportProblem(rows=r.rows, order_id=r.order_id, reason=r.reason or "") for r in refused],
        duplicate_orders=[order_id for order_id in duplicates if order_id],
    )


def unfinished_imports(sessions: SessionFactory) -> list[str]:
    """Imports with orders still to place (oldest first): run them to finish them."""
    with sessions() as session:
        return list(
            session.scalars(
                select(t.OrderImport.id)
                .where(t.OrderImport.status == ImportState.running)
                .order_by(t.OrderImport.created_at, t.OrderImport.id)
            )
        )


async def run_import(
    client: Client,
    settings: Settings,
    sessions: SessionFactory,
    import_id: str,
    by: str | None = None,
    progress: Progress | None = None,
    concurrency: int = 16,
) -> ImportStatus:
    """Place the import's pending orders and record each outcome; the import is `done` at the end.

    Idempotent and resumable: only pending orders are placed, and an order id is never placed twice.
    `by` is who placed them (default: who created the import); `progress(status)` is called after each
    order. Raises UnknownImport, ImportBusy (another runner holds it) or ImportInterrupted (some orders
    could not be placed now and are still pending)."""
    lease = await asyncio.to_thread(_claim, sessions, import_id)
    if lease is None:  # done already
        status = await asyncio.to_thread(import_status, sessions, import_id)
        assert status is not None
        return status
    holder = _Lease(sessions, import_id, lease)
    renewing = asyncio.create_task(holder.keep())
    try:
        status = await asyncio.to_thread(import_status, sessions, import_id)
        assert status is not None
        pending = await asyncio.to_thread(_pending, sessions, import_id)
        run = _Run(client, settings, sessions, status, by or status.created_by, progress, holder)
        slots = asyncio.Semaphore(max(1, concurrency))

        async def place_one(row: _Pending) -> None:
            async with slots:
                if not run.stopped():
                    await run.place(row)

        try:
            await asyncio.gather(*(place_one(row) for row in pending))
        except asyncio.CancelledError:  # let go at once rather than when the lease runs out
            holder.stop.set()
            await renewing
            await asyncio.to_thread(holder.release)
            raise
    finally:
        holder.stop.set()
        await renewing
    if holder.lost:
        raise ImportBusy(f"import {import_id} was taken over by another runner (its lease ran out)")
    failure = run.failure or holder.failure
    if failure is not None:
        await asyncio.to_thread(holder.release)
        status = await asyncio.to_thread(import_status, sessions, import_id)
        assert status is not None
        raise ImportInterrupted(status, failure)
    await asyncio.to_thread(holder.finish)
    if holder.lost:
        raise ImportBusy(f"import {import_id} was taken over by another runner (its lease ran out)")
    status = await asyncio.to_thread(import_status, sessions, import_id)
    assert status is not None
    return status


# ---- placing ----


@dataclass(frozen=True)
class _Pending:
    seq: int
    order_id: str | None
    rows: str
    order_json: str


class _Run:
    """One run over an import's pending orders: places them, records outcomes, keeps a running tally."""

    def __init__(
        self,
        client: Client,
        settings: Settings,
        sessions: SessionFactory,
        status: ImportStatus,
        by: str | None,
        progress: Progress | None,
        lease: _Lease,
    ) -> None:
        self.client, self.settings, self.sessions = client, settings, sessions
        self.tally = status
        self.by = by
        self.progress = progress
        self.lease = lease
        self.failure: BaseException | None = None

    def stopped(self) -> bool:
        return self.failure is not None or self.lease.lost or self.lease.failure is not None

    async def place(self, row: _Pending) -> None:
        try:
            outcome, reason = await asyncio.wait_for(self._outcome(row), PLACE_TIMEOUT)
        except Exception as exc:  # Temporal unreachable, a timeout...: the order stays pending
            self.failure = self.failure or exc
            return
        try:
            recorded = await asyncio.to_thread(
                _record, self.sessions, self.tally.id, row.seq, outcome, reason
            )
        except Exception as exc:  # the database: the order stays pending; placing it again is harmless
            self.failure = self.failure or exc
            return
        if recorded:
            self._count(row, outcome, reason)
        if self.progress is not None:
            snapshot = self.tally.model_copy(
                update={
                    "problems": list(self.tally.problems),
                    "duplicate_orders": list(self.tally.duplicate_orders),
                }
            )
            try:
                self.progress(snapshot)
            except Exception as exc:  # a broken progress report stops the run like any failure
                self.failure = self.failure or exc

    async def _outcome(self, row: _Pending) -> tuple[ImportOutcomeKind, str | None]:
        try:
            order = OrderInput.model_validate_json(row.order_json)
        except ValidationError as exc:  # the rules changed since the file was imported
            return ImportOutcomeKind.refused, "no longer a valid order: " + "; ".join(field_problems(exc))
        assert order.order_id is not None
        # Any error placing it (RPCError: Temporal unreachable, a search attribute not registered yet...)
        # leaves the order pending: an outcome is final, and these pass once the cause is fixed.
        placement = await place_order(self.client, self.settings, order, by=self.by)
        if placement.created:
            return ImportOutcomeKind.accepted, None
        if not placement.same_order:
            return (
                ImportOutcomeKind.refused,
                f"order {order.order_id} was placed before with different content",
            )
        # Placed before with the same content: by someone else before this import existed (a duplicate),
        # or by this very import in an earlier run that stopped before it could record the outcome (the
        # row is still pending). The workflow's start time tells them apart: a workflow started after
        # the import was created is this import's own placement, so the order counts as accepted, once.
        # The one blur: an identical order placed by someone else after this import was created (another
        # source, or a re-import of the same file while this one was interrupted) counts as accepted
        # here too. Either way it was placed exactly once; only which import gets the credit blurs.
        # Clocks: created_at is the app's, start_time Temporal's; a skew between them only matters for
        # a placement within that skew of the import's creation.
        started = (await handle(self.client, order.order_id).describe()).start_time
        if started is not None and started >= self.tally.created_at:
            return ImportOutcomeKind.accepted, None
        return ImportOutcomeKind.duplicate, None

    def _count(self, row: _Pending, outcome: ImportOutcomeKind, reason: str | None) -> None:
        tally = self.tally
        tally.pending -= 1
        if outcome == ImportOutcomeKind.accepted:
            tally.accepted += 1
        elif outcome == ImportOutcomeKind.duplicate:
            tally.duplicates += 1
            tally.duplicate_orders.append(row.order_id or "")
        else:
            tally.refused += 1
            tally.problems.append(ImportProblem(rows=row.rows, order_id=row.order_id, reason=reason or ""))


def _pending(sessions: SessionFactory, import_id: str) -> Sequence[_Pending]:
    outcome = t.ImportOutcome
    with sessions() as session:
        rows = session.execute(
            select(outcome.seq, outcome.order_id, outcome.rows, outcome.order_json)
            .where(outcome.import_id == import_id, outcome.outcome == ImportOutcomeKind.pending)
            .order_by(outcome.seq)
        ).all()
    return [_Pending(r.seq, r.order_id, r.rows, r.order_json or "") for r in rows]


def _record(
    sessions: SessionFactory, import_id: str, seq: int, outcome: ImportOutcomeKind, reason: str | None
) -> bool:
    """Record an order's outcome once (only a pending row changes); the placed document is dropped."""
    with sessions() as session:
        result = session.execute(
            update(t.ImportOutcome)
            .where(
                t.ImportOutcome.import_id == import_id,
                t.ImportOutcome.seq == seq,
                t.ImportOutcome.outcome == ImportOutcomeKind.pending,
            )
            .values(outcome=outcome.value, reason=reason, order_json=None)
        )
        session.commit()
    return rows_changed(result) == 1


# ---- the lease: one runner at a time ----


def _claim(sessions: SessionFactory, import_id: str) -> datetime | None:
    """Take the import's lease; None if it is done. Raises UnknownImport, or ImportBusy while another
    runner's lease lasts."""
    now = t.utcnow()
    until = now + LEASE
    imports = t.OrderImport
    with sessions() as session:
        result = session.execute(
            update(imports)
            .where(
                imports.id == import_id,
                imports.status == ImportState.running,
                (imports.lease_until.is_(None)) | (imports.lease_until < now),
            )
            .values(lease_until=until)
        )
        session.commit()
        if rows_changed(result) == 1:
            return until
        row = session.get(imports, import_id)
    if row is None:
        raise UnknownImport(import_id)
    if row.status == ImportState.done:
        return None
    held = f" until {row.lease_until:%H:%M:%S} UTC" if row.lease_until else ""
    raise ImportBusy(f"import {import_id} is being run by another runner{held}", row.lease_until)


class _Lease:
    """This runner's hold on an import: the `lease_until` value it wrote is its token."""

    def __init__(self, sessions: SessionFactory, import_id: str, until: datetime) -> None:
        self.sessions, self.import_id, self.until = sessions, import_id, until
        self.stop = asyncio.Event()
        self.lost = False
        self.failure: BaseException | None = None

    async def keep(self) -> None:
        """Renew the lease until told to stop. Never cancelled mid-renewal, so the token stays true."""
        while not self.stop.is_set() and not self.lost and self.failure is None:
            try:
                await asyncio.wait_for(self.stop.wait(), RENEW_EVERY)
            except TimeoutError:
                try:
                    await asyncio.to_thread(self._renew)
                except Exception as exc:  # the database: stop placing; the lease runs out on its own
                    self.failure = exc

    def _renew(self) -> None:
        until = t.utcnow() + LEASE
        if self._update({"lease_until": until}):
            self.until = until
        else:
            self.lost = True

    def release(self) -> None:
        self._update({"lease_until": None})

    def finish(self) -> None:
        """Done, if no order is pending any more (else just let go); `lost` if another runner has it."""
        outcome = t.ImportOutcome
        still_pending = exists().where(
            outcome.import_id == self.import_id, outcome.outcome == ImportOutcomeKind.pending
        )
        values = {"status": ImportState.done.value, "finished_at": t.utcnow(), "lease_until": None}
        if not self._update(values, ~still_pending) and not self._update({"lease_until": None}):
            self.lost = True

    def _update(self, values: dict[str, object], *where: ColumnElement[bool]) -> bool:
        imports = t.OrderImport
        with self.sessions() as session:
            result = session.execute(
                update(imports)
                .where(imports.id == self.import_id, imports.lease_until == self.until, *where)
                .values(**values)
            )
            session.commit()
        return rows_changed(result) == 1
