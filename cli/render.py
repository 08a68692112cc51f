"""What the commands print: plain-text tables and summaries for people, JSON for scripts.

The JSON output is the models' own serialisation (`as_json`); everything else a command prints about
its result is written here, so that the command modules only call, check and choose. The types are
imported for type checking only: a renderer is called with a result, by a command that has loaded them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

    from pydantic import BaseModel

    from config import Settings
    from domain.api_keys import KeyInfo
    from domain.codec_audit import CodecUse
    from domain.history_import import HistoryImportSummary
    from domain.journal import Journal
    from domain.outbox import MessageState
    from domain.reports import Period, Rate, Report
    from domain.shipments import QueuedShipment
    from encryption.keys import KeyRing
    from models.forecast import ApplyResult, ForecastView
    from models.fulfilment import ReportOutcome
    from models.imports import ImportStatus
    from models.orders import OrderSummary, OrderView
    from models.steps import PurchaseOrderView
    from models.stock import StockChange, StockLevel
    from models.versions import DeploymentVersions
    from models.webhooks import DeliveryView, WebhookView
    from services.reconcile import ReconcileReport


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [["" if v is None else str(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(value.ljust(widths[i]) for i, value in enumerate(row)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def as_json(value: BaseModel | Sequence[BaseModel] | dict[str, Any] | list[Any]) -> str:
    from pydantic import BaseModel

    if isinstance(value, BaseModel):
        return value.model_dump_json(indent=2)
    if isinstance(value, list) and value and isinstance(value[0], BaseModel):
        return json.dumps([v.model_dump(mode="json") for v in value], indent=2)
    return json.dumps(value, indent=2, default=str)


# ---- orders ----


def render_view(view: OrderView) -> str:
    from models.money import money_text as money  # loaded already, with the view's models

    total = f"{money(view.total)} {view.currency}" if view.total is not None else f"- {view.currency}"
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
                [(x.sku, x.name, x.quantity, money(x.unit_price), money(x.line_total)) for x in view.lines],
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
                        money(r.refund_amount),
                        r.reason,
                    )
                    for r in view.returns
                ],
            ),
        ]
    paid = view.payment
    parts += [
        "",
        f"payment: authorized {money(paid.authorized)}, captured {money(paid.captured)}, "
        f"refunded {money(paid.refunded)} "
        f"{view.currency}"
        + (f" (of which goodwill {money(paid.goodwill_refunded)})" if paid.goodwill_refunded else ""),
    ]
    parts += [
        f"goodwill refund {money(g.amount)} {g.currency} ({g.reason.value}{': ' + g.note if g.note else ''}) "
        f"{g.reference} by {g.by or '-'} at {g.at:%Y-%m-%d %H:%M} UTC"
        for g in view.goodwill_refunds
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


def render_order_list(found: Sequence[OrderSummary]) -> str:
    return table(
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
    )


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


# ---- support ----


def render_blocklist(entries: Sequence[tuple[str, str]]) -> str:
    return table(["EMAIL", "REASON"], entries)


# ---- warehouses and carriers ----


def render_queue(waiting: Sequence[QueuedShipment]) -> str:
    return table(
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
    )


def render_outcome(outcome: ReportOutcome) -> str:
    """What a report did, in the order's words (which name the shipment; else it is named here)."""
    return (
        outcome.detail
        if outcome.shipment_id in outcome.detail
        else f"{outcome.shipment_id}: {outcome.detail}"
    )


# ---- stock ----


def render_stock_levels(levels: Sequence[StockLevel]) -> str:
    return table(
        ["SKU", "WAREHOUSE", "ON HAND", "RESERVED", "AVAILABLE", "REORDER AT", "REORDER QTY", "COUNT"],
        [
            (
                s.sku,
                s.warehouse,
                s.on_hand,
                s.reserved,
                s.available,
                s.reorder_point,
                s.reorder_qty,
                f"due: {s.count_reason}" if s.count_requested_at else "",
            )
            for s in levels
        ],
    )


def render_stock_change(change: StockChange) -> str:
    level = change.level
    lines = [
        f"{level.sku}@{level.warehouse}: on hand {level.on_hand}, reserved {level.reserved}, "
        f"available {level.available}"
    ]
    if change.replenishing:
        lines.append(f"replenishment: {', '.join(change.replenishing)}")
    if change.backorders_served:
        lines.append(f"backorders now reserved: {', '.join(change.backorders_served)}")
    return "\n".join(lines)


def render_purchase_orders(purchase_orders: Sequence[PurchaseOrderView]) -> str:
    return table(
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
            for po in purchase_orders
        ],
    )


def render_forecast(
    views: list[ForecastView], settings: Settings, as_of: date, detail: bool, by_default: bool
) -> str:
    if not views:
        nothing = (
            f"no shipped demand in the {settings.forecast_history_days} days up to {as_of:%Y-%m-%d}: "
            "nothing to forecast"
        )
        if not by_default:
            return nothing
        # right after `make run` every parcel shipped today, and the default reads up to yesterday
        today = as_of + timedelta(days=1)
        return (
            f"{nothing} (yesterday, the last complete day: a forecast reads whole days). Parcels shipped"
            f" today count from tomorrow; to read them now: starter.py forecast --as-of {today:%Y-%m-%d}"
        )
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


