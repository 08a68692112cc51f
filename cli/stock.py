"""Goods: `catalog load`, `stock` (levels, check, adjust, receive, write-off), `purchase-orders` and the
demand `forecast` (domain/catalog.py, domain/stock.py, services/stock.py, services/forecast.py)."""

from __future__ import annotations

import argparse
from collections.abc import Awaitable
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, TextIO, TypeVar

from cli.common import EXIT_INVALID, CommandError, database, first_problem

if TYPE_CHECKING:
    from cli.common import Subcommands
    from config import Settings
    from db import SessionFactory

T = TypeVar("T")


def add_catalog(sub: Subcommands) -> None:
    catalog = sub.add_parser("catalog", help="catalog administration").add_subparsers(
        dest="action", required=True
    )
    load = catalog.add_parser("load", help="load or update warehouses, products and stock")
    load.add_argument("file", type=Path)
    load.add_argument(
        "--if-empty", action="store_true", help="only into a database without products (else skip it)"
    )
    load.set_defaults(handler=cmd_catalog)


def add_stock(sub: Subcommands) -> None:
    stock = sub.add_parser("stock", help="stock levels per sku and warehouse; check, adjust, receive")
    stock.add_argument("--sku")
    stock.add_argument("--json", action="store_true")
    stock.set_defaults(handler=cmd_stock)
    stock_actions = stock.add_subparsers(dest="action")
    stock_actions.add_parser(
        "check", help="verify the stock ledger; exit 1 if anything disagrees"
    ).set_defaults(handler=cmd_stock_check)
    adjust = stock_actions.add_parser("adjust", help="a cycle-count correction of on-hand stock")
    adjust.add_argument("sku")
    adjust.add_argument("warehouse")
    adjust.add_argument("delta", type=int)
    adjust.add_argument("--reason", required=True)
    adjust.set_defaults(handler=cmd_stock_adjust)
    receive = stock_actions.add_parser("receive", help="book received goods into stock")
    receive.add_argument("sku")
    receive.add_argument("warehouse")
    receive.add_argument("quantity", type=int)
    receive.add_argument("--po", help="the purchase order these goods fill")
    receive.set_defaults(handler=cmd_stock_receive)
    write_off = stock_actions.add_parser("write-off", help="damaged, lost or expired units leave the shelf")
    write_off.add_argument("sku")
    write_off.add_argument("warehouse")
    write_off.add_argument("quantity", type=int)
    write_off.add_argument("--reason", required=True)
    write_off.set_defaults(handler=cmd_stock_write_off)


def add_purchase_orders(sub: Subcommands) -> None:
    purchase_orders = sub.add_parser("purchase-orders", help="replenishment purchase orders")
    purchase_orders.add_argument("--json", action="store_true")
    purchase_orders.set_defaults(handler=cmd_purchase_orders)


def add_forecast(sub: Subcommands) -> None:
    forecast = sub.add_parser(
        "forecast", help="demand forecast and reorder point recommendations per sku and warehouse"
    )
    forecast.add_argument("--sku", help="only this SKU (with it: the forecast of every day is shown)")
    forecast.add_argument("--as-of", help="the last day of demand to read (YYYY-MM-DD; default: yesterday)")
    forecast.add_argument(
        "--apply", action="store_true", help="write the recommendations to the stock rows (audited)"
    )
    forecast.add_argument("--json", action="store_true")
    forecast.set_defaults(handler=cmd_forecast)


async def cmd_catalog(args: argparse.Namespace, settings: Settings, out: TextIO) -> None:
    from pydantic import ValidationError

    from domain.catalog import CatalogError, load_catalog
    from models.catalog import CatalogFile

    try:
        catalog = CatalogFile.model_validate_json(args.file.read_text())
    except OSError as exc:
        raise CommandError(f"cannot read {args.file}: {exc.strerror}", EXIT_INVALID) from None
    except ValidationError as exc:
        raise CommandError(f"invalid catalog file: {first_problem(exc)}", EXIT_INVALID) from None
    with database(settings) as sessions:
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
    from sqlalchemy import func, select

    from models import tables as t

    with sessions() as session:
        return session.scalar(select(func.count()).select_from(t.Product)) or 0


