"""The command line for order sources, support staff, carriers and operators.

    python starter.py migrate | catalog load FILE [--if-empty] | stock [--sku SKU] [--json]
    python starter.py place FILE|- [--wait] | status ID [--json] | list [--status S] [--customer C] [--limit N] [--page T | --all] [--json]
    python starter.py import FILE|- [--format csv|jsonl] [--json]
    python starter.py import-history FILE|DIR --format olist|online-retail [--warehouse CODE] [--json]
    python starter.py deliver ID [--shipment ID] | feedback ID --score 1-5 [--comment TEXT]
    python starter.py warehouse queue WH [--json] | warehouse pick SHIPMENT [--line SKU=QTY ...] [--id REPORT_ID]
    python starter.py warehouse pack SHIPMENT --parcel WEIGHT_G [--parcel WEIGHT_G ...] [--id REPORT_ID]
    python starter.py warehouse handover SHIPMENT [--id REPORT_ID]
    python starter.py carrier-event TRACKING TYPE [--at TIME] [--id ID] [--place TEXT] [--attempt N]
    python starter.py resolve ORDER_ID SHIPMENT_ID --reship|--refund
    python starter.py cancel ID --reason TEXT | release ID | note ID TEXT
    python starter.py return ID --sku SKU --qty N --reason TEXT [--exchange-sku SKU]
    python starter.py receive-return ID RMA [--condition good|damaged] | blocklist add|remove|list [EMAIL]
    python starter.py stock check | stock adjust SKU WH DELTA --reason TEXT | stock receive SKU WH QTY [--po ID]
    python starter.py stock write-off SKU WH QTY --reason TEXT

    python starter.py purchase-orders [--json]
    python starter.py reconcile [--json] [--dry-run]
    python starter.py forecast [--sku SKU] [--as-of YYYY-MM-DD] [--apply] [--json]
    python starter.py apikey create --role source|support|carrier|warehouse|admin --name N [--json]
    python starter.py apikey revoke NAME | apikey list
    python starter.py codec keys | codec rotate | codec generate | codec audit [--limit N] [--json]
    python starter.py report [--since DATE] [--until DATE] [--html FILE] [--json]
    python starter.py export journal --since DATE --until DATE FILE.csv
    python starter.py versions [--deployment NAME] [--json] | set-current-version BUILD_ID [--deployment NAME]


Exit status: 0 done, 1 refused or unknown order (and `place --wait`: the order was rejected), 2 invalid input.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TextIO, TypeVar

from pydantic import TypeAdapter, ValidationError
from sqlalchemy import func, select
from tqdm import tqdm

from cli_format import as_json, table
from config import Settings, check_build_id, check_deployment_name, get_settings
from connection import connect, exit_without_finalizing
from db import SessionFactory, make_engine, make_session_factory, migrate
from domain import api_keys, stock
from domain.api_keys import Role
from domain.blocklist import update_blocklist
from domain.catalog import CatalogError, load_catalog
from domain.codec_audit import recent_codec_uses
from domain.history_import import HistoryFormat, HistoryImportError, HistoryImportSummary, import_history
from domain.journal import JournalMismatch, journal, write_csv
from domain.order_import import ImportFileError, ImportFormat, decode_import, format_for
from domain.reorder_policy import ForecastError
from domain.reports import (
    STAGE_LABELS,
    Period,
    Rate,
    Report,
    ReportError,
    build_report,
    parse_period,
)
from domain.shipments import QueuedShipment
from encryption.keys import CodecKeyError, format_keys, load_key_ring, new_key_ring
from encryption.keys import rotate as rotate_keys
from models import tables as t
from models.catalog import CatalogFile
from models.forecast import ApplyResult, ForecastView
from models.fulfilment import (
    CarrierEvent,
    PickedLine,
    ReportOutcome,
    ResolveRequest,
    WarehouseReport,
    WarehouseStep,
)
from models.imports import ImportStatus
from models.orders import (
    Channel,
    FeedbackIn,
    OrderStatus,
    OrderView,
    ReturnCondition,
    ReturnIn,
    ReturnReceipt,
)
from models.shipping import CarrierEventType, Resolution
from models.stock import StockChange
from models.versions import DeploymentVersions, VersionStatus
from services import forecast as forecasting
from services import fulfilment, imports, orders, reconcile, versions
from services import stock as stock_changes

EXIT_REFUSED, EXIT_INVALID = 1, 2
CLI_ACTOR = f"cli:{getpass.getuser()}"  # who did it, in the order's event log
REPORT_ID_HELP = "the sender's own id for this report (e.g. the WMS's)"
T = TypeVar("T")


class CommandError(Exception):
    def __init__(self, message: str, status: int = EXIT_REFUSED) -> None:
        super().__init__(message)
        self.status = status


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="starter.py", description="Order management on Temporal")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="apply the database migrations")
    catalog = sub.add_parser("catalog", help="catalog administration").add_subparsers(
        dest="action", required=True
    )
    load = catalog.add_parser("load", help="load or update warehouses, products and stock")
    load.add_argument("file", type=Path)
    load.add_argument(
        "--if-empty", action="store_true", help="only into a database without products (else skip it)"
    )
    stock = sub.add_parser("stock", help="stock levels per sku and warehouse; check, adjust, receive")
    stock.add_argument("--sku")
    stock.add_argument("--json", action="store_true")
    stock_actions = stock.add_subparsers(dest="action")
    stock_actions.add_parser("check", help="verify the stock ledger; exit 1 if anything disagrees")
    adjust = stock_actions.add_parser("adjust", help="a cycle-count correction of on-hand stock")
    adjust.add_argument("sku")
    adjust.add_argument("warehouse")
    adjust.add_argument("delta", type=int)
    adjust.add_argument("--reason", required=True)
    receive = stock_actions.add_parser("receive", help="book received goods into stock")
    receive.add_argument("sku")
    receive.add_argument("warehouse")
    receive.add_argument("quantity", type=int)
    receive.add_argument("--po", help="the purchase order these goods fill")
    write_off = stock_actions.add_parser("write-off", help="damaged, lost or expired units leave the shelf")
    write_off.add_argument("sku")
    write_off.add_argument("warehouse")
    write_off.add_argument("quantity", type=int)
    write_off.add_argument("--reason", required=True)
    purchase_orders = sub.add_parser("purchase-orders", help="replenishment purchase orders")
    purchase_orders.add_argument("--json", action="store_true")

    place = sub.add_parser("place", help="place one order (JSON file, or - for stdin)")
    place.add_argument("file")
    place.add_argument(
        "--wait", action="store_true", help="wait until the order has settled and print the outcome"
    )
    batch = sub.add_parser("import", help="import a batch of orders (CSV or JSON Lines file, or - for stdin)")
    batch.add_argument("file")
    batch.add_argument(
        "--format", choices=[f.value for f in ImportFormat], help="default: from the extension"
    )
    batch.add_argument("--json", action="store_true")
    history = sub.add_parser(
        "import-history", help="load past sales as closed, historical orders (no workflows, no money moved)"
    )
    history.add_argument("file", help="online-retail: the CSV (.gz read directly); olist: its folder")
    history.add_argument("--format", required=True, choices=[f.value for f in HistoryFormat])
    history.add_argument(
        "--warehouse", help="the warehouse the units left from (default: the preferred one; HIST if none)"
    )
    history.add_argument("--json", action="store_true")
    status = sub.add_parser("status", help="an order's live view")
    status.add_argument("order_id")
    status.add_argument("--json", action="store_true")
    listing = sub.add_parser("list", help="orders by status or customer (Temporal visibility)")
    listing.add_argument("--status", choices=[s.value for s in OrderStatus])
    listing.add_argument("--customer")
    listing.add_argument("--channel", choices=[c.value for c in Channel])
    listing.add_argument("--overdue", action="store_true", help="only orders whose delivery is overdue")
    listing.add_argument("--needs-attention", action="store_true", help="only orders support must act on")
    listing.add_argument("--json", action="store_true")
    listing.add_argument(
        "--limit", type=_page_size, default=50, help="orders per page, newest first (1-500, default 50)"
    )
    paging = listing.add_mutually_exclusive_group()
    paging.add_argument("--page", metavar="TOKEN", help="the page after the one that printed this token")
    paging.add_argument("--all", action="store_true", help="every page (slow with many orders)")
    deliver = sub.add_parser("deliver", help="the carrier's delivery confirmation")
    deliver.add_argument("order_id")
    deliver.add_argument("--shipment")
    warehouse = sub.add_parser(
        "warehouse", help="a warehouse's side: its queue of released shipments, and what it reports"
    ).add_subparsers(dest="action", required=True)
    queue = warehouse.add_parser("queue", help="shipments released to a warehouse and waiting, oldest first")
    queue.add_argument("warehouse")
    queue.add_argument("--json", action="store_true")
    pick = warehouse.add_parser(
        "pick", help="the shipment's lines were picked (a short pick names its lines)"
    )
    pick.add_argument("shipment_id")
    pick.add_argument(
        "--line",
        action="append",
        default=[],
        metavar="SKU=QTY",
        help="units found of a line (fewer than ordered: a short pick); lines left out were picked in full",
    )
    pick.add_argument("--id", dest="report_id", metavar="REPORT_ID", help=REPORT_ID_HELP)
    pack = warehouse.add_parser("pack", help="the shipment was packed: one weight per parcel")
    pack.add_argument("shipment_id")
    pack.add_argument(
        "--parcel",
        action="append",
        required=True,
        metavar="WEIGHT_G",
        help="a parcel's weight in grams (once per parcel)",
    )
    pack.add_argument(
        "--line",
        action="append",
        default=[],
        metavar="SKU=QTY",
        help="straight after the release (no pick reported): units found of a line, as for `pick`",
    )
    pack.add_argument("--id", dest="report_id", metavar="REPORT_ID", help=REPORT_ID_HELP)
    handover = warehouse.add_parser("handover", help="the parcels were handed over to the carrier")
    handover.add_argument("shipment_id")
    handover.add_argument("--id", dest="report_id", metavar="REPORT_ID", help=REPORT_ID_HELP)
    event = sub.add_parser("carrier-event", help="a carrier's tracking event, by tracking number")
    event.add_argument("tracking_number")
    event.add_argument(
        "type",
        choices=[e.value for e in CarrierEventType],
        metavar="TYPE",
        help=f"one of {', '.join(e.value for e in CarrierEventType)}",
    )
    event.add_argument(
        "--at",
        metavar="TIME",
        help="when it happened, ISO 8601 (e.g. 2025-03-01T14:05:00Z; no offset: UTC); default now",
    )
    event.add_argument(
        "--id",
        dest="event_id",
        metavar="ID",
        help="the event's id; default a fresh one. Pass the carrier's own id to make a resend harmless "
        "(the same tracking number and id are recorded once)",
    )
    event.add_argument("--place", metavar="TEXT", help="where it happened")
    event.add_argument(
        "--attempt", type=int, metavar="N", help="delivery_failed: which delivery attempt (1, 2, ...)"
    )
    resolve = sub.add_parser(
        "resolve", help="support's choice for a parcel that was lost or returned to sender"
    )
    resolve.add_argument("order_id")
    resolve.add_argument("shipment_id")
    choice = resolve.add_mutually_exclusive_group(required=True)
    choice.add_argument(
        "--reship",
        dest="resolution",
        action="store_const",
        const=Resolution.reship.value,
        help="send the parcel's lines again from stock (a claim is lodged with the carrier)",
    )
    choice.add_argument(
        "--refund",
        dest="resolution",
        action="store_const",
        const=Resolution.refund.value,
        help="refund the parcel's lines",
    )
    feedback = sub.add_parser("feedback", help="the customer's feedback on a delivered order")
    feedback.add_argument("order_id")
    feedback.add_argument("--score", type=int, required=True)
    feedback.add_argument("--comment")
    cancel = sub.add_parser("cancel", help="cancel an order that has not shipped (with compensation)")
    cancel.add_argument("order_id")
    cancel.add_argument("--reason", required=True)
    sub.add_parser("release", help="release an order held for review").add_argument("order_id")
    note = sub.add_parser("note", help="add a support note to the order's event log")
    note.add_argument("order_id")
    note.add_argument("text")
    ret = sub.add_parser("return", help="authorize a return (RMA) of delivered units")
    ret.add_argument("order_id")
    ret.add_argument("--sku", required=True)
    ret.add_argument("--qty", type=int, required=True)
    ret.add_argument("--reason", required=True)
    ret.add_argument("--exchange-sku")
    receive = sub.add_parser("receive-return", help="the warehouse received a returned parcel")
    receive.add_argument("order_id")
    receive.add_argument("rma")
    receive.add_argument("--condition", choices=[c.value for c in ReturnCondition], default="good")
    apikey = sub.add_parser("apikey", help="API keys of the HTTP API").add_subparsers(
        dest="action", required=True
    )
    create = apikey.add_parser("create", help="create a key (shown once) for a role")
    create.add_argument("--role", required=True, choices=[r.value for r in Role])
    create.add_argument("--name", required=True)
    create.add_argument("--json", action="store_true")
    apikey.add_parser("revoke", help="revoke the key in use under this name").add_argument("name")
    apikey.add_parser("list", help="keys by name and role (never the keys themselves)")
    blocklist = sub.add_parser("blocklist", help="customer e-mails whose orders are held for review")
    blocklist.add_argument("action", choices=["add", "remove", "list"])
    blocklist.add_argument("email", nargs="?")
    blocklist.add_argument("--reason")
    codec = sub.add_parser("codec", help="the payload encryption keys").add_subparsers(
        dest="action", required=True
    )
    codec.add_parser("keys", help="the key ids in use (never the keys): which one encrypts")
    codec.add_parser("generate", help="print a new OMS_CODEC_KEYS setting for a fresh deployment")
    audit = codec.add_parser(
        "audit", help="the codec server's latest decodes and encodes: who, which workflows"
    )
    audit.add_argument("--limit", type=int, default=50)
    audit.add_argument("--json", action="store_true")
    codec.add_parser(
        "rotate",
        help="put a new key in front: prints the new OMS_CODEC_KEYS setting, or rewrites the local key file",
    )
    settle = sub.add_parser(
        "reconcile", help="settle orders whose run was terminated, failed or cancelled (after terminate)"
    )
    settle.add_argument("--json", action="store_true")
    settle.add_argument("--dry-run", action="store_true", help="report what would be settled, change nothing")
    _add_report_commands(sub)
    _add_forecast_command(sub)
    _add_versioning_commands(sub)
    return parser


def _add_report_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`report` and `export journal` (domain/reports.py, domain/journal.py)."""
    report = sub.add_parser("report", help="the business report: funnel, cycle times, money, returns, stock")
    report.add_argument("--since", help="first UTC day of the orders placed (YYYY-MM-DD)")
    report.add_argument("--until", help="last UTC day, inclusive (YYYY-MM-DD)")
    report.add_argument("--html", type=Path, help="also write the report with its charts to this HTML file")
    report.add_argument("--json", action="store_true")
    export = sub.add_parser("export", help="exports for other systems").add_subparsers(
        dest="action", required=True
    )
    journal = export.add_parser("journal", help="the payment ledger's movements as CSV, for the ERP")
    journal.add_argument("--since", required=True, help="first UTC day (YYYY-MM-DD)")
    journal.add_argument("--until", required=True, help="last UTC day, inclusive (YYYY-MM-DD)")
    journal.add_argument("file", type=Path, help="the CSV file to write")