# ---- reports and exports ----


def render_report(r: Report) -> str:
    """The report's text summary; every figure is in `--json`, the charts in `--html`."""
    from domain.reports import STAGE_LABELS

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
        return_reasons = [(x.reason, x.returns, x.units) for x in ret.by_reason]
        parts += ["", table(["RETURN REASON", "RETURNS", "UNITS"], return_reasons)]
    money = [
        (m.key, m.currency, m.authorized, m.captured, m.refunded, m.goodwill, m.voided, m.net)
        + (m.goods, m.tax, m.shipping, m.discounts)
        for m in r.revenue.totals + r.revenue.per_channel
    ]
    heads = ["LEDGER", "CURRENCY", "AUTHORIZED", "CAPTURED", "REFUNDED", "GOODWILL", "VOIDED", "NET"]
    parts += [
        "",
        table(heads + ["GOODS", "TAX", "SHIPPING", "DISCOUNTS"], money)
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


def render_journal_export(entries: Journal, period: Period, file: Path) -> str:
    totals = [(x.kind.value, x.currency, x.rows, x.amount) for x in entries.totals]
    return "\n".join(
        [
            f"wrote {len(entries.rows)} movements ({period.describe()}) to {file}",
            table(["KIND", "CURRENCY", "ROWS", "AMOUNT"], totals),
            "the totals equal the payment ledger's (approved movements)",
        ]
    )


# ---- administration ----


def render_api_keys(keys: Sequence[KeyInfo]) -> str:
    rows = [(k.name, k.role.value, k.created_at, k.revoked_at or "") for k in keys]
    return table(["NAME", "ROLE", "CREATED", "REVOKED"], rows)


def render_key_ring(ring: KeyRing) -> str:
    rows = [(key_id, "encrypts and decrypts" if n == 0 else "decrypts") for n, key_id in enumerate(ring.ids)]
    return table(["KEY ID", "USE"], rows)


def render_codec_uses(uses: Sequence[CodecUse]) -> str:
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
    return table(["AT (UTC)", "WHO", "VIA", "OP", "PAYLOADS", "WORKFLOWS", "OUTCOME"], rows)


def render_reconcile(report: ReconcileReport) -> str:
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


def render_versions(found: DeploymentVersions) -> str:
    from models.versions import VersionStatus

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
    retiring = (VersionStatus.draining, VersionStatus.drained)
    retired = [
        v.build_id for v in found.versions if v.build_id is not None and v.drained and v.status in retiring
    ]
    if retired:
        parts += ["", f"nothing open on {', '.join(retired)}: those workers may stop"]
    return "\n".join(parts)


def render_temporal_target(target: dict[str, Any]) -> str:
    """`doctor`'s first lines: where the settings point and with what (connection.TemporalTarget.describe)."""

    def yes_no(flag: object) -> str:
        return "yes" if flag else "no"

    tls = "on" if target["tls"] else "off"
    if target["tls"]:
        tls += f", server name {target['server_name'] or '(from the address)'}"
        tls += f", CA {target['server_ca_cert'] or '(the system roots)'}"
    return "\n".join(
        [
            f"address      {target['address']}",
            f"namespace    {target['namespace']}",
            f"profile      {target['profile']}",
            f"tls          {tls}",
            f"client cert  {yes_no(target['client_cert'])}",
            f"api key      {yes_no(target['api_key'])}",
        ]
    )


def render_webhooks(found: Sequence[WebhookView]) -> str:
    rows = [
        (
            w.id,
            w.status.value,
            w.url,
            ", ".join(w.events),
            f"{w.failing_since:%Y-%m-%d %H:%M}" if w.failing_since else "",
            w.disabled_reason or "",
        )
        for w in found
    ]
    return table(["ID", "STATUS", "URL", "EVENTS", "FAILING SINCE", "WHY DISABLED"], rows)


def render_messages(found: Sequence[MessageState]) -> str:
    rows = [
        (
            m.id,
            f"{m.created_at:%Y-%m-%d %H:%M}",
            m.kind,
            m.recipient,
            m.delivery.value,
            m.attempts,
            f"{m.failure_code.value}: {m.last_error}" if m.failure_code else (m.last_error or ""),
        )
        for m in found
    ]
    return table(["ID", "WRITTEN", "MESSAGE", "TO", "DELIVERY", "TRIES", "LAST ERROR"], rows)


def render_deliveries(found: Sequence[DeliveryView]) -> str:
    lines = []
    for d in found:
        last = d.log[0] if d.log else None
        lines.append(
            (
                d.id,
                d.webhook_id,
                d.event_type.value,
                d.order_id or "",
                d.status.value,
                d.attempts,
                "" if last is None else (last.status_code or last.error or ""),
                "" if last is None else f"{last.latency_ms} ms",
                "" if last is None else (last.response_excerpt or "")[:40],
            )
        )
    headers = ["ID", "WEBHOOK-ID", "TYPE", "ORDER", "STATUS", "ATTEMPTS", "LAST ANSWER", "LATENCY", "EXCERPT"]
    return table(headers, lines)
