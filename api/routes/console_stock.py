"""The support console's stock pages: levels per SKU and warehouse (with the reorder point, low rows
marked LOW), one SKU's movements newest first, and — for an admin session only — the adjust and receive
forms, which go through the same functions as `POST /stock/adjustments` and `POST /stock/receipts` and
the CLI (`services.stock`). Support sees levels and movements; its POSTs are refused (403).

Session, CSRF, page headers and the page layout are the console's (`api/routes/console.py`). No script.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from pydantic import BaseModel, ValidationError
from sqlalchemy import select

from api import console_session
from api.routes.console import NO_CSRF, State, render_page, see_other
from api.state import AppState
from db import SessionFactory
from domain import stock
from domain.api_keys import Principal, Role
from models import tables as t
from models.stock import StockAdjustmentIn, StockMovementView, StockReceiptIn
from services import stock as stock_changes
from services.orders import Refused

router = APIRouter(prefix="/console/stock", include_in_schema=False)

LEVELS_SHOWN = 500  # without a SKU filter the page lists at most this many rows
MOVEMENTS_SHOWN = 200
_ADMIN_ONLY = "only an admin session may change stock: sign in with an admin key"


class LevelRow(BaseModel):
    sku: str
    warehouse: str
    on_hand: int
    reserved: int
    available: int
    reorder_point: int | None
    low: bool  # available at or below the reorder point (when replenishment starts)
    count_reason: str | None = None  # a cycle count is due (a short pick found the shelf wanting)


class _Invalid(ValueError):
    """A form field the page refuses before any model sees it."""


@router.get("")
async def stock_page(request: Request, state: State, sku: str = "") -> Response:
    who = await console_session.viewer(request, state)
    wanted = sku.strip()
    context: dict[str, Any] = {"who": who, "sku": wanted, "levels": [], "more": False}
    if len(wanted) > 64:
        return render_page(
            request, "console/stock.html", {**context, "message": "SKU: at most 64 characters"}, 422
        )
    levels = await run_in_threadpool(_levels, state.reads, wanted or None)
    context["more"] = len(levels) > LEVELS_SHOWN
    context["levels"] = levels[:LEVELS_SHOWN]
    context["shown"] = LEVELS_SHOWN
    return render_page(request, "console/stock.html", context, 200)


@router.get("/{sku}")
async def sku_page(request: Request, state: State, sku: str) -> Response:
    who = await console_session.viewer(request, state)
    return await _sku_page(request, state, who, sku)


@router.post("/{sku}/adjust")
async def adjust_action(
    request: Request,
    state: State,
    sku: str,
    csrf: Annotated[str, Form()] = "",
    warehouse: Annotated[str, Form()] = "",
    delta: Annotated[str, Form()] = "",
    reason: Annotated[str, Form()] = "",
) -> Response:
    form = {"form": "adjust", "warehouse": warehouse, "delta": delta, "reason": reason}

    async def act(who: Principal) -> None:
        try:
            count = int(delta.strip())
        except ValueError:
            raise _Invalid(f"delta: {delta.strip()!r} is not a whole number") from None
        # 0 is the domain's to judge: it confirms a count a short pick asked for, and is refused elsewhere
        body = StockAdjustmentIn(sku=sku, warehouse=warehouse, delta=count, reason=reason)
        await stock_changes.adjust(
            state.client,
            state.sessions,
            state.settings,
            body.sku,
            body.warehouse,
            body.delta,
            f"{body.reason} (by {who.name})",  # as POST /stock/adjustments records it
        )

    return await _act(request, state, sku, csrf, form, act)


@router.post("/{sku}/receive")
async def receive_action(
    request: Request,
    state: State,
    sku: str,
    csrf: Annotated[str, Form()] = "",
    warehouse: Annotated[str, Form()] = "",
    quantity: Annotated[str, Form()] = "",
    purchase_order: Annotated[str, Form()] = "",
) -> Response:
    form = {"form": "receive", "warehouse": warehouse, "quantity": quantity, "purchase_order": purchase_order}

    async def act(who: Principal) -> None:
        try:
            count = int(quantity.strip())
        except ValueError:
            raise _Invalid(f"quantity: {quantity.strip()!r} is not a whole number") from None
        body = StockReceiptIn(
            sku=sku,
            warehouse=warehouse,
            quantity=count,
            purchase_order=purchase_order.strip() or None,
        )
        if body.purchase_order is None:
            await stock_changes.receive(state.client, state.sessions, body.sku, body.warehouse, body.quantity)
            return
        # like the CLI: wait until the purchase order's replenishment has booked the goods in
        await stock_changes.receive_purchase_order(
            state.client, state.sessions, body.purchase_order, body.sku, body.warehouse, body.quantity
        )

    return await _act(request, state, sku, csrf, form, act)


async def _act(
    request: Request,
    state: AppState,
    sku: str,
    csrf: str,
    form: dict[str, str],
    act: Callable[[Principal], Awaitable[None]],
) -> Response:
    """Session, admin role, CSRF token; then the change and 303 back to the SKU page. A refusal shows
    the SKU page again with the reason (and the form as sent); nothing was changed."""
    who = await console_session.viewer(request, state)
    if who.role != Role.admin:
        return await _sku_page(request, state, who, sku, _ADMIN_ONLY, 403)
    if not console_session.csrf_matches(request, csrf):
        return await _sku_page(request, state, who, sku, NO_CSRF, 403)
    try:
        await act(who)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'form'}: {e['msg']}" for e in exc.errors()
        )
        return await _sku_page(request, state, who, sku, f"Not done: {problems}", 422, form)
    except (_Invalid, stock.StockError, LookupError) as exc:
        return await _sku_page(request, state, who, sku, f"Not done: {exc}", 422, form)
    except Refused as exc:
        return await _sku_page(request, state, who, sku, f"Refused: {exc}", 409, form)
    except TimeoutError as exc:
        return await _sku_page(request, state, who, sku, f"Not confirmed: {exc}", 504, form)
    return see_other(f"/console/stock/{quote(sku, safe='')}")


async def _sku_page(
    request: Request,
    state: AppState,
    who: Principal,
    sku: str,
    message: str = "",
    status: int = 200,
    form: dict[str, str] | None = None,
) -> Response:
    found = await run_in_threadpool(_sku_facts, state.reads, sku)
    if found is None:
        context = {"who": who, "sku": sku, "message": message or f"unknown SKU {sku}"}
        return render_page(request, "console/stock_sku.html", {**context, "product": None}, 404)
    product, levels, movements, warehouses = found
    context = {
        "who": who,
        "message": message,
        "sku": sku,
        "product": product,
        "levels": levels,
        "movements": movements,
        "shown": MOVEMENTS_SHOWN,
        "warehouses": warehouses,
        "can_change": who.role == Role.admin,
        "form": form or {},
        "sku_url": f"/console/stock/{quote(sku, safe='')}",
    }
    return render_page(request, "console/stock_sku.html", context, status)


# ---- reads (the read-only engine): levels as domain.stock reports them, plus reorder points ----


def _levels(sessions: SessionFactory, sku: str | None) -> list[LevelRow]:
    return [
        LevelRow(
            **level.model_dump(),
            low=level.reorder_point is not None and level.available <= level.reorder_point,
        )
        for level in stock.stock_levels(sessions, sku)
    ]


def _sku_facts(
    sessions: SessionFactory, sku: str
) -> tuple[t.Product, list[LevelRow], list[StockMovementView], list[str]] | None:
    with sessions() as session:
        product = session.get(t.Product, sku)
        if product is None:
            return None
        session.expunge(product)
        warehouses = list(session.scalars(select(t.Warehouse.code).order_by(t.Warehouse.code)))
    movements = stock.stock_movements(sessions, sku, MOVEMENTS_SHOWN)
    return product, _levels(sessions, sku), movements, warehouses