def _add_forecast_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`forecast` (domain/forecast.py, services/forecast.py)."""
    forecast = sub.add_parser(
        "forecast", help="demand forecast and reorder point recommendations per sku and warehouse"
    )
    forecast.add_argument("--sku", help="only this SKU (with it: the forecast of every day is shown)")
    forecast.add_argument("--as-of", help="the last day of demand to read (YYYY-MM-DD; default: yesterday)")
    forecast.add_argument(
        "--apply", action="store_true", help="write the recommendations to the stock rows (audited)"
    )
    forecast.add_argument("--json", action="store_true")


def _add_versioning_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`versions` and `set-current-version` (services/versions.py, docs/versioning.md)."""
    deployment_help = "the worker deployment (default: OMS_WORKER_DEPLOYMENT)"
    listed = sub.add_parser(
        "versions", help="the worker deployment's builds, which is current, and the open orders on each"
    )
    listed.add_argument("--deployment", help=deployment_help)
    listed.add_argument("--json", action="store_true")
    current = sub.add_parser(
        "set-current-version", help="make a build current: new orders start on it, running ones stay put"
    )
    current.add_argument("build_id")
    current.add_argument("--deployment", help=deployment_help)


async def dispatch(argv: list[str], settings: Settings, out: TextIO = sys.stdout) -> int:
    args = build_parser().parse_args(argv)
    command: Callable[[argparse.Namespace, Settings, TextIO], Awaitable[None]] = COMMANDS[args.command]
    try:
        await command(args, settings, out)
    except CommandError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.status
    except orders.OrderInputError as exc:  # invalid input any command may meet (a filter, an id)
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    return 0


