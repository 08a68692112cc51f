"""The codec server's audit trail: one row per decode or encode — who, through what, which workflows,
how many payloads, from which browser origin, and the outcome. Never a payload's bytes."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from sqlalchemy import select

from db import SessionFactory
from models import tables as t

# the columns' sizes: longer values are cut (a browser's Origin or X-Namespace is the caller's to choose)
_SHORT, _WORKFLOWS, _OUTCOME = 255, 1000, 200
_CUT = "..."


class Via(StrEnum):
    api_key = "api_key"  # Authorization: Bearer (the Temporal CLI's --codec-auth)
    session = "session"  # the console's session cookie (the Temporal Web UI)


class Operation(StrEnum):
    decode = "decode"
    encode = "encode"  # type: ignore[assignment]  # named like str.encode: the audit rows' word for it


@dataclass(frozen=True)
class CodecUse:
    actor: str  # the API key's name
    role: str
    via: Via
    operation: Operation
    namespace: str
    workflow_ids: str
    payloads: int
    origin: str
    outcome: str  # "ok", or "refused: <why>"
    at: datetime = field(default_factory=t.utcnow)


def record_codec_use(sessions: SessionFactory, use: CodecUse) -> None:
    with sessions.begin() as session:
        session.add(
            t.CodecAudit(
                at=use.at,
                actor=use.actor[:64],
                role=use.role[:16],
                via=use.via.value,
                operation=use.operation.value,
                namespace=_fit(use.namespace, _SHORT),
                workflow_ids=_fit(use.workflow_ids, _WORKFLOWS),
                payloads=use.payloads,
                origin=_fit(use.origin, _SHORT),
                outcome=_fit(use.outcome, _OUTCOME),
            )
        )


def recent_codec_uses(sessions: SessionFactory, limit: int = 50) -> list[CodecUse]:
    """The last `limit` uses, newest first."""
    with sessions() as session:
        rows = session.scalars(select(t.CodecAudit).order_by(t.CodecAudit.id.desc()).limit(limit))
        return [
            CodecUse(
                actor=r.actor,
                role=r.role,
                via=Via(r.via),
                operation=Operation(r.operation),
                namespace=r.namespace,
                workflow_ids=r.workflow_ids,
                payloads=r.payloads,
                origin=r.origin,
                outcome=r.outcome,
                at=r.at,
            )
            for r in rows
        ]


def join_workflow_ids(ids: Iterable[str | None]) -> str:
    """Distinct workflow ids in the order first seen, comma-joined, cut to fit the column."""
    distinct = dict.fromkeys(i for i in ids if i)
    return _fit(",".join(distinct), _WORKFLOWS)


def _fit(text: str, size: int) -> str:
    return text if len(text) <= size else text[: size - len(_CUT)] + _CUT
