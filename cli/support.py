"""What support staff do to one order: `cancel`, `release`, `note`, `feedback`, `return`,
`receive-return`, `approve-return` / `decline-return` (a customer's request), `refund` (goodwill), `resolve` (a lost parcel), `messages` and `resend` (a message given up), and the `blocklist` of e-mails held for review
(services/orders.py, services/fulfilment.py, services/messages.py, domain/blocklist.py)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, TextIO

from cli.common import CLI_ACTOR, EXIT_INVALID, CommandError, database, first_problem, order_call
from models.choices import GoodwillReason, Resolution, ReturnCondition

if TYPE_CHECKING:
    from cli.common import Subcommands
    from config import Settings
    from models.orders import CancelLine


def add_resolve(sub: Subcommands) -> None:
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
    resolve.set_defaults(handler=cmd_resolve)


def add_feedback(sub: Subcommands) -> None:
    feedback = sub.add_parser("feedback", help="the customer's feedback on a delivered order")
    feedback.add_argument("order_id")
    feedback.add_argument("--score", type=int, required=True)
    feedback.add_argument("--comment")
    feedback.set_defaults(handler=cmd_feedback)


def add_cancel(sub: Subcommands) -> None:
    cancel = sub.add_parser(
        "cancel", help="cancel an order that has not shipped, or some of its units (with compensation)"
    )
    cancel.add_argument("order_id")
    cancel.add_argument("--reason", required=True)
    cancel.add_argument(
        "--line",
        action="append",
        metavar="SKU=QTY",
        help="cancel only QTY units of SKU (repeat for more lines); without it the whole order",
    )
    cancel.set_defaults(handler=cmd_cancel)


def add_edit(sub: Subcommands) -> None:
    edit = sub.add_parser(
        "edit", help="edit an order before release: its shipping address (line edits: not yet supported)"
    )
    edit.add_argument("order_id")
    edit.add_argument("--address-json", metavar="FILE", help="the new shipping address, a JSON object")
    edit.add_argument(
        "--line",
        action="append",
        default=None,
        metavar="SKU=QTY",
        help="the order's lines as they should be afterwards, once per line (0 removes one)",
    )
    edit.set_defaults(handler=cmd_edit)


def add_release(sub: Subcommands) -> None:
    release = sub.add_parser("release", help="release an order held for review")
    release.add_argument("order_id")
    release.set_defaults(handler=cmd_release)


def add_note(sub: Subcommands) -> None:
    note = sub.add_parser("note", help="add a support note to the order's event log")
    note.add_argument("order_id")
    note.add_argument("text")
    note.set_defaults(handler=cmd_note)


def add_messages(sub: Subcommands) -> None:
    listed = sub.add_parser("messages", help="an order's messages and their delivery")
    listed.add_argument("order_id")
    listed.set_defaults(handler=cmd_messages)
    resend = sub.add_parser("resend", help="send a message the mail server gave up on again")
    resend.add_argument("order_id")
    resend.add_argument("message_id", type=int, help="its ID in `messages`")
    resend.add_argument("--to", help="a corrected e-mail address (else the one it was for)")
    resend.set_defaults(handler=cmd_resend)


def add_return(sub: Subcommands) -> None:
    ret = sub.add_parser("return", help="authorize a return (RMA) of delivered units")
    ret.add_argument("order_id")
    ret.add_argument("--sku", required=True)
    ret.add_argument("--qty", type=int, required=True)
    ret.add_argument("--reason", required=True)
    ret.add_argument("--exchange-sku")
    ret.set_defaults(handler=cmd_return)


def add_refund(sub: Subcommands) -> None:
    refund = sub.add_parser(
        "refund", help="a goodwill refund: give back part of what was captured, with a reason code"
    )
    refund.add_argument("order_id")
    refund.add_argument("amount", help="in the order's currency, e.g. 5.00 (at most captured - refunded)")
    refund.add_argument("--reason", required=True, choices=[r.value for r in GoodwillReason])
    refund.add_argument("--note", help="free text for the order's story")
    refund.add_argument("--key", help="idempotency key: the same key again refunds once (default: a new one)")
    refund.set_defaults(handler=cmd_refund)


def add_receive_return(sub: Subcommands) -> None:
    receive = sub.add_parser("receive-return", help="the warehouse received a returned parcel")
    receive.add_argument("order_id")
    receive.add_argument("rma")
    receive.add_argument("--condition", choices=[c.value for c in ReturnCondition], default="good")
    receive.set_defaults(handler=cmd_receive_return)


def add_decide_return(sub: Subcommands) -> None:
    for name, verb in (("approve-return", "approve"), ("decline-return", "decline")):
        decide = sub.add_parser(name, help=f"{verb} a return the customer requested on the tracking page")
        decide.add_argument("order_id")
        decide.add_argument("rma")
        decide.add_argument("--note", help="why (a decline's reason is sent to the customer)")
        decide.set_defaults(handler=cmd_decide_return, approve=verb == "approve")


def add_blocklist(sub: Subcommands) -> None:
    blocklist = sub.add_parser("blocklist", help="customer e-mails whose orders are held for review")
    blocklist.add_argument("action", choices=["add", "remove", "list"])
    blocklist.add_argument("email", nargs="?")
    blocklist.add_argument("--reason")
    blocklist.set_defaults(handler=cmd_blocklist)


async def cmd_resolve(args: argparse.Namespace, settings: Settings, out: TextIO) -> None:
    from pydantic import ValidationError

    from connection import connect
    from models.fulfilment import ResolveRequest
    from services import fulfilment, orders

    try:
        request = ResolveRequest(
            shipment_id=args.shipment_id, resolution=Resolution(args.resolution), by=CLI_ACTOR
        )
    except ValidationError as exc:
        raise CommandError(f"invalid resolution: {first_problem(exc)}", EXIT_INVALID) from None
    try:
        view = await fulfilment.resolve_shipment(await connect(settings), args.order_id, request)
    except (orders.UnknownOrder, orders.Refused, fulfilment.UnknownShipment) as exc:
        raise CommandError(str(exc)) from None
    shipments = ", ".join(f"{s.id} {s.status.value}" for s in view.shipments)
    print(
        f"{args.shipment_id}: {request.resolution.value}; order {view.status.value} ({shipments})", file=out
    )


async def cmd_feedback(args: argparse.Namespace, settings: Settings, out: TextIO) -> None:
    from pydantic import ValidationError

    from connection import connect
    from models.orders import FeedbackIn
    from services import orders

    try:
        feedback = FeedbackIn(score=args.score, comment=args.comment)
    except ValidationError as exc:
        raise CommandError(f"invalid feedback: {first_problem(exc)}", EXIT_INVALID) from None
    await order_call(orders.give_feedback(await connect(settings), args.order_id, feedback, by=CLI_ACTOR))
    print(f"feedback recorded for {args.order_id}", file=out)


async def cmd_cancel(args: argparse.Namespace, settings: Settings, out: TextIO) -> None:
    from connection import connect
    from services import orders

    lines = None if not args.line else [_cancel_line(text) for text in args.line]
    view = await order_call(
        orders.cancel_order(await connect(settings), args.order_id, args.reason, by=CLI_ACTOR, lines=lines)
    )
    print(f"{view.order_id} {view.status.value}; payment {view.payment_status.value}", file=out)
    if lines:
        for shipment in view.shipments:
            units = ", ".join(f"{x.quantity} x {x.sku}" for x in shipment.lines) or "nothing"
            print(f"  {shipment.id} {shipment.status.value}: {units}, {shipment.amount}", file=out)


def _cancel_line(text: str) -> CancelLine:
    """`SKU=QTY` as `--line` takes it."""
    from pydantic import ValidationError

    from models.orders import CancelLine

    sku, sep, quantity = text.partition("=")
    try:
        if not sep:
            raise ValueError
        return CancelLine(sku=sku.strip(), quantity=int(quantity))
    except ValueError as exc:
        problem = (
            first_problem(exc) if isinstance(exc, ValidationError) else "expected SKU=QTY, QTY a whole number"
        )
        raise CommandError(f"invalid --line {text!r}: {problem}", EXIT_INVALID) from None


async def cmd_edit(args: argparse.Namespace, settings: Settings, out: TextIO) -> None:
    import json
    from pathlib import Path

    from pydantic import ValidationError

    from connection import connect
    from models.orders import EditIn
    from services import orders

    doc: dict[str, object] = {}
    if args.address_json:
        try:
            doc["shipping_address"] = json.loads(Path(args.address_json).read_text())
        except (OSError, ValueError) as exc:
            raise CommandError(f"--address-json {args.address_json}: {exc}", EXIT_INVALID) from None
    if args.line is not None:
        lines = []
        for text in args.line:
            sku, sep, quantity = text.partition("=")
            if not sep or not sku.strip() or not quantity.strip().isdigit():
                raise CommandError(f"--line {text!r}: write SKU=QTY (e.g. --line MUG-1=2)", EXIT_INVALID)
            lines.append({"sku": sku.strip(), "quantity": int(quantity)})
        doc["lines"] = lines
    try:
        edit = EditIn.model_validate(doc)
    except ValidationError as exc:
        raise CommandError(f"invalid edit: {first_problem(exc)}", EXIT_INVALID) from None
    view = await order_call(
        orders.edit_order(
            await connect(settings), args.order_id, edit, served=settings.served_countries, by=CLI_ACTOR
        )
    )
    units = ", ".join(f"{x.quantity} x {x.sku}" for x in view.lines)
    total = f"{view.total:.2f} {view.currency}" if view.total is not None else "not priced"
    print(f"{view.order_id} edited; {view.status.value}; {units}; total {total}", file=out)


async def cmd_refund(args: argparse.Namespace, settings: Settings, out: TextIO) -> None:
    """The command line is an operator's door (it reaches Temporal directly): OMS_GOODWILL_LIMIT binds
    the support role of the API and the console, not it."""
    from pydantic import ValidationError

    from connection import connect
    from models.orders import GoodwillIn
    from services import orders

    try:
        refund = GoodwillIn.model_validate({"amount": args.amount, "reason": args.reason, "note": args.note})
    except ValidationError as exc:
        raise CommandError(f"invalid refund: {first_problem(exc)}", EXIT_INVALID) from None
    done = await order_call(
        orders.goodwill_refund(await connect(settings), args.order_id, refund, key=args.key, by=CLI_ACTOR)
    )
    print(
        f"{args.order_id}: goodwill refund {done.amount:.2f} {done.currency} ({done.reason.value}) "
        f"{done.reference}",
        file=out,
    )


async def cmd_release(args: argparse.Namespace, settings: Settings, out: TextIO) -> None:
    from connection import connect
    from services import orders

    view = await order_call(orders.release_order(await connect(settings), args.order_id, by=CLI_ACTOR))
    print(f"{view.order_id} released: {view.status.value}", file=out)


async def cmd_note(args: argparse.Namespace, settings: Settings, out: TextIO) -> None:
    from connection import connect
    from services import orders

    await order_call(orders.add_note(await connect(settings), args.order_id, args.text, by=CLI_ACTOR))
    print(f"note added to {args.order_id}", file=out)


async def cmd_messages(args: argparse.Namespace, settings: Settings, out: TextIO) -> None:
    from cli.render import render_messages
    from services import messages

    with database(settings) as sessions:
        found = await order_call(messages.order_messages(sessions, args.order_id))
    print(render_messages(found), file=out)


async def cmd_resend(args: argparse.Namespace, settings: Settings, out: TextIO) -> None:
    from pydantic import ValidationError

    from models.orders import ResendIn
    from services import messages

    try:
        to = ResendIn(to=args.to).to
    except ValidationError as exc:
        raise CommandError(f"invalid address: {first_problem(exc)}", EXIT_INVALID) from None
    with database(settings) as sessions:
        try:
            sent = await order_call(
                messages.send_again(sessions, args.order_id, args.message_id, CLI_ACTOR, to)
            )
        except messages.UnknownMessage as exc:
            raise CommandError(str(exc)) from None
    print(f"message {sent.id} ({sent.kind}) to {sent.recipient} waits to be sent again", file=out)


async def cmd_return(args: argparse.Namespace, settings: Settings, out: TextIO) -> None:
    from pydantic import ValidationError

    from connection import connect
    from models.orders import ReturnIn
    from services import orders

    try:
        request = ReturnIn(
            sku=args.sku, quantity=args.qty, reason=args.reason, exchange_sku=args.exchange_sku
        )
    except ValidationError as exc:
        raise CommandError(f"invalid return: {first_problem(exc)}", EXIT_INVALID) from None
    ret = await order_call(
        orders.request_return(await connect(settings), args.order_id, request, by=CLI_ACTOR)
    )
    print(ret.rma, file=out)


async def cmd_receive_return(args: argparse.Namespace, settings: Settings, out: TextIO) -> None:
    from connection import connect
    from models.orders import ReturnReceipt
    from services import orders

    receipt = ReturnReceipt(rma=args.rma, condition=ReturnCondition(args.condition), by=CLI_ACTOR)
    await order_call(orders.receive_return(await connect(settings), args.order_id, receipt))
    print(f"receipt of {args.rma} ({args.condition}) recorded", file=out)


async def cmd_decide_return(args: argparse.Namespace, settings: Settings, out: TextIO) -> None:
    from pydantic import ValidationError

    from connection import connect
    from models.orders import ReturnDecisionIn
    from services import orders

    try:
        decision = ReturnDecisionIn(note=args.note)
    except ValidationError as exc:
        raise CommandError(f"invalid note: {first_problem(exc)}", EXIT_INVALID) from None
    ret = await order_call(
        orders.decide_return(
            await connect(settings), args.order_id, args.rma, args.approve, decision, by=CLI_ACTOR
        )
    )
    print(f"{ret.rma} {'approved' if args.approve else 'declined'}: {ret.status.value}", file=out)


BLOCKLIST_DONE = {"add": "added", "remove": "removed"}


async def cmd_blocklist(args: argparse.Namespace, settings: Settings, out: TextIO) -> None:
    from cli.render import render_blocklist
    from domain.blocklist import update_blocklist

    if args.action != "list" and not args.email:
        raise CommandError(f"blocklist {args.action} needs an e-mail address", EXIT_INVALID)
    with database(settings) as sessions:
        entries = update_blocklist(sessions, args.action, args.email, args.reason)
    print(
        render_blocklist(entries) if args.action == "list" else f"{args.email} {BLOCKLIST_DONE[args.action]}",
        file=out,
    )