# ---- database commands ----


async def cmd_migrate(_: argparse.Namespace, settings: Settings, out: TextIO) -> None:
    migrate(settings.database_url)
    print(f"database is at the latest migration ({_redact(settings.database_url)})", file=out)


async def cmd_catalog(args: argparse.Namespace, settings: Settings, out: TextIO) -> None:
    try:
        catalog = CatalogFile.model_validate_json(args.file.read_text())
    except OSError as exc:
        raise CommandError(f"cannot read {args.file}: {exc.strerror}", EXIT_INVALID) from None
    except ValidationError as exc:
        raise CommandError(f"invalid catalog file: {_first_problem(exc)}", EXIT_INVALID) from None
    with _database(settings) as sessions:
        if args.if_empty and (products := _product_count(sessions)):
            print(
                f"skipped {args.file}: the database already has {products} products "
                "(--if-empty loads a catalog only into an empty one)",
                file=out,
            )
            return
        try:
            summary = load_catalog(sessions, catalog)
        except CatalogError as exc:
            raise CommandError(str(exc), EXIT_INVALID) from None
    print(
        f"loaded {summary.warehouses} warehouses, {summary.products} products, {summary.stock_rows} stock rows "
        f"({summary.stock_adjusted} levels changed)",
        file=out,
    )


def _product_count(sessions: SessionFactory) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(t.Product)) or 0


async def cmd_stock(args: argparse.Namespace, settings: Settings, out: TextIO) -> None:
    if args.action in STOCK_ACTIONS:
        await STOCK_ACTIONS[args.action](args, settings, out)
        return
    with _database(settings) as sessions:
        levels = stock.stock_levels(sessions, args.sku)
    if args.json:
        print(as_json([level.model_dump() for level in levels]), file=out)
        return
    print(
        table(
            ["SKU", "WAREHOUSE", "ON HAND", "RESERVED", "AVAILABLE", "REORDER AT", "REORDER QTY"],
            [
                (s.sku, s.warehouse, s.on_hand, s.reserved, s.available, s.reorder_point, s.reorder_qty)
                for s in levels
            ],
        ),
        file=out,
    )


async def cmd_stock_check(_: argparse.Namespace, settings: Settings, out: TextIO) -> None:
    with _database(settings) as sessions:
        problems = stock.check_stock(sessions)
    if problems:
        print("\n".join(problems), file=out)
        raise CommandError(f"stock ledger check found {len(problems)} problem(s)")
    print("stock ledger check passed: levels equal the movements, no reservation left behind", file=out)


async def cmd_stock_adjust(args: argparse.Namespace, settings: Settings, out: TextIO) -> None:
    with _database(settings) as sessions:
        change = await _stock_change(
            stock_changes.adjust(
                await connect(settings), sessions, settings, args.sku, args.warehouse, args.delta, args.reason
            )
        )
    _print_change(change, out)


async def cmd_stock_receive(args: argparse.Namespace, settings: Settings, out: TextIO) -> None:
    with _database(settings) as sessions:
        client = await connect(settings)
        if args.po:
            po = await _stock_change(
                stock_changes.receive_purchase_order(
                    client, sessions, args.po, args.sku, args.warehouse, args.quantity
                )
            )
            print(f"{po.id} received: {po.received_quantity} x {po.sku} into {po.warehouse}", file=out)
            return
        change = await _stock_change(
            stock_changes.receive(client, sessions, args.sku, args.warehouse, args.quantity)
        )
    _print_change(change, out)


async def cmd_purchase_orders(args: argparse.Namespace, settings: Settings, out: TextIO) -> None:
    with _database(settings) as sessions:
        orders_ = stock.purchase_orders(sessions)
    if args.json:
        print(as_json(orders_), file=out)
        return
    print(
        table(
            ["PO", "SKU", "WAREHOUSE", "QTY", "STATUS", "CREATED", "EXPECTED", "RECEIVED"],
            [
                (
                    po.id,
                    po.sku,
                    po.warehouse,
                    po.quantity,
                    po.status,
                    f"{po.created_at:%Y-%m-%d %H:%M}",
                    f"{po.expected_at:%Y-%m-%d %H:%M}",
                    f"{po.received_at:%Y-%m-%d %H:%M}" if po.received_at else "",
                )
                for po in orders_
            ],
        ),
        file=out,
    )


async def _stock_change(change: Awaitable[T]) -> T:
    """A stock change; an invalid one exits 2, a refused one or an unknown purchase order 1."""
    try:
        return await change
    except stock.StockError as exc:
        raise CommandError(str(exc), EXIT_INVALID) from None
    except (orders.Refused, LookupError, TimeoutError) as exc:
        raise CommandError(str(exc)) from None


def _print_change(change: StockChange, out: TextIO) -> None:
    level = change.level
    print(
        f"{level.sku}@{level.warehouse}: on hand {level.on_hand}, reserved {level.reserved}, "
        f"available {level.available}",
        file=out,
    )
    if change.replenishing:
        print(f"replenishment: {', '.join(change.replenishing)}", file=out)
    if change.backorders_served:
        print(f"backorders now reserved: {', '.join(change.backorders_served)}", file=out)


async def cmd_stock_write_off(args: argparse.Namespace, settings: Settings, out: TextIO) -> None:
    with _database(settings) as sessions:
        change = await _stock_change(
            stock_changes.write_off(
                await connect(settings),
                sessions,
                settings,
                args.sku,
                args.warehouse,
                args.quantity,
                args.reason,
            )
        )
    _print_change(change, out)


STOCK_ACTIONS = {
    "check": cmd_stock_check,
    "adjust": cmd_stock_adjust,
    "receive": cmd_stock_receive,
    "write-off": cmd_stock_write_off,
}


# ---- order commands ----


