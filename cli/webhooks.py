"""`webhooks add|list|remove|enable|deliveries|redeliver|rotate-secret`: outbound webhooks (docs/webhooks.md), the admin's
door on the command line, over services/webhooks.py like the API's /webhooks."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, TextIO

from cli.common import CLI_ACTOR, EXIT_INVALID, CommandError, database
from models.choices import WebhookEventType

if TYPE_CHECKING:
    from cli.common import Subcommands
    from config import Settings
    from db import SessionFactory
    from models.webhooks import WebhookIn


def add_webhooks(sub: Subcommands) -> None:
    webhooks = sub.add_parser(
        "webhooks", help="outbound webhooks: subscriptions, deliveries, redelivery, secrets"
    )
    webhooks.set_defaults(handler=cmd_webhooks)
    actions = webhooks.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="subscribe a URL to event types (its secret is shown once)")
    add.add_argument("url")
    add.add_argument(
        "--event",
        dest="events",
        action="append",
        required=True,
        metavar="TYPE",
        help=f"an event type, repeated for several: {', '.join(t.value for t in WebhookEventType)}",
    )
    add.add_argument("--description")
    add.add_argument("--json", action="store_true")
    listed = actions.add_parser("list", help="subscriptions (never their secrets)")
    listed.add_argument("--json", action="store_true")
    actions.add_parser("remove", help="stop sending to a subscription").add_argument("id")
    actions.add_parser("enable", help="send to a disabled subscription again").add_argument("id")
    log = actions.add_parser("deliveries", help="a subscription's delivery log, newest first")
    log.add_argument("id")
    log.add_argument("--limit", type=int, default=20)
    log.add_argument("--json", action="store_true")
    again = actions.add_parser("redeliver", help="send a delivery again (same webhook-id)")
    again.add_argument("delivery", type=int)
    rotate = actions.add_parser(
        "rotate-secret", help="a new signing secret (shown once); the old one signs too for a while"
    )
    rotate.add_argument("id")
    rotate.add_argument(
        "--keep-old-for",
        type=int,
        metavar="SECONDS",
        help="how long the old secret still signs next to the new one (default OMS_WEBHOOK_SECRET_OVERLAP; 0: stop now)",
    )


async def cmd_webhooks(args: argparse.Namespace, settings: Settings, out: TextIO) -> None:
    from cli.render import as_json, render_deliveries, render_webhooks
    from services import webhooks

    with database(settings) as sessions:
        try:
            if args.action == "add":
                created, _ = await webhooks.subscribe(sessions, settings, _request(args), CLI_ACTOR)
                if args.json:
                    print(as_json(created), file=out)
                else:
                    print(f"{created.id} -> {created.url}: {', '.join(created.events)}", file=out)
                    print(f"secret: {created.secret}", file=out)
                    print(
                        "the secret is shown only now; the receiver verifies signatures with it",
                        file=sys.stderr,
                    )
            elif args.action == "list":
                found = await webhooks.subscriptions(sessions)
                print(as_json(found) if args.json else render_webhooks(found), file=out)
            elif args.action == "remove":
                removed = await webhooks.unsubscribe(sessions, args.id)
                print(f"{removed.id} removed: nothing more is sent to {removed.url}", file=out)
            elif args.action == "enable":
                enabled = await webhooks.enable(sessions, args.id)
                print(f"{enabled.id} active: pending deliveries go out now", file=out)
            elif args.action == "deliveries":
                log = await webhooks.deliveries(sessions, args.id, max(1, min(args.limit, 500)))
                print(as_json(log) if args.json else render_deliveries(log), file=out)
            elif args.action == "rotate-secret":
                await _rotate(sessions, settings, args, out)
            else:
                queued = await webhooks.redeliver(sessions, args.delivery)
                print(f"delivery {queued.id} ({queued.webhook_id}) queued again", file=out)
        except webhooks.TargetRefused as exc:
            raise CommandError(str(exc), EXIT_INVALID) from None
        except (webhooks.UnknownWebhook, webhooks.WebhookConflict) as exc:
            raise CommandError(str(exc)) from None


async def _rotate(
    sessions: SessionFactory, settings: Settings, args: argparse.Namespace, out: TextIO
) -> None:
    from pydantic import ValidationError

    from models.webhooks import RotateSecretIn
    from services import webhooks

    try:
        keep = RotateSecretIn(keep_old_for_seconds=args.keep_old_for).keep_old_for()
    except ValidationError as exc:
        problems = "; ".join(e["msg"] for e in exc.errors())
        raise CommandError(f"--keep-old-for (seconds, 0 to a week): {problems}", EXIT_INVALID) from None
    rotated = await webhooks.rotate_secret(sessions, settings, args.id, keep)
    print(f"{rotated.id} -> {rotated.url}: a new secret", file=out)
    print(f"secret: {rotated.secret}", file=out)
    until = rotated.previous_secret_until
    print(
        "the secret is shown only now; "
        + (
            f"the old one also signs until {until:%Y-%m-%d %H:%M} UTC"
            if until
            else "the old one no longer signs"
        ),
        file=sys.stderr,
    )


def _request(args: argparse.Namespace) -> WebhookIn:
    from pydantic import ValidationError

    from models.webhooks import WebhookIn

    try:
        return WebhookIn(url=args.url, events=args.events, description=args.description)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise CommandError(problems, EXIT_INVALID) from None
