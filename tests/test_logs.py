"""The processes' logs (logs.py): the text format, and OMS_LOG_FORMAT=json read by a real worker."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from temporalio.client import Client
from temporalio.testing import ActivityEnvironment

from config import PROJECT_DIR, LogFormat, Settings
from db import SessionFactory
from logs import FORMAT, EscapingFormatter, JsonFormatter
from tests.api_server import running_api
from tests.helpers import add_products, order_doc, place, rejection, wait_status
from tests.worker_process import running_worker

FORGED = "refused /orders/x\n2026-01-01 00:00:00,000 INFO oms.api.audit: forged\u2028line"


def record(message: str, name: str = "oms.test", **extra: Any) -> logging.LogRecord:
    made = logging.LogRecord(name, logging.INFO, __file__, 1, message, None, None)
    made.__dict__.update(extra)
    return made


# ---- the text format: as it always was ----


def test_the_text_format_is_time_level_logger_and_the_escaped_message():
    line = EscapingFormatter(FORMAT).format(record(FORGED, created=0))
    assert "\n" not in line and "\u2028" not in line
    assert line.endswith(
        " INFO oms.test: refused /orders/x\\n2026-01-01 00:00:00,000 INFO oms.api.audit: forged\\u2028line"
    )


def test_the_default_format_is_text(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("OMS_LOG_FORMAT", raising=False)
    assert Settings().log_format == LogFormat.text
    monkeypatch.setenv("OMS_LOG_FORMAT", "yaml")
    with pytest.raises(ValueError, match="log_format"):
        Settings()


# ---- the JSON format ----


def test_a_message_with_control_characters_is_one_json_line_escaped_as_in_the_text_format():
    line = JsonFormatter().format(record(FORGED))
    assert "\n" not in line and "\u2028" not in line
    fields = json.loads(line)
    assert (
        fields["message"]
        == "refused /orders/x\\n2026-01-01 00:00:00,000 INFO oms.api.audit: forged\\u2028line"
    )
    assert set(fields) == {"time", "level", "logger", "message"}  # outside Temporal work: no ids
    assert (fields["level"], fields["logger"]) == ("INFO", "oms.test")
    assert fields["time"].endswith("+00:00")


def test_a_traceback_stays_in_the_line():
    try:
        raise ValueError("bad\nvalue")
    except ValueError:
        failed = record("failed", exc_info=sys.exc_info())
    line = JsonFormatter().format(failed)
    assert "\n" not in line
    assert json.loads(line)["exception"].startswith("Traceback")


def test_other_extras_stay_out_of_the_line():
    """A library's `extra` may hold personal data: only the named fields are written."""
    line = JsonFormatter().format(record("placed", customer_email="ann@example.com"))
    assert "ann@example.com" not in line


def test_a_workflow_loggers_record_names_its_workflow_and_order():
    details = {"workflow_id": "order-A1", "run_id": "r1", "workflow_type": "OrderWorkflow", "attempt": 1}
    fields = json.loads(JsonFormatter().format(record("on hold", temporal_workflow=details)))
    assert (fields["workflow_id"], fields["run_id"], fields["order_id"]) == ("order-A1", "r1", "A1")
    assert "activity" not in fields


def test_a_plain_loggers_record_inside_an_activity_names_the_activity():
    """Our own loggers (not the SDK's activity.logger) get the ids from activity.info()."""
    formatter = JsonFormatter()
    line = ActivityEnvironment().run(lambda: formatter.format(record("reserving")))
    fields = json.loads(line)
    # ActivityEnvironment's info: workflow "test", an unnamed type: no order
    assert (fields["workflow_id"], fields["run_id"], fields["activity"]) == ("test", "test-run", "unknown")
    assert "order_id" not in fields


def test_the_trace_id_is_written_inside_an_opentelemetry_trace():
    span_context = SimpleNamespace(
        trace_id=0x0AF7651916CD43DD8448EB211C80319C, span_id=0xB7AD6B7169203331, is_valid=True
    )
    span = SimpleNamespace(get_span_context=lambda: span_context)
    formatter = JsonFormatter()
    formatter.trace = SimpleNamespace(get_current_span=lambda: span)
    fields = json.loads(formatter.format(record("traced")))
    assert fields["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
    assert fields["span_id"] == "b7ad6b7169203331"
    outside = SimpleNamespace(get_span_context=lambda: SimpleNamespace(is_valid=False))  # INVALID_SPAN's
    formatter.trace = SimpleNamespace(get_current_span=lambda: outside)
    assert "trace_id" not in json.loads(formatter.format(record("not traced")))


async def test_a_worker_with_json_logs_writes_json_lines_naming_the_order_on_activity_lines(
    client: Client, settings: Settings, sessions: SessionFactory, tmp_path: Path
):
    log_path = tmp_path / "worker.log"
    async with running_worker(settings, log_path, OMS_LOG_FORMAT="json") as (own, _):
        skus = add_products(sessions, {"TEE": 5}, price="19.90")
        declined = await place(client, own, order_doc([(skus["TEE"], 1)], token="tok_declined"))
        confirmed = await place(client, own, order_doc([(skus["TEE"], 1)]))
        await rejection(client, declined)
        await wait_status(client, confirmed, "confirmed", "picking", "packed", "shipped")

    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    assert lines and all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    assert any(line["logger"] == "oms.worker" and "polling task queue" in line["message"] for line in lines)
    (refusal,) = [line for line in lines if line.get("activity") == "authorize_payment"]
    assert refusal["message"].startswith("authorize_payment refused: PaymentDeclined")
    assert (refusal["workflow_id"], refusal["order_id"]) == (f"order-{declined}", declined)
    assert refusal["run_id"] and refusal["attempt"] == 1
    assert "exception" not in refusal  # a business refusal: one line, as in the text format
    assert all(line["workflow_id"] for line in lines if "activity" in line)


async def test_the_api_with_json_logs_writes_json_lines(settings: Settings, tmp_path: Path):
    """uvicorn's own records (started, stopping) go through the root logger: JSON too."""
    with running_api(settings, tmp_path, OMS_LOG_FORMAT="json") as api:
        pass
    lines = [json.loads(line) for line in api.log().splitlines() if line.strip()]
    assert any(line["logger"].startswith("uvicorn") for line in lines)


def test_warnings_and_a_crash_are_json_lines_too():
    program = (
        "import warnings; from config import LogFormat; from logs import configure_logging; "
        "configure_logging(LogFormat.json); warnings.warn('careful'); raise RuntimeError('boom')"
    )
    run = subprocess.run([sys.executable, "-c", program], cwd=PROJECT_DIR, capture_output=True, text=True)
    assert run.returncode == 1
    warned, crashed = [json.loads(line) for line in run.stderr.splitlines()]
    assert (warned["logger"], warned["level"]) == ("py.warnings", "WARNING") and "careful" in warned[
        "message"
    ]
    assert crashed["level"] == "CRITICAL" and "RuntimeError: boom" in crashed["exception"]