async def cmd_place(args: argparse.Namespace, settings: Settings, out: TextIO) -> None:
    data = _read_stdin_bytes() if args.file == "-" else _read_bytes(args.file)
    try:
        order = orders.parse_order(data)  # bytes: a file that is not UTF-8 is invalid input, not a crash
    except orders.OrderInputError as exc:
        raise CommandError(str(exc), EXIT_INVALID) from None
    client = await connect(settings)
    wait = orders.PLACE_WAIT_TIMEOUT if args.wait else None
    placement = await orders.place_order(client, settings, order, by=CLI_ACTOR, wait=wait)
    if not placement.created:
        print(f"order {placement.order_id} was already placed; nothing new was started", file=sys.stderr)
    if not args.wait:
        print(placement.order_id, file=out)
        return
    view = placement.settled or await orders.wait_until_settled(client, placement.order_id)
    status, reason = orders.settled_outcome(view)
    print(f"{placement.order_id} {status.value}" + (f": {reason}" if reason else ""), file=out)
    if status == OrderStatus.rejected:  # exit 1: scripts can tell a rejected order from a placed one
        raise CommandError(f"order {placement.order_id} was rejected: {reason or 'see its events'}")


async def cmd_import(args: argparse.Namespace, settings: Settings, out: TextIO) -> None:
    """Import a batch file: refused orders exit 1, an unreadable or invalid file exits 2."""
    fmt = ImportFormat(args.format) if args.format else format_for(args.file)
    if fmt is None:
        raise CommandError(
            "reading stdin needs --format csv|jsonl"
            if args.file == "-"
            else f"cannot tell the format of {args.file}: name it .csv, .jsonl or .ndjson, or pass --format",
            EXIT_INVALID,
        )
    data = _read_stdin_bytes() if args.file == "-" else _read_bytes(args.file)
    try:
        text = decode_import(data)
    except ImportFileError as exc:
        raise CommandError(f"{args.file}: {exc}", EXIT_INVALID) from None
    client = await connect(settings)  # before anything is stored: no import is left half-started
    with _database(settings) as sessions:
        try:
            created = imports.create_import(sessions, text, fmt, by=CLI_ACTOR)
        except ImportFileError as exc:
            raise CommandError(f"{args.file}: {exc}", EXIT_INVALID) from None
        interrupted: imports.ImportInterrupted | None = None
        with tqdm(
            total=created.pending, desc=created.id, unit="order", file=sys.stderr, disable=None, leave=False
        ) as bar:

            def progress(now: ImportStatus) -> None:
                bar.set_postfix(
                    accepted=now.accepted, duplicates=now.duplicates, refused=now.refused, refresh=False
                )
                bar.update(1)

            try:
                status = await imports.run_import(
                    client, settings, sessions, created.id, by=CLI_ACTOR, progress=progress
                )
            except imports.ImportInterrupted as exc:
                interrupted, status = exc, exc.status
    print(as_json(status) if args.json else render_import(status), file=out)
    if interrupted is not None:
        raise CommandError(str(interrupted))
    if status.refused:
        raise CommandError(
            f"{status.refused} of {status.total} orders were refused; fix their rows and import the file "
            "again (orders already placed are not placed twice)"
        )


async def cmd_import_history(args: argparse.Namespace, settings: Settings, out: TextIO) -> None:
    """Load past sales as closed, historical orders (no workflows, no money moved); a bad file exits 2
    with its line number and imports nothing."""
    fmt = HistoryFormat(args.format)
    with (
        _database(settings) as sessions,
        tqdm(
            desc=f"import-history {fmt.value}", unit="order", file=sys.stderr, disable=None, leave=False
        ) as bar,
    ):
        try:
            summary = await asyncio.to_thread(
                import_history, sessions, Path(args.file), fmt, args.warehouse, bar.update
            )
        except HistoryImportError as exc:
            raise CommandError(str(exc), EXIT_INVALID) from None
    print(as_json(summary) if args.json else render_history_import(summary), file=out)


def render_history_import(summary: HistoryImportSummary) -> str:
    rows: list[tuple[str, object]] = [
        ("orders imported", summary.orders_imported),
        ("  of which cancelled", summary.cancelled_orders),
        ("orders already present", summary.orders_already_present),
        ("order lines", summary.lines),
        ("units shipped", summary.units),
        ("products created", summary.products_created),
        ("customers created", summary.customers_created),
        ("warehouse", summary.warehouse),
    ]
    rows += [(f"skipped: {reason}", n) for reason, n in summary.skipped.items()]
    rows.append(("seconds", f"{summary.elapsed_seconds:.1f}"))
    return f"import-history ({summary.format.value})\n" + table(["", "count"], rows)


def render_import(status: ImportStatus) -> str:
    counts = [f"accepted {status.accepted}", f"duplicates {status.duplicates}", f"refused {status.refused}"]
    if status.pending:
        counts.append(f"not placed yet {status.pending}")
    parts = [f"import {status.id} ({status.format.value}): {status.total} order(s): {', '.join(counts)}"]
    if status.duplicate_orders:
        parts.append(f"already placed before, nothing new started: {', '.join(status.duplicate_orders)}")
    if status.problems:
        rows = [
            (problem.rows if i == 0 else "", (problem.order_id or "-") if i == 0 else "", reason)
            for problem in status.problems
            for i, reason in enumerate(problem.reason.split("; "))
        ]
        parts += ["", table(["LINES", "ORDER", "REASON"], rows)]
    return "\n".join(parts)


async def cmd_status(args: argparse.Namespace, settings: Settings, out: TextIO) -> None:
    view = await _view(settings, args.order_id)
    print(as_json(view) if args.json else render_view(view), file=out)


async def cmd_list(args: argparse.Namespace, settings: Settings, out: TextIO) -> None:
    wanted = orders.OrderFilter(
        status=OrderStatus(args.status) if args.status else None,
        customer=args.customer,
        channel=Channel(args.channel) if args.channel else None,
        overdue=True if args.overdue else None,
        needs_attention=True if args.needs_attention else None,
    )
    client = await connect(settings)
    if args.all:
        found, more = await orders.list_orders(client, wanted), None
    else:
        try:
            page = await orders.list_orders_page(client, wanted, args.limit, args.page)
        except orders.BadPageToken as exc:
            raise CommandError(str(exc), EXIT_INVALID) from None
        found, more = page.orders, page.next_page_token
    if more:  # on stderr: stdout stays the list (and valid JSON)
        print(f"more orders: list again with --page {more}", file=sys.stderr)
    if args.json:
        print(as_json(found), file=out)
        return
    print(
        table(
            ["ORDER", "STATUS", "CUSTOMER", "CHANNEL", "TOTAL", "PLACED"],
            [
                (
                    o.order_id,
                    o.status,
                    o.customer_id,
                    o.channel,
                    f"{o.total:.2f}" if o.total is not None else "",
                    f"{o.started_at:%Y-%m-%d %H:%M:%S}" if o.started_at else "",
                )
                for o in found
            ],
        ),
        file=out,
    )


async def cmd_deliver(args: argparse.Namespace, settings: Settings, out: TextIO) -> None:
    client = await connect(settings)
    try:
        confirmed = await orders.confirm_delivery(client, args.order_id, args.shipment, by=CLI_ACTOR)
    except (orders.UnknownOrder, orders.Refused) as exc:
        raise CommandError(str(exc)) from None
    print(f"delivery confirmed for {', '.join(confirmed)}", file=out)


# ---- warehouses and carriers (models/fulfilment.py) ----


async def cmd_warehouse(args: argparse.Namespace, settings: Settings, out: TextIO) -> None:
    if args.action == "queue":
        await cmd_warehouse_queue(args, settings, out)
        return
    report = _warehouse_report(args)
    try:
        outcome = await fulfilment.submit_warehouse_report(await connect(settings), report)
    except fulfilment.ReportTooEarly as exc:
        later = "once the label is printed" if report.step == WarehouseStep.handed_over else "later"
        raise CommandError(f"too early: {exc}; try again {later}") from None
    except (orders.UnknownOrder, orders.Refused, fulfilment.UnknownShipment) as exc:
        raise CommandError(str(exc)) from None
    print(_outcome(outcome), file=out)


