"""The warehouses' and carriers' side: `warehouse queue|pick|pack|handover`, `carrier-event`, `deliver`
(services/fulfilment.py, models/fulfilment.py)."""

from __future__ import annotations

import argparse
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TextIO

from cli.common import CLI_ACTOR, EXIT_INVALID, CommandError, database, first_problem
from models.choices import CarrierEventType

if TYPE_CHECKING:
    from cli.common import Subcommands
    from config import Settings
    from models.fulfilment import PickedLine, WarehouseReport
    from services.orders import Refused

REPORT_ID_HELP = "the sender's own id for this report (e.g. the WMS's)"


def add_deliver(sub: Subcommands) -> None:
    deliver = sub.add_parser("deliver", help="the carrier's delivery confirmation")
    deliver.add_argument("order_id")
    deliver.add_argument("--shipment")
    deliver.set_defaults(handler=cmd_deliver)


def add_warehouse(sub: Subcommands) -> None:
    warehouse = sub.add_parser(
        "warehouse", help="a warehouse's side: its queue of released shipments, and what it reports"
    ).add_subparsers(dest="action", required=True)
    queue = warehouse.add_parser("queue", help="shipments released to a warehouse and waiting, oldest first")
    queue.add_argument("warehouse")
    queue.add_argument("--json", action="store_true")
    queue.set_defaults(handler=cmd_warehouse_queue)
    pick = warehouse.add_parser(
        "pick", help="the shipment's lines were picked (a short pick names its lines)"
    )
    pick.add_argument("shipment_id")
    _add_line_option(
        pick, "units found of a line (fewer than ordered: a short pick); lines left out were picked in full"
    )
    pick.add_argument("--id", dest="report_id", metavar="REPORT_ID", help=REPORT_ID_HELP)
    pick.set_defaults(handler=cmd_warehouse_report)
    pack = warehouse.add_parser("pack", help="the shipment was packed: one weight per parcel")
    pack.add_argument("shipment_id")
    pack.add_argument(
        "--parcel",
        action="append",
        required=True,
        metavar="WEIGHT_G",
        help="a parcel's weight in grams (once per parcel)",
    )
    _add_line_option(
        pack, "straight after the release (no pick reported): units found of a line, as for `pick`"
    )
    pack.add_argument("--id", dest="report_id", metavar="REPORT_ID", help=REPORT_ID_HELP)
    pack.set_defaults(handler=cmd_warehouse_report)
    handover = warehouse.add_parser("handover", help="the parcels were handed over to the carrier")
    handover.add_argument("shipment_id")
    handover.add_argument("--id", dest="report_id", metavar="REPORT_ID", help=REPORT_ID_HELP)
    handover.set_defaults(handler=cmd_warehouse_report)


def _add_line_option(report: argparse.ArgumentParser, help_text: str) -> None:
    """`--line SKU=QTY`, once per line, of `pick` and `pack` (read by `_picked_line`)."""
    report.add_argument("--line", action="append", default=[], metavar="SKU=QTY", help=help_text)


def add_carrier_event(sub: Subcommands) -> None:
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
    event.set_defaults(handler=cmd_carrier_event)


async def cmd_deliver(args: argparse.Namespace, settings: Settings, out: TextIO) -> None:
    from connection import connect
    from services import orders

    client = await connect(settings)
    try:
        confirmed = await orders.confirm_delivery(client, args.order_id, args.shipment, by=CLI_ACTOR)
    except (orders.UnknownOrder, orders.Refused) as exc:
        raise CommandError(str(exc)) from None
    print(f"delivery confirmed for {', '.join(confirmed)}", file=out)


async def cmd_warehouse_report(args: argparse.Namespace, settings: Settings, out: TextIO) -> None:
    from cli.render import render_outcome
    from connection import connect
    from models.fulfilment import WarehouseStep
    from services import fulfilment, orders

    report = _warehouse_report(args)
    try:
        outcome = await fulfilment.submit_warehouse_report(await connect(settings), report)
    except fulfilment.ReportTooEarly as exc:
        later = "once the label is printed" if report.step == WarehouseStep.handed_over else "later"
        raise CommandError(f"too early: {exc}; try again {later}") from None
    except (orders.UnknownOrder, orders.Refused, fulfilment.UnknownShipment) as exc:
        raise CommandError(str(exc)) from None
    print(render_outcome(outcome), file=out)


async def cmd_warehouse_queue(args: argparse.Namespace, settings: Settings, out: TextIO) -> None:
    from pydantic import TypeAdapter

    from cli.render import as_json, render_queue
    from domain.shipments import QueuedShipment, UnknownWarehouse
    from services import fulfilment

    with database(settings) as sessions:
        try:
            waiting = fulfilment.warehouse_queue(sessions, args.warehouse)
        except UnknownWarehouse as exc:
            raise CommandError(str(exc)) from None
    if args.json:
        print(as_json(TypeAdapter(list[QueuedShipment]).dump_python(waiting, mode="json")), file=out)
        return
    print(render_queue(waiting), file=out)


def _warehouse_report(args: argparse.Namespace) -> WarehouseReport:
    """The report a `warehouse pick|pack|handover` command line describes; bad input exits 2."""
    from pydantic import ValidationError

    from models.fulfilment import WarehouseReport, WarehouseStep

    step = {
        "pick": WarehouseStep.picked,
        "pack": WarehouseStep.packed,
        "handover": WarehouseStep.handed_over,
    }[args.action]
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
        raise CommandError(f"invalid report: {first_problem(exc)}", EXIT_INVALID) from None


def _picked_line(text: str) -> PickedLine:
    """`SKU=QTY`: QTY units of SKU were found (0: none)."""
    from pydantic import ValidationError

    from models.fulfilment import PickedLine

    sku, sep, quantity = text.partition("=")
    if not sep or not sku.strip() or not quantity.strip().isdigit():
        raise CommandError(
            f"--line {text!r}: write SKU=QTY, the units found as a whole number (e.g. --line MUG-1=2)",
            EXIT_INVALID,
        )
    try:
        return PickedLine(sku=sku, quantity=int(quantity))
    except ValidationError as exc:
        raise CommandError(f"--line {text!r}: {first_problem(exc)}", EXIT_INVALID) from None


def _parcel_weight(text: str) -> int:
    if not text.strip().isdigit() or int(text) < 1:
        raise CommandError(
            f"--parcel {text!r}: a parcel's weight in grams, a whole number above 0 (e.g. --parcel 850)",
            EXIT_INVALID,
        )
    return int(text)


async def cmd_carrier_event(args: argparse.Namespace, settings: Settings, out: TextIO) -> None:
    from pydantic import ValidationError

    from cli.render import render_outcome
    from connection import connect
    from models.fulfilment import CarrierEvent
    from services import fulfilment, orders

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
        raise CommandError(f"invalid carrier event: {first_problem(exc)}", EXIT_INVALID) from None
    with database(settings) as sessions:
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
    print(render_outcome(outcome), file=out)


def _is_duplicate(exc: Refused) -> bool:
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
