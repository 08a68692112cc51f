"""Orders in and out: `place`, `import`, `import-history`, `status`, `list` (services/orders.py,
services/imports.py, domain/history_import.py)."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, TextIO

from cli.common import CLI_ACTOR, EXIT_INVALID, CommandError, database, order_call, read_input
from models.choices import Channel, HistoryFormat, ImportFormat, OrderStatus

if TYPE_CHECKING:
    from cli.common import Subcommands
    from config import Settings


def add_place(sub: Subcommands) -> None:
    place = sub.add_parser("place", help="place one order (JSON file, or - for stdin)")
    place.add_argument("file")
    place.add_argument(
        "--wait", action="store_true", help="wait until the order has settled and print the outcome"
    )
    place.set_defaults(handler=cmd_place)


def add_import(sub: Subcommands) -> None:
    batch = sub.add_parser("import", help="import a batch of orders (CSV or JSON Lines file, or - for stdin)")
    batch.add_argument("file")
    batch.add_argument(
        "--format", choices=[f.value for f in ImportFormat], help="default: from the extension"
    )
    batch.add_argument("--json", action="store_true")
    batch.set_defaults(handler=cmd_import)


def add_import_history(sub: Subcommands) -> None:
    history = sub.add_parser(
        "import-history", help="load past sales as closed, historical orders (no workflows, no money moved)"
    )
    history.add_argument("file", help="online-retail: the CSV (.gz read directly); olist: its folder")
    history.add_argument("--format", required=True, choices=[f.value for f in HistoryFormat])
    history.add_argument(
        "--warehouse", help="the warehouse the units left from (default: the preferred one; HIST if none)"
    )
    history.add_argument("--json", action="store_true")
    history.set_defaults(handler=cmd_import_history)


def add_status(sub: Subcommands) -> None:
    status = sub.add_parser("status", help="an order's live view")
    status.add_argument("order_id")
    status.add_argument("--json", action="store_true")
    status.set_defaults(handler=cmd_status)


def add_list(sub: Subcommands) -> None:
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
    listing.set_defaults(handler=cmd_list)


def _page_size(text: str) -> int:
    size = int(text)
    if not 1 <= size <= 500:
        raise argparse.ArgumentTypeError(f"{size} is not between 1 and 500")
    return size


async def cmd_place(args: argparse.Namespace, settings: Settings, out: TextIO) -> None:
    from connection import connect
    from services import orders

    data = read_input(args.file)
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
    from tqdm import tqdm

    from cli.render import as_json, render_import
    from connection import connect
    from domain.order_import import ImportFileError, decode_import, format_for
    from models.imports import ImportStatus
    from services import imports

    fmt = ImportFormat(args.format) if args.format else format_for(args.file)
    if fmt is None:
        raise CommandError(
            "reading stdin needs --format csv|jsonl"
            if args.file == "-"
            else f"cannot tell the format of {args.file}: name it .csv, .jsonl or .ndjson, or pass --format",
            EXIT_INVALID,
        )
    data = read_input(args.file)
    try:
        text = decode_import(data)
    except ImportFileError as exc:
        raise CommandError(f"{args.file}: {exc}", EXIT_INVALID) from None
    client = await connect(settings)  # before anything is stored: no import is left half-started
    with database(settings) as sessions:
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
    import asyncio
    from pathlib import Path

    from tqdm import tqdm

    from cli.render import as_json, render_history_import
    from domain.history_import import HistoryImportError, import_history

    fmt = HistoryFormat(args.format)
    with (
        database(settings) as sessions,
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


async def cmd_status(args: argparse.Namespace, settings: Settings, out: TextIO) -> None:
    from cli.render import as_json, render_view
    from connection import connect
    from services import orders

    view = await order_call(orders.order_view(await connect(settings), args.order_id))
    print(as_json(view) if args.json else render_view(view), file=out)


async def cmd_list(args: argparse.Namespace, settings: Settings, out: TextIO) -> None:
    from cli.render import as_json, render_order_list
    from connection import connect
    from services import orders

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
    print(render_order_list(found), file=out)