async def cmd_warehouse_queue(args: argparse.Namespace, settings: Settings, out: TextIO) -> None:
    with _database(settings) as sessions:
        waiting = fulfilment.warehouse_queue(sessions, args.warehouse)
    if args.json:
        print(as_json(TypeAdapter(list[QueuedShipment]).dump_python(waiting, mode="json")), file=out)
        return
    print(
        table(
            ["SHIPMENT", "ORDER", "STATUS", "RELEASED", "LINES", "LABEL"],
            [
                (
                    q.shipment_id,
                    q.order_id,
                    q.status,
                    f"{q.released_at:%Y-%m-%d %H:%M:%S}" if q.released_at else "",
                    ", ".join(f"{x.quantity} x {x.sku}" for x in q.lines),
                    q.label_ref,
                )
                for q in waiting
            ],
        ),
        file=out,
    )


def _warehouse_report(args: argparse.Namespace) -> WarehouseReport:
    """The report a `warehouse pick|pack|handover` command line describes; bad input exits 2."""
    step = WAREHOUSE_STEPS[args.action]
    fields: dict[str, object] = {}
    if step == WarehouseStep.picked:
        fields["lines"] = [_picked_line(text) for text in args.line]
    elif step == WarehouseStep.packed:
        fields["parcels_g"] = [_parcel_weight(text) for text in args.parcel]
        fields["lines"] = [_picked_line(text) for text in args.line]
    try:
        return WarehouseReport(
            shipment_id=args.shipment_id, step=step, report_id=args.report_id, by=CLI_ACTOR, **fields
        )
    except ValidationError as exc:
        raise CommandError(f"invalid report: {_first_problem(exc)}", EXIT_INVALID) from None


WAREHOUSE_STEPS = {
    "pick": WarehouseStep.picked,
    "pack": WarehouseStep.packed,
    "handover": WarehouseStep.handed_over,
}


def _picked_line(text: str) -> PickedLine:
    """`SKU=QTY`: QTY units of SKU were found (0: none)."""
    sku, sep, quantity = text.partition("=")
    if not sep or not sku.strip() or not quantity.strip().isdigit():
        raise CommandError(
            f"--line {text!r}: write SKU=QTY, the units found as a whole number (e.g. --line MUG-1=2)",
            EXIT_INVALID,
        )
    try:
        return PickedLine(sku=sku, quantity=int(quantity))
    except ValidationError as exc:
        raise CommandError(f"--line {text!r}: {_first_problem(exc)}", EXIT_INVALID) from None


def _parcel_weight(text: str) -> int:
    if not text.strip().isdigit() or int(text) < 1:
        raise CommandError(
            f"--parcel {text!r}: a parcel's weight in grams, a whole number above 0 (e.g. --parcel 850)",
            EXIT_INVALID,
        )
    return int(text)


async def cmd_carrier_event(args: argparse.Namespace, settings: Settings, out: TextIO) -> None:
    try:
        event = CarrierEvent(
            tracking_number=args.tracking_number,
            type=CarrierEventType(args.type),
            event_id=args.event_id if args.event_id is not None else f"cli-{uuid.uuid4().hex}",
            at=_event_time(args.at),
            place=args.place,
            attempt=args.attempt,
            by=CLI_ACTOR,
        )
    except ValidationError as exc:
        raise CommandError(f"invalid carrier event: {_first_problem(exc)}", EXIT_INVALID) from None
    with _database(settings) as sessions:
        try:
            outcome = await fulfilment.submit_carrier_event(await connect(settings), sessions, event)
        except fulfilment.ReportTooEarly as exc:
            raise CommandError(f"too early: {exc}; try again later") from None
        except orders.Refused as exc:
            if _is_duplicate(exc):  # the same event again: harmless, nothing changed
                print(
                    f"{event.tracking_number} {event.event_id}: already recorded, nothing changed", file=out
                )
                return
            raise CommandError(str(exc)) from None
        except (orders.UnknownOrder, fulfilment.UnknownTracking, fulfilment.UnknownShipment) as exc:
            raise CommandError(str(exc)) from None
    print(_outcome(outcome), file=out)


def _outcome(outcome: ReportOutcome) -> str:
    """What a report did, in the order's words (which name the shipment; else it is named here)."""
    return (
        outcome.detail
        if outcome.shipment_id in outcome.detail
        else f"{outcome.shipment_id}: {outcome.detail}"
    )


def _is_duplicate(exc: orders.Refused) -> bool:
    """The order refuses an event it has recorded before with a reason that says `duplicate`."""
    return "duplicate" in str(exc).lower()


def _event_time(text: str | None) -> datetime:
    if text is None:
        return datetime.now(UTC)
    try:
        at = datetime.fromisoformat(text.strip())
    except ValueError:
        raise CommandError(
            f"--at {text!r}: an ISO 8601 time, e.g. 2025-03-01T14:05:00Z or 2025-03-01T15:05:00+01:00",
            EXIT_INVALID,
        ) from None
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at


async def cmd_resolve(args: argparse.Namespace, settings: Settings, out: TextIO) -> None:
    try:
        request = ResolveRequest(
            shipment_id=args.shipment_id, resolution=Resolution(args.resolution), by=CLI_ACTOR
        )
    except ValidationError as exc:
        raise CommandError(f"invalid resolution: {_first_problem(exc)}", EXIT_INVALID) from None
    try:
        view = await fulfilment.resolve_shipment(await connect(settings), args.order_id, request)
    except (orders.UnknownOrder, orders.Refused, fulfilment.UnknownShipment) as exc:
        raise CommandError(str(exc)) from None
    shipments = ", ".join(f"{s.id} {s.status.value}" for s in view.shipments)
    print(
        f"{args.shipment_id}: {request.resolution.value}; order {view.status.value} ({shipments})", file=out
    )


async def cmd_feedback(args: argparse.Namespace, settings: Settings, out: TextIO) -> None:
    try:
        feedback = FeedbackIn(score=args.score, comment=args.comment)
    except ValidationError as exc:
        raise CommandError(f"invalid feedback: {_first_problem(exc)}", EXIT_INVALID) from None
    try:
        await orders.give_feedback(await connect(settings), args.order_id, feedback, by=CLI_ACTOR)
    except (orders.UnknownOrder, orders.Refused) as exc:
        raise CommandError(str(exc)) from None
    print(f"feedback recorded for {args.order_id}", file=out)


async def cmd_cancel(args: argparse.Namespace, settings: Settings, out: TextIO) -> None:
    view = await _support(
        orders.cancel_order(await connect(settings), args.order_id, args.reason, by=CLI_ACTOR)
    )
    print(f"{view.order_id} {view.status.value}; payment {view.payment_status.value}", file=out)


async def cmd_release(args: argparse.Namespace, settings: Settings, out: TextIO) -> None:
    view = await _support(orders.release_order(await connect(settings), args.order_id, by=CLI_ACTOR))
    print(f"{view.order_id} released: {view.status.value}", file=out)


async def cmd_note(args: argparse.Namespace, settings: Settings, out: TextIO) -> None:
    await _support(orders.add_note(await connect(settings), args.order_id, args.text, by=CLI_ACTOR))
    print(f"note added to {args.order_id}", file=out)


async def cmd_return(args: argparse.Namespace, settings: Settings, out: TextIO) -> None:
    try:
        request = ReturnIn(
            sku=args.sku, quantity=args.qty, reason=args.reason, exchange_sku=args.exchange_sku
        )
    except ValidationError as exc:
        raise CommandError(f"invalid return: {_first_problem(exc)}", EXIT_INVALID) from None
    ret = await _support(orders.request_return(await connect(settings), args.order_id, request, by=CLI_ACTOR))
    print(ret.rma, file=out)


