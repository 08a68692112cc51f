"""How the processes log: one line per record, with control characters in the message escaped.

A message may quote what a request carried (a path, an id, a reason): written raw, a newline in it
would start a line of its own that reads like another record (a forged audit line, say). Tracebacks
keep their lines in the text format: they are the program's, and each follows the record it belongs to.

Two formats (OMS_LOG_FORMAT): `text` for people, `json` for a log pipeline (one JSON object per line,
see JsonFormatter). Both escape the message the same way, so a message reads the same in either.
"""

from __future__ import annotations

import importlib
import json
import logging
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from temporalio import activity

from config import LogFormat
from models.text import printable
from models.workflow_names import ORDER_WORKFLOW, order_id_of

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class EscapingFormatter(logging.Formatter):
    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        record.message = printable(record.message)
        return super().formatMessage(record)


def _opentelemetry_trace() -> Any:
    """OpenTelemetry's trace API if something in the process installed it, else None: the OMS does not
    depend on it, but a deployment that traces (an instrumented image) gets its trace ids in the logs."""
    try:
        return importlib.import_module("opentelemetry.trace")
    except ImportError:
        return None


class JsonFormatter(logging.Formatter):
    """One JSON object per line: `time` (UTC, ISO 8601), `level`, `logger`, `message` and, where the
    record was made inside Temporal work, `workflow_id`, `run_id`, `order_id` (an order's workflow),
    `activity` and `attempt`; `trace_id` and `span_id` when made inside an OpenTelemetry trace;
    `exception` with the traceback.

    Only these fields, never the record's other attributes: a library's `extra` (or the SDK's full
    activity info, with its heartbeat details) could carry personal data. The message is escaped as in
    the text format (`printable`) before json.dumps, so it reads the same in both and a viewer that
    shows the decoded field still shows one line; ensure_ascii keeps U+2028 and friends out of the raw
    line.
    """

    def __init__(self) -> None:
        super().__init__()
        self.trace = _opentelemetry_trace()

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": printable(record.getMessage()),
        }
        # what the SDK left unknown (a run id, say) is left out rather than written as null
        fields.update((name, value) for name, value in temporal_fields(record).items() if value is not None)
        fields.update(self.trace_fields())
        if record.exc_info:
            record.exc_text = record.exc_text or self.formatException(record.exc_info)
        if record.exc_text:
            fields["exception"] = record.exc_text
        if record.stack_info:
            fields["stack"] = self.formatStack(record.stack_info)
        return json.dumps(fields, ensure_ascii=True, default=str)

    def trace_fields(self) -> dict[str, str]:
        if self.trace is None:
            return {}
        # the current span's context, recording or not: the API's audit line is written once the
        # response is sent, after its request's span has ended, and belongs to that trace all the same
        context = self.trace.get_current_span().get_span_context()
        if not context.is_valid:
            return {}
        return {"trace_id": format(context.trace_id, "032x"), "span_id": format(context.span_id, "016x")}


def temporal_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The workflow (and activity) a record was made in: from the details the SDK's `activity.logger`
    and `workflow.logger` put on their records (`temporal_activity`, `temporal_workflow`), else, for a
    record of any other logger made inside an activity, from `activity.info()`."""
    details: Mapping[str, Any] | None = getattr(record, "temporal_activity", None)
    if details is None and activity.in_activity():
        info = activity.info()  # the same details, under the same names, as the SDK's logger attaches
        details = {
            "workflow_id": info.workflow_id,
            "workflow_run_id": info.workflow_run_id,
            "workflow_type": info.workflow_type,
            "activity_type": info.activity_type,
            "attempt": info.attempt,
        }
    if details is not None:
        return _workflow_fields(details, run_id=details.get("workflow_run_id")) | {
            "activity": details.get("activity_type"),
            "attempt": details.get("attempt"),
        }
    details = getattr(record, "temporal_workflow", None)
    if details is not None:
        return _workflow_fields(details, run_id=details.get("run_id"))
    return {}


def _workflow_fields(details: Mapping[str, Any], run_id: str | None) -> dict[str, Any]:
    workflow_id = details.get("workflow_id")
    fields = {"workflow_id": workflow_id, "run_id": run_id}
    if details.get("workflow_type") == ORDER_WORKFLOW and workflow_id:
        fields["order_id"] = order_id_of(workflow_id)
    return fields


def configure_logging(log_format: LogFormat = LogFormat.text, level: int = logging.INFO) -> None:
    """The root logger of a worker or API process: INFO and up, to stderr, escaped, in `log_format`."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == LogFormat.json else EscapingFormatter(FORMAT))
    logging.basicConfig(level=level, handlers=[handler])
    if log_format == LogFormat.json:
        # written raw to stderr, a warning or a crash's traceback would be lines no JSON reader parses
        logging.captureWarnings(True)
        sys.excepthook = _log_uncaught


def _log_uncaught(kind: type[BaseException], error: BaseException, traceback: TracebackType | None) -> None:
    logging.getLogger("oms").critical("stopped by %s", kind.__name__, exc_info=(kind, error, traceback))
