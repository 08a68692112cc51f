"""Batch order imports: their formats, states and outcomes, and the status a caller sees."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel

from models.choices import ImportFormat


class ImportState(StrEnum):
    running = "running"  # orders still pending (or being placed)
    done = "done"  # every order has its outcome


class ImportOutcomeKind(StrEnum):
    pending = "pending"  # valid, waiting to be placed
    accepted = "accepted"  # this import started the order's workflow
    duplicate = "duplicate"  # the order id was placed before, with the same content: nothing new started
    refused = "refused"  # invalid, or the order id was placed before with a different content


class ImportProblem(BaseModel):
    rows: str  # the file's line numbers, e.g. "5" or "4-6, 9" (a CSV file's header is line 1)
    order_id: str | None
    reason: str


class ImportStatus(BaseModel):
    id: str
    format: ImportFormat
    status: ImportState
    created_by: str | None = None
    created_at: datetime
    finished_at: datetime | None = None
    total: int
    pending: int
    accepted: int
    duplicates: int
    refused: int
    problems: list[ImportProblem] = []  # the refused orders, in file order
    duplicate_orders: list[str] = []  # ids of the orders that were already placed
