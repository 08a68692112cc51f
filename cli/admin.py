"""Running the system: `migrate`, `apikey`, `codec` (the payload keys), `reconcile` (after a terminate),
worker versioning, `versions` and `set-current-version`, and `doctor`, the check of the connection to
Temporal (db.py, domain/api_keys.py, encryption/, services/reconcile.py, services/versions.py,
connection.py, docs/versioning.md)."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, TextIO

from cli.common import CLI_ACTOR, EXIT_INVALID, CommandError, database
from models.choices import Role

if TYPE_CHECKING:
    from cli.common import Subcommands
    from config import Settings


def add_migrate(sub: Subcommands) -> None:
    sub.add_parser("migrate", help="apply the database migrations").set_defaults(handler=cmd_migrate)


def add_apikey(sub: Subcommands) -> None:
    apikey = sub.add_parser("apikey", help="API keys of the HTTP API")
    apikey.set_defaults(handler=cmd_apikey)
    actions = apikey.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="create a key (shown once) for a role")
    create.add_argument("--role", required=True, choices=[r.value for r in Role])
    create.add_argument("--name", required=True)
    create.add_argument("--json", action="store_true")
    actions.add_parser("revoke", help="revoke the key in use under this name").add_argument("name")
    actions.add_parser("list", help="keys by name and role (never the keys themselves)")


def add_codec(sub: Subcommands) -> None:
    codec = sub.add_parser("codec", help="the payload encryption keys")
    codec.set_defaults(handler=cmd_codec)
    actions = codec.add_subparsers(dest="action", required=True)
    actions.add_parser("keys", help="the key ids in use (never the keys): which one encrypts")
    actions.add_parser("generate", help="print a new OMS_CODEC_KEYS setting for a fresh deployment")
    audit = actions.add_parser(
        "audit", help="the codec server's latest decodes and encodes: who, which workflows"
    )
    audit.add_argument("--limit", type=int, default=50)
    audit.add_argument("--json", action="store_true")
    actions.add_parser(
        "rotate",
        help="put a new key in front: prints the new OMS_CODEC_KEYS setting, or rewrites the local key file",
    )


def add_reconcile(sub: Subcommands) -> None:
    settle = sub.add_parser(
        "reconcile", help="settle orders whose run was terminated, failed or cancelled (after terminate)"
    )
    settle.add_argument("--json", action="store_true")
    settle.add_argument("--dry-run", action="store_true", help="report what would be settled, change nothing")
    settle.set_defaults(handler=cmd_reconcile)


DEPLOYMENT_HELP = "the worker deployment (default: OMS_WORKER_DEPLOYMENT)"


def add_versions(sub: Subcommands) -> None:
    listed = sub.add_parser(
        "versions", help="the worker deployment's builds, which is current, and the open orders on each"
    )
    listed.add_argument("--deployment", help=DEPLOYMENT_HELP)
    listed.add_argument("--json", action="store_true")
    listed.set_defaults(handler=cmd_versions)


def add_set_current_version(sub: Subcommands) -> None:
    current = sub.add_parser(
        "set-current-version", help="make a build current: new orders start on it, running ones stay put"
    )
    current.add_argument("build_id")
    current.add_argument("--deployment", help=DEPLOYMENT_HELP)
    current.set_defaults(handler=cmd_set_current_version)


async def cmd_migrate(_: argparse.Namespace, settings: Settings, out: TextIO) -> None:
    from db import migrate

    migrate(settings.database_url)
    print(f"database is at the latest migration ({_redact(settings.database_url)})", file=out)


def _redact(url: str) -> str:
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    return f"{scheme}://***@{rest.split('@', 1)[1]}"


async def cmd_apikey(args: argparse.Namespace, settings: Settings, out: TextIO) -> None:
    from cli.render import as_json, render_api_keys
    from domain import api_keys

    with database(settings) as sessions:
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
        print(render_api_keys(keys), file=out)


async def cmd_codec(args: argparse.Namespace, settings: Settings, out: TextIO) -> None:
    from dataclasses import asdict  # dataclasses loads inspect: not for every --help

    from cli.render import as_json, render_codec_uses, render_key_ring
    from encryption.keys import CodecKeyError, format_keys, load_key_ring, new_key_ring
    from encryption.keys import rotate as rotate_keys

    if args.action == "audit":
        from domain.codec_audit import recent_codec_uses

        with database(settings) as sessions:
            uses = recent_codec_uses(sessions, max(1, min(args.limit, 1000)))
        if args.json:
            print(as_json([asdict(u) for u in uses]), file=out)
            return
        print(render_codec_uses(uses), file=out)
        return
    setting = settings.codec_keys.get_secret_value() if settings.codec_keys else None
    source = "OMS_CODEC_KEYS" if setting else str(settings.codec_key_file)
    try:
        if args.action == "keys":
            print(render_key_ring(load_key_ring(setting, settings.codec_key_file)), file=out)
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


async def cmd_reconcile(args: argparse.Namespace, settings: Settings, out: TextIO) -> None:
    """Settle what closed runs left held (see services/reconcile.py); exit 1 if something could not be."""
    from cli.render import as_json, render_reconcile
    from connection import connect
    from services import reconcile

    client = await connect(settings)
    with database(settings) as sessions:
        report = await reconcile.reconcile(client, sessions, dry_run=args.dry_run)
    print(as_json(report) if args.json else render_reconcile(report), file=out)
    if report.problems:
        raise CommandError(f"{report.problems} problem(s) left for a person; see the report")


async def cmd_versions(args: argparse.Namespace, settings: Settings, out: TextIO) -> None:
    from cli.render import as_json, render_versions
    from connection import connect
    from services import versions

    deployment = _deployment(args, settings)
    found = await versions.deployment_versions(await connect(settings), deployment)
    print(as_json(found) if args.json else render_versions(found), file=out)


async def cmd_set_current_version(args: argparse.Namespace, settings: Settings, out: TextIO) -> None:
    from config import check_build_id
    from connection import connect
    from services import versions

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
    except versions.RoutingPropagationPending as exc:  # made current all the same: exit 0, say so
        print(str(exc), file=out)
        return
    was = f"build {previous}" if previous else "unversioned workers"
    print(f"{deployment}:{build_id} is current (before: {was}); new orders start on it", file=out)


def add_doctor(sub: Subcommands) -> None:
    sub.add_parser(
        "doctor", help="check the connection to Temporal: where, with what credentials, the server's answer"
    ).set_defaults(handler=cmd_doctor)


async def cmd_doctor(args: argparse.Namespace, settings: Settings, out: TextIO) -> None:
    """Where the settings point, then whether the server answers there; a failure exits 1 with the reason
    (connection.TemporalUnavailable, as every command that connects)."""
    from cli.render import render_temporal_target
    from connection import check_server, connect, temporal_target

    print(render_temporal_target(temporal_target(settings).describe()), file=out)
    out.flush()  # what was tried stays on the screen above the error, if there is one
    client = await connect(settings)
    checked = await check_server(client)
    print(
        f"server       Temporal {checked['server_version']}; namespace {checked['namespace']}"
        f" {checked['namespace_state']}",
        file=out,
    )


def _deployment(args: argparse.Namespace, settings: Settings) -> str:
    from config import check_deployment_name

    try:
        return check_deployment_name(args.deployment or settings.worker_deployment)
    except ValueError as exc:
        raise CommandError(str(exc), EXIT_INVALID) from None