async def cmd_stock(args: argparse.Namespace, settings: Settings, out: TextIO) -> None:
    from cli.render import as_json, render_stock_levels
    from domain import stock

    with database(settings) as sessions:
        levels = stock.stock_levels(sessions, args.sku)
    if args.json:
        print(as_json(levels), file=out)
        return
    print(render_stock_levels(levels), file=out)


async def cmd_stock_check(_: argparse.Namespace, settings: Settings, out: TextIO) -> None:
    from domain import stock

    with database(settings) as sessions:
        problems = stock.check_stock(sessions)
    if problems:
        print("\n".join(problems), file=out)
        raise CommandError(f"stock ledger check found {len(problems)} problem(s)")
    print("stock ledger check passed: levels equal the movements, no reservation left behind", file=out)


async def cmd_stock_adjust(args: argparse.Namespace, settings: Settings, out: TextIO) -> None:
    from cli.render import render_stock_change
    from connection import connect
    from services import stock as stock_changes

    with database(settings) as sessions:
        change = await _stock_change(
            stock_changes.adjust(
                await connect(settings), sessions, settings, args.sku, args.warehouse, args.delta, args.reason
            )
        )
    print(render_stock_change(change), file=out)


async def cmd_stock_receive(args: argparse.Namespace, settings: Settings, out: TextIO) -> None:
    from cli.render import render_stock_change
    from connection import connect
    from services import stock as stock_changes

    with database(settings) as sessions:
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
    print(render_stock_change(change), file=out)


async def cmd_stock_write_off(args: argparse.Namespace, settings: Settings, out: TextIO) -> None:
    from cli.render import render_stock_change
    from connection import connect
    from services import stock as stock_changes

    with database(settings) as sessions:
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
    print(render_stock_change(change), file=out)


async def _stock_change(change: Awaitable[T]) -> T:
    """A stock change; an invalid one exits 2, a refused one or an unknown purchase order 1."""
    from domain import stock
    from services import orders

    try:
        return await change
    except stock.StockError as exc:
        raise CommandError(str(exc), EXIT_INVALID) from None
    except (orders.Refused, LookupError, TimeoutError) as exc:
        raise CommandError(str(exc)) from None


async def cmd_purchase_orders(args: argparse.Namespace, settings: Settings, out: TextIO) -> None:
    from cli.render import as_json, render_purchase_orders
    from domain import stock

    with database(settings) as sessions:
        purchase_orders = stock.purchase_orders(sessions)
    if args.json:
        print(as_json(purchase_orders), file=out)
        return
    print(render_purchase_orders(purchase_orders), file=out)


async def cmd_forecast(args: argparse.Namespace, settings: Settings, out: TextIO) -> None:
    """Refresh the recommendations and show them; with --apply, write them to the stock rows."""
    import asyncio

    from cli.render import as_json, render_applied, render_forecast
    from connection import connect
    from domain.reorder_policy import ForecastError
    from extras import ExtraMissing
    from services import forecast as forecasting

    as_of = _day(args.as_of, "--as-of") if args.as_of else forecasting.last_complete_day()
    with database(settings) as sessions:
        try:
            views = await asyncio.to_thread(forecasting.refresh, sessions, settings, args.sku, as_of)
            applied = (
                await forecasting.apply(await connect(settings), sessions, settings, args.sku)
                if args.apply
                else None
            )
        except ForecastError as exc:
            raise CommandError(str(exc), EXIT_INVALID) from None
        except ExtraMissing as exc:  # the runtime image: one line saying what to install, no traceback
            raise CommandError(str(exc)) from None
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
    print(
        render_forecast(views, settings, as_of, detail=args.sku is not None, by_default=not args.as_of),
        file=out,
    )
    if applied is not None:
        print(render_applied(applied), file=out)


def _day(text: str, option: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise CommandError(f"{option} must be a day written YYYY-MM-DD, not {text!r}", EXIT_INVALID) from None