async def cmd_receive_return(args: argparse.Namespace, settings: Settings, out: TextIO) -> None:
    receipt = ReturnReceipt(rma=args.rma, condition=ReturnCondition(args.condition), by=CLI_ACTOR)
    await _support(orders.receive_return(await connect(settings), args.order_id, receipt))
    print(f"receipt of {args.rma} ({args.condition}) recorded", file=out)


async def cmd_apikey(args: argparse.Namespace, settings: Settings, out: TextIO) -> None:
    with _database(settings) as sessions:
        try:
            if args.action == "create":
                created = api_keys.create_key(sessions, args.name, Role(args.role))
            elif args.action == "revoke":
                api_keys.revoke_key(sessions, args.name)
            else:
                keys = api_keys.list_keys(sessions)
        except api_keys.ApiKeyError as exc:
            raise CommandError(str(exc)) from None
    if args.action == "create":
        if args.json:
            print(as_json({"name": created.name, "role": created.role.value, "key": created.key}), file=out)
        else:
            print(f"{created.name} ({created.role.value}): {created.key}", file=out)
            print("the key is shown only now; keep it somewhere safe", file=sys.stderr)
    elif args.action == "revoke":
        print(f"{args.name} revoked", file=out)
    else:
        rows = [(k.name, k.role.value, k.created_at, k.revoked_at or "") for k in keys]
        print(table(["NAME", "ROLE", "CREATED", "REVOKED"], rows), file=out)


async def cmd_codec(args: argparse.Namespace, settings: Settings, out: TextIO) -> None:
    if args.action == "audit":
        with _database(settings) as sessions:
            uses = recent_codec_uses(sessions, max(1, min(args.limit, 1000)))
        if args.json:
            print(as_json([asdict(u) for u in uses]), file=out)
            return
        rows = [
            (
                f"{u.at:%Y-%m-%d %H:%M:%S}",
                u.actor,
                u.via.value,
                u.operation.value,
                u.payloads,
                u.workflow_ids,
                u.outcome,
            )
            for u in uses
        ]
        print(table(["AT (UTC)", "WHO", "VIA", "OP", "PAYLOADS", "WORKFLOWS", "OUTCOME"], rows), file=out)
        return
    setting = settings.codec_keys.get_secret_value() if settings.codec_keys else None
    source = "OMS_CODEC_KEYS" if setting else str(settings.codec_key_file)
    try:
        if args.action == "keys":
            ring = load_key_ring(setting, settings.codec_key_file)
            rows = [
                (key_id, "encrypts and decrypts" if n == 0 else "decrypts")
                for n, key_id in enumerate(ring.ids)
            ]
            print(table(["KEY ID", "USE"], rows), file=out)
            print(f"from {source}", file=sys.stderr)
            return
        if args.action == "generate":
            print(f"OMS_CODEC_KEYS={format_keys(new_key_ring())}", file=out)
            return
        rotation = rotate_keys(setting, settings.codec_key_file)
    except CodecKeyError as exc:
        raise CommandError(str(exc)) from None
    new_id, old_ids = rotation.ring.current_id, ", ".join(rotation.ring.ids[1:])
    if rotation.new_setting is None:
        print(f"{source}: {new_id} encrypts from now on; {old_ids} still decrypt", file=out)
        print("restart the worker and the API so that they read the new key", file=sys.stderr)
        return
    print(
        f"new key {new_id} in front of {old_ids}. Deploy this setting to every worker and client "
        "(any order: all of them decrypt with either ring), then keep the old keys until no run uses them:",
        file=sys.stderr,
    )
    print(f"OMS_CODEC_KEYS={rotation.new_setting}", file=out)


async def cmd_forecast(args: argparse.Namespace, settings: Settings, out: TextIO) -> None:
    """Refresh the recommendations and show them; with --apply, write them to the stock rows."""
    as_of = _day(args.as_of, "--as-of") if args.as_of else None
    with _database(settings) as sessions:
        try:
            views = await asyncio.to_thread(forecasting.refresh, sessions, settings, args.sku, as_of)
            applied = (
                await forecasting.apply(await connect(settings), sessions, settings, args.sku)
                if args.apply
                else None
            )
        except ForecastError as exc:
            raise CommandError(str(exc), EXIT_INVALID) from None
    if args.json:
        print(
            as_json(
                {
                    "forecasts": [v.model_dump(mode="json") for v in views],
                    "applied": applied and applied.model_dump(mode="json"),
                }
            ),
            file=out,
        )
        return
    print(render_forecast(views, settings, detail=args.sku is not None), file=out)
    if applied is not None:
        print(render_applied(applied), file=out)


def render_forecast(views: list[ForecastView], settings: Settings, detail: bool) -> str:
    if not views:
        return f"no shipped demand in the last {settings.forecast_history_days} days: nothing to forecast"
    first = views[0].recommendation
    parts = [
        f"forecast as of {first.as_of:%Y-%m-%d}: {len(views)} sku/warehouse pair(s); lead time "
        f"{first.lead_time_days} d, review period {settings.forecast_review_days} d, service level "
        f"{first.service_level:.0%}",
        table(
            [
                "SKU",
                "WH",
                "DAYS",
                "UNITS",
                "MEAN/DAY",
                "LAST 28D",
                "MODEL",
                "MAE",
                "NAIVE MAE",
                "MA28 MAE",
                "FORECAST/DAY",
                "REORDER POINT",
                "REORDER QTY",
            ],
            [
                (
                    v.forecast.sku,
                    v.forecast.warehouse,
                    v.forecast.history.days,
                    v.forecast.history.total_units,
                    f"{v.forecast.history.mean_per_day:.2f}",
                    v.forecast.history.last_28_days,
                    v.forecast.model.value,
                    _mae(v.forecast.mae),
                    _mae(v.forecast.naive_mae),
                    _mae(v.forecast.moving_average_mae),
                    f"{v.recommendation.mean_daily_demand:.2f}",
                    f"{_or_dash(v.current_reorder_point)} -> {v.recommendation.reorder_point}",
                    f"{_or_dash(v.current_reorder_qty)} -> {v.recommendation.reorder_qty}",
                )
                for v in views
            ],
        ),
    ]
    tested = [v.forecast for v in views if v.forecast.mae is not None]
    if tested:
        parts.append(
            f"back-test (last 56 days held out, one origin) over {len(tested)} pair(s), MAE summed: "
            "chosen model (the best of six on these days) "
            f"{sum(f.mae or 0 for f in tested):.1f}, naive last value {sum(f.naive_mae or 0 for f in tested):.1f}, "
            f"moving average 28 d {sum(f.moving_average_mae or 0 for f in tested):.1f}"
        )
    if detail:
        for v in views:
            start = v.forecast.as_of
            parts.append(
                f"{v.forecast.sku}@{v.forecast.warehouse} forecast per day: "
                + ", ".join(
                    f"{start + timedelta(days=i + 1):%m-%d} {y:.1f}"
                    for i, y in enumerate(v.forecast.forecast)
                )
            )
    return "\n".join(parts)


def render_applied(result: ApplyResult) -> str:
    lines = [
        f"applied {len(result.applied)} recommendation(s) ({result.unchanged} already in place, "
        f"{len(result.skipped)} skipped)"
    ]
    lines += [
        f"  {a.sku}@{a.warehouse}: reorder point {_or_dash(a.reorder_point_before)} -> {a.reorder_point}, "
        f"qty {_or_dash(a.reorder_qty_before)} -> {a.reorder_qty}"
        for a in result.applied
    ]
    lines += [f"  skipped {why}" for why in result.skipped]
    if result.replenishing:
        lines.append(f"replenishment: {', '.join(result.replenishing)}")
    return "\n".join(lines)


