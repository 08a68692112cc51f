"""The command line (`starter.py`), one module per group of commands:

    orders.py      place, import, import-history, status, list
    support.py     cancel, release, note, feedback, return, receive-return, approve-return, decline-return, refund, resolve, blocklist
    fulfilment.py  warehouse queue|pick|pack|handover, carrier-event, deliver
    stock.py       catalog load, stock (levels, check, adjust, receive, write-off), purchase-orders, forecast
    analytics.py   report, export journal
    admin.py       migrate, apikey, codec, reconcile, versions, set-current-version, doctor
    webhooks.py    webhooks (add, list, remove, enable, deliveries, redeliver)
    render.py      what the commands print: tables, summaries, JSON
    common.py      exit statuses, CommandError, the actor, reading input, opening the database

Each group adds its own parsers (`add_<command>`) and names the handler that runs the command
(`set_defaults(handler=...)`). Building the parser and parsing import none of Temporal, SQLAlchemy,
pydantic or services/: a handler imports what it calls when it runs, so `--help` and a usage error
answer at once, and a command that only reads the database never loads the Temporal SDK
(tests/test_cli_imports.py holds this; `make bench-cli` times it).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, TextIO

from cli import admin, analytics, fulfilment, orders, stock, support, webhooks
from cli.common import EXIT_INVALID, EXIT_UNAVAILABLE, CommandError
from connection import TemporalUnavailable

if TYPE_CHECKING:
    from cli.common import Subcommands
    from config import Settings

__all__ = ["build_parser", "dispatch", "main"]

# In the order `starter.py --help` lists them, which is older than the groups: kept, so that the help
# people and scripts know does not move.
_ADD_COMMANDS: list[Callable[[Subcommands], None]] = [
    admin.add_migrate,
    stock.add_catalog,
    stock.add_stock,
    stock.add_purchase_orders,
    orders.add_place,
    orders.add_import,
    orders.add_import_history,
    orders.add_status,
    orders.add_list,
    fulfilment.add_deliver,
    fulfilment.add_warehouse,
    fulfilment.add_carrier_event,
    support.add_resolve,
    support.add_feedback,
    support.add_cancel,
    support.add_edit,
    support.add_release,
    support.add_note,
    support.add_messages,
    support.add_return,
    support.add_receive_return,
    support.add_decide_return,
    support.add_refund,
    admin.add_apikey,
    support.add_blocklist,
    admin.add_codec,
    admin.add_reconcile,
    analytics.add_report,
    analytics.add_export,
    stock.add_forecast,
    admin.add_versions,
    admin.add_set_current_version,
    admin.add_doctor,
    webhooks.add_webhooks,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="starter.py", description="Order management on Temporal")
    sub = parser.add_subparsers(dest="command", required=True)
    for add_command in _ADD_COMMANDS:
        add_command(sub)
    return parser


async def dispatch(argv: list[str], settings: Settings, out: TextIO = sys.stdout) -> int:
    """Run one command line with these settings; returns its exit status."""
    return await run(build_parser().parse_args(argv), settings, out)


async def run(args: argparse.Namespace, settings: Settings, out: TextIO = sys.stdout) -> int:
    """Run the parsed command: 0 done, 1 refused, unknown or Temporal unavailable, 2 invalid input
    (`error: ...` on stderr)."""
    try:
        await args.handler(args, settings, out)
    except CommandError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.status
    except TemporalUnavailable as exc:  # any command that connects: one line naming the setting at fault
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except ValueError as exc:
        if not _is_order_input_error(exc):
            raise
        print(f"error: {exc}", file=sys.stderr)  # invalid input any command may meet (a filter, an id)
        return EXIT_INVALID
    return 0


def _is_order_input_error(exc: ValueError) -> bool:
    # Only code that loaded services.orders can raise its OrderInputError; importing the module here
    # to ask would load Temporal and pydantic into every command that failed for another reason.
    loaded = sys.modules.get("services.orders")
    return loaded is not None and isinstance(exc, loaded.OrderInputError)


def main() -> None:
    args = build_parser().parse_args()  # --help and usage errors end here, before any heavy import
    import asyncio
    import os

    from config import get_settings
    from connection import exit_without_finalizing
    from devtools.dev_stack import adopt
    from observability.tracing import SERVICE_CLI, TracingMisconfigured, span, start_tracing

    if note := adopt(os.environ):  # beside a running `make run`: its database, server and delays
        print(note, file=sys.stderr)
    try:
        start_tracing(SERVICE_CLI)
    except TracingMisconfigured as exc:
        print(f"error: {exc}", file=sys.stderr)
        exit_without_finalizing(EXIT_UNAVAILABLE)
    with span(f"cli {args.command}"):  # when tracing: the root of what the command does
        status = asyncio.run(run(args, get_settings()))
    exit_without_finalizing(status)