def _mae(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _or_dash(value: int | None) -> str:
    return "-" if value is None else str(value)


def _day(text: str, option: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise CommandError(f"{option} must be a day written YYYY-MM-DD, not {text!r}", EXIT_INVALID) from None


BLOCKLIST_DONE = {"add": "added", "remove": "removed"}


async def cmd_blocklist(args: argparse.Namespace, settings: Settings, out: TextIO) -> None:
    if args.action != "list" and not args.email:
        raise CommandError(f"blocklist {args.action} needs an e-mail address", EXIT_INVALID)
    with _database(settings) as sessions:
        entries = update_blocklist(sessions, args.action, args.email, args.reason)
    print(
        table(["EMAIL", "REASON"], entries)
        if args.action == "list"
        else f"{args.email} {BLOCKLIST_DONE[args.action]}",
        file=out,
    )


async def cmd_reconcile(args: argparse.Namespace, settings: Settings, out: TextIO) -> None:
    """Settle what closed runs left held (see services/reconcile.py); exit 1 if something could not be."""
    client = await connect(settings)
    with _database(settings) as sessions:
        report = await reconcile.reconcile(client, sessions, dry_run=args.dry_run)
    print(as_json(report) if args.json else render_reconcile(report), file=out)
    if report.problems:
        raise CommandError(f"{report.problems} problem(s) left for a person; see the report")


def render_reconcile(report: reconcile.ReconcileReport) -> str:
    parts = []
    if report.orders:
        parts += [
            f"{len(report.orders)} order(s) whose run can no longer act held money or stock"
            + (" (dry run: nothing was changed):" if report.dry_run else ":"),
            table(
                ["ORDER", "RUN", "SETTLED", "PROBLEMS"],
                [
                    (o.order_id, o.run_status, "; ".join(o.settled), "; ".join(o.problems))
                    for o in report.orders
                ],
            ),
        ]
    else:
        parts.append("nothing to settle: no closed run holds money or stock")
    if report.needs_attention:
        parts += [
            "",
            "running orders marked NeedsAttention (not settled here; see `status ID`):",
            table(
                ["ORDER", "STATUS", "CUSTOMER"],
                [(o.order_id, o.status, o.customer_id) for o in report.needs_attention],
            ),
        ]
    if report.unreadable:
        parts += [
            "",
            "runs whose input could not be decoded (nothing was recorded for them):",
            table(
                ["WORKFLOW", "RUN", "PROBLEM"],
                [(u.workflow_id, u.run_status, u.problem) for u in report.unreadable],
            ),
        ]
    return "\n".join(parts)


# ---- reports and exports ----


async def cmd_report(args: argparse.Namespace, settings: Settings, out: TextIO) -> None:
    period = _period(args.since, args.until)
    if args.html is not None and not args.html.resolve().parent.is_dir():
        raise CommandError(f"--html {args.html}: no such folder", EXIT_INVALID)
    with _database(settings) as sessions:
        report = build_report(sessions, period, settings.delivery_sla)
    if args.html is not None:
        from domain.report_html import render_html  # matplotlib: loaded only when a chart is drawn

        args.html.write_text(render_html(report), encoding="utf-8")
    print(as_json(asdict(report)) if args.json else render_report(report), file=out)
    if args.html is not None:
        print(f"wrote {args.html}", file=sys.stderr if args.json else out)


async def cmd_export(args: argparse.Namespace, settings: Settings, out: TextIO) -> None:
    period = _period(args.since, args.until)
    if not args.file.resolve().parent.is_dir():
        raise CommandError(f"{args.file}: no such folder", EXIT_INVALID)
    with _database(settings) as sessions:
        entries = journal(sessions, period)
    try:
        write_csv(entries, args.file)
    except JournalMismatch as exc:
        raise CommandError(str(exc)) from None
    print(f"wrote {len(entries.rows)} movements ({period.describe()}) to {args.file}", file=out)
    rows = [(x.kind.value, x.currency, x.rows, x.amount) for x in entries.totals]
    print(table(["KIND", "CURRENCY", "ROWS", "AMOUNT"], rows), file=out)
    print("the totals equal the payment ledger's (approved movements)", file=out)


def _period(since: str | None, until: str | None) -> Period:
    try:
        return parse_period(since, until)
    except ReportError as exc:
        raise CommandError(str(exc), EXIT_INVALID) from None


def render_report(r: Report) -> str:
    """The report's text summary; every figure is in `--json`, the charts in `--html`."""

    def pct(x: Rate) -> str:
        return "-" if x.value is None else f"{x.value * 100:.1f} % ({x.part} of {x.whole})"

    f = r.funnel
    steps = ["placed", "rejected", "held", "backordered", "cancelled", "shipped", "delivered", "returned"]
    parts = [
        f"Orders placed {r.period.describe()} (UTC): {r.orders} ({r.historical_orders} historical)",
        "",
        table(["STEP", "ORDERS"], [(s, getattr(f, s)) for s in steps]),
    ]
    for title, reasons in (("REJECTED BY", f.rejected_by_reason), ("CANCELLED BY", f.cancelled_by_reason)):
        if reasons:
            parts += ["", table([title, "ORDERS"], [(c.label, c.count) for c in reasons])]
    cycles = [
        (STAGE_LABELS[c.stage], c.group, c.times.count)
        + (c.times.p50_hours, c.times.p90_hours, c.times.p99_hours)
        for c in r.cycle_times
    ]
    if cycles:
        parts += ["", table(["CYCLE TIME (HOURS)", "GROUP", "N", "P50", "P90", "P99"], cycles)]
    ful, ret, fb = r.fulfilment, r.returns, r.feedback
    fill = f"{ful.time_to_fill.p50_hours} h" if ful.time_to_fill else "-"
    parts += [
        "",
        f"on time: {pct(r.delivery.on_time)}; overdue now: {len(r.delivery.overdue_now)}",
        f"fill rate: {pct(ful.fill_rate)}; split shipments: {pct(ful.split_shipments)}",
        f"backorders: {pct(ful.backorders)}; time to fill p50: {fill}; still waiting: {ful.still_waiting}",
        f"orders with returns: {pct(ret.orders_returning)}; refunds: {ret.refunds}"
        + "".join(f" ({amount} {cur})" for cur, amount in ret.refunded.items())
        + f"; exchanges: {ret.exchanges}; not back yet: {ret.open}",
    ]
    if ret.by_reason:
        reasons = [(x.reason, x.returns, x.units) for x in ret.by_reason]
        parts += ["", table(["RETURN REASON", "RETURNS", "UNITS"], reasons)]
    money = [
        (m.key, m.currency, m.authorized, m.captured, m.refunded, m.voided, m.net)
        for m in r.revenue.totals + r.revenue.per_channel
    ]
    parts += [
        "",
        table(["LEDGER", "CURRENCY", "AUTHORIZED", "CAPTURED", "REFUNDED", "VOIDED", "NET"], money)
        if money
        else "ledger: no money moved in this period",
    ]
    parts += [
        f"historical sales value (not in the ledger): {h.value} {h.currency} in {h.orders} {h.source} orders"
        for h in r.revenue.historical
    ]
    scores = ", ".join(f"{score}: {n}" for score, n in fb.distribution.items())
    parts += [
        "",
        f"feedback: {fb.count} scores, average {fb.average if fb.average is not None else '-'} ({scores})",
        f"stock: {len(r.stock.stock_outs)} stock-outs, {len(r.stock.slow_movers)} slow movers; "
        f"fewest days of cover (demand over {r.stock.days} days):",
        table(
            ["SKU", "WAREHOUSE", "AVAILABLE", "PER DAY", "DAYS OF COVER"],
            [
                (c.sku, c.warehouse, c.available, c.per_day, c.days_of_cover)
                for c in r.stock.cover
                if c.days_of_cover is not None
            ][:10],
        ),
    ]
    return "\n".join(parts)


# ---- worker versioning (docs/versioning.md) ----


async def cmd_versions(args: argparse.Namespace, settings: Settings, out: TextIO) -> None:
    deployment = _deployment(args, settings)
    found = await versions.deployment_versions(await connect(settings), deployment)
    print(as_json(found) if args.json else render_versions(found), file=out)


async def cmd_set_current_version(args: argparse.Namespace, settings: Settings, out: TextIO) -> None:
    deployment = _deployment(args, settings)
    try:
        build_id = check_build_id(args.build_id)
    except ValueError as exc:
        raise CommandError(str(exc), EXIT_INVALID) from None
    try:
        previous = await versions.set_current_version(
            await connect(settings), deployment, build_id, CLI_ACTOR
        )
    except versions.VersioningRefused as exc:
        raise CommandError(str(exc)) from None
    was = f"build {previous}" if previous else "unversioned workers"
    print(f"{deployment}:{build_id} is current (before: {was}); new orders start on it", file=out)


def render_versions(found: DeploymentVersions) -> str:
    builds = [v for v in found.versions if v.build_id is not None]
    if not builds:
        head = f"no versioned worker of deployment {found.deployment} has polled yet"
    elif found.current_build_id:
        head = f"worker deployment {found.deployment}: build {found.current_build_id} is current"
    else:
        head = f"worker deployment {found.deployment}: no build is current (new orders: unversioned workers)"
    if found.ramping_build_id:
        head += f", build {found.ramping_build_id} ramping"
    rows = [(v.build_id or "(none)", v.status.value, v.open_orders, v.open_other) for v in found.versions]
    parts = [head, "", table(["BUILD", "STATUS", "OPEN ORDERS", "OTHER OPEN"], rows)]
    # what the operator came for: which old builds' workers may stop now (not a new one, never current)
    retired = [v.build_id for v in builds if v.drained and v.status in _RETIRING]
    if retired:
        parts += ["", f"nothing open on {', '.join(retired)}: those workers may stop"]
    return "\n".join(parts)


_RETIRING = (VersionStatus.draining, VersionStatus.drained)


def _deployment(args: argparse.Namespace, settings: Settings) -> str:
    try:
        return check_deployment_name(args.deployment or settings.worker_deployment)
    except ValueError as exc:
        raise CommandError(str(exc), EXIT_INVALID) from None


COMMANDS = {
    "migrate": cmd_migrate,
    "catalog": cmd_catalog,
    "stock": cmd_stock,
    "place": cmd_place,
    "import": cmd_import,
    "import-history": cmd_import_history,
    "status": cmd_status,
    "list": cmd_list,
    "deliver": cmd_deliver,
    "warehouse": cmd_warehouse,
    "carrier-event": cmd_carrier_event,
    "resolve": cmd_resolve,
    "feedback": cmd_feedback,
    "cancel": cmd_cancel,
    "release": cmd_release,
    "note": cmd_note,
    "return": cmd_return,
    "receive-return": cmd_receive_return,
    "blocklist": cmd_blocklist,
    "apikey": cmd_apikey,
    "purchase-orders": cmd_purchase_orders,
    "reconcile": cmd_reconcile,
    "forecast": cmd_forecast,
    "codec": cmd_codec,
    "report": cmd_report,
    "export": cmd_export,
    "versions": cmd_versions,
    "set-current-version": cmd_set_current_version,
}


def render_view(view: OrderView) -> str:
    total = f"{view.total} {view.currency}" if view.total is not None else f"- {view.currency}"
    parts = [
        f"Order {view.order_id}  [{view.status.value}]  payment: {view.payment_status.value}"
        + ("  DELIVERY OVERDUE" if view.overdue else ""),
        f"customer {view.customer_id} via {view.channel.value}, placed {view.placed_at:%Y-%m-%d %H:%M:%S} UTC, "
        f"total {total}",
    ]
    if view.expected_delivery:
        parts.append(f"expected delivery by {view.expected_delivery:%Y-%m-%d}")
    if view.releases_at and view.status.value in ("confirmed", "on_hold", "backordered"):
        parts.append(
            f"goes to the warehouses at {view.releases_at:%Y-%m-%d %H:%M:%S} UTC (cancellable until then)"
        )
    if view.lines:
        parts += [
            "",
            table(
                ["SKU", "NAME", "QTY", "UNIT", "TOTAL"],
                [(x.sku, x.name, x.quantity, x.unit_price, x.line_total) for x in view.lines],
            ),
        ]
    if view.shipments:
        parts += [
            "",
            table(
                ["SHIPMENT", "WAREHOUSE", "STATUS", "CARRIER", "TRACKING"],
                [(s.id, s.warehouse, s.status.value, s.carrier, s.tracking_number) for s in view.shipments],
            ),
        ]
        for s in view.shipments:  # the carrier's tracking timeline, and what is wrong, per parcel
            if s.tracking or s.trouble:
                parts.append(
                    f"{s.id}" + (f"  in trouble: {s.trouble}" if s.trouble and not s.resolution else "")
                )
                parts += [
                    f"  {e.at:%Y-%m-%d %H:%M} {e.type.value}" + (f" at {e.place}" if e.place else "")
                    for e in s.tracking
                ]
                if s.resolution:
                    parts.append(f"  resolved: {s.resolution.value}")
    if view.returns:
        parts += [
            "",
            table(
                ["RMA", "STATUS", "LINES", "EXCHANGE", "REFUND", "REASON"],
                [
                    (
                        r.rma,
                        r.status.value,
                        ", ".join(f"{x.quantity} x {x.sku}" for x in r.lines),
                        r.exchange_sku,
                        r.refund_amount,
                        r.reason,
                    )
                    for r in view.returns
                ],
            ),
        ]
    paid = view.payment
    parts += [
        "",
        f"payment: authorized {paid.authorized}, captured {paid.captured}, refunded {paid.refunded} "
        f"{view.currency}",
    ]
    if view.feedback:
        parts += ["", f"feedback: {view.feedback.score}/5 {view.feedback.comment or ''}".rstrip()]
    parts += [
        "",
        table(
            ["AT", "EVENT", "DETAIL"], [(f"{e.at:%Y-%m-%d %H:%M:%S}", e.type, e.detail) for e in view.events]
        ),
    ]
    return "\n".join(parts)


async def _support(call: Awaitable[T]) -> T:
    """Run a support action; an unknown order or a refusal becomes a clear message and exit status 1."""
    try:
        return await call
    except (orders.UnknownOrder, orders.Refused) as exc:
        raise CommandError(str(exc)) from None


async def _view(settings: Settings, order_id: str) -> OrderView:
    return await _support(orders.order_view(await connect(settings), order_id))


@contextmanager
def _database(settings: Settings) -> Iterator[SessionFactory]:
    engine = make_engine(settings.database_url)
    try:
        yield make_session_factory(engine)
    finally:
        engine.dispose()


def _read_bytes(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror}", EXIT_INVALID) from None


def _read_stdin_bytes() -> bytes:
    buffer = getattr(sys.stdin, "buffer", None)  # a text-only stdin (as in tests) is read as text
    return buffer.read() if buffer is not None else sys.stdin.read().encode()


def _page_size(text: str) -> int:
    size = int(text)
    if not 1 <= size <= 500:
        raise argparse.ArgumentTypeError(f"{size} is not between 1 and 500")
    return size


def _first_problem(exc: ValidationError) -> str:
    return orders.field_problems(exc, whole="input")[0]


def _redact(url: str) -> str:
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    return f"{scheme}://***@{rest.split('@', 1)[1]}"


def main() -> None:
    exit_without_finalizing(asyncio.run(dispatch(sys.argv[1:], get_settings())))


if __name__ == "__main__":
    main()
