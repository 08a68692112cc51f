"""The console's dashboard, `GET /console/dashboard`: what the operation looks like now, for a signed-in
support or admin session (`api/console_session.py`). The figures are `domain/dashboard.py`'s; the
charts are SVG drawn here and in `api/templates/dashboard.html`, no script. The page reloads itself
every `REFRESH_SECONDS` (the `Refresh` header). It also shows the headline figures of the business
report for the last `REPORT_DAYS` days (`domain/reports.py`, the same code as `starter.py report`), and
`GET /console/reports?since=&until=` downloads the whole report as one HTML file (`domain/report_html.py`).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, Response
from fastapi.templating import Jinja2Templates

from api import console_session
from api.routes.console import PAGE_HEADERS
from api.state import AppState, app_state
from domain.dashboard import Dashboard, dashboard
from domain.reports import Period, Report, ReportError, Stage, build_report, parse_period
from models.money import money_text

router = APIRouter(prefix="/console", include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).resolve().parents[1] / "templates")
templates.env.filters["money"] = money_text  # amounts as the API writes them: "89.90"
State = Annotated[AppState, Depends(app_state)]

REFRESH_SECONDS = 30
REPORT_DAYS = 30  # the dashboard's report figures: orders placed in the last 30 UTC days, today included
SERIES = (("placed", "#4269d0"), ("shipped", "#efb118"), ("delivered", "#3ca951"))
_HEADERS = {**PAGE_HEADERS, "Refresh": str(REFRESH_SECONDS)}  # the console's, and it reloads itself


@router.get("/dashboard")
async def dashboard_page(request: Request, state: State) -> Response:
    who = await console_session.viewer(request, state)
    figures = await run_in_threadpool(dashboard, state.reads)
    today = figures.at.date()
    period = Period(today - timedelta(days=REPORT_DAYS - 1), today)
    report = await run_in_threadpool(
        build_report, state.reads, period, state.settings.delivery_sla, figures.at
    )
    context = {
        "report": report,
        "to_delivery": report.cycle(Stage.placed_to_delivered),
        "who": who,
        "message": "",
        "csrf": console_session.csrf_token(request),
        "d": figures,
        "status_chart": status_chart(figures),
        "hour_chart": hour_chart(figures),
        "series": SERIES,
        "refresh_seconds": REFRESH_SECONDS,
        "ago": lambda at: _ago(figures.at, at),
    }
    return templates.TemplateResponse(request, "dashboard.html", context, headers=_HEADERS)


@router.get("/reports")
async def report_download(
    request: Request, state: State, since: str | None = None, until: str | None = None
) -> Response:
    """The business report as a self-contained HTML file, for the orders placed between `since` and
    `until` (UTC days, YYYY-MM-DD; both optional)."""
    await console_session.viewer(request, state)
    try:
        period = parse_period(since or None, until or None, ("since", "until"))
    except ReportError as exc:
        return Response(str(exc), status_code=400, media_type="text/plain", headers=PAGE_HEADERS)
    report = await run_in_threadpool(build_report, state.reads, period, state.settings.delivery_sla)
    html = await run_in_threadpool(_render, report)
    name = f"oms-report-{period.since or 'start'}-{period.until or report.generated_at.date()}.html"
    return HTMLResponse(
        html, headers={**PAGE_HEADERS, "Content-Disposition": f'attachment; filename="{name}"'}
    )


def _render(report: Report) -> str:
    # jinja and, where the `analytics` extra is installed, matplotlib: loaded when the first report is
    # drawn; without the extra the page has the tables and says where the charts went
    from domain.report_html import render_html

    return render_html(report)


def status_chart(d: Dashboard, width: int = 640, bar: int = 22, label: int = 150) -> dict[str, Any]:
    """Horizontal bars, one per status, longest first."""
    top = max(d.by_status.values(), default=0) or 1
    room = width - label - 60
    bars = [
        {
            "label": status.replace("_", " "),
            "count": n,
            "y": i * (bar + 6),
            "w": max(1, round(room * n / top)),
        }
        for i, (status, n) in enumerate(d.by_status.items())
    ]
    return {"width": width, "height": max(len(bars), 1) * (bar + 6), "bar": bar, "label": label, "bars": bars}


def hour_chart(d: Dashboard, width: int = 760, height: int = 200) -> dict[str, Any]:
    """Grouped vertical bars: placed, shipped and delivered in each UTC hour of today."""
    left, bottom, top_pad = 36, 22, 10
    plot_h = height - bottom - top_pad
    slot = (width - left) / 24
    bar_w = max(2.0, (slot - 4) / len(SERIES))
    peak = max((max(h.placed, h.shipped, h.delivered) for h in d.today), default=0)
    scale = _nice(peak)
    bars = []
    for h in d.today:
        for k, (name, colour) in enumerate(SERIES):
            n = getattr(h, name)
            if not n:
                continue
            bar_h = plot_h * n / scale
            bars.append(
                {
                    "x": round(left + h.hour * slot + 2 + k * bar_w, 1),
                    "y": round(top_pad + plot_h - bar_h, 1),
                    "w": round(bar_w, 1),
                    "h": round(bar_h, 1),
                    "colour": colour,
                    "title": f"{h.hour:02d}:00-{h.hour:02d}:59 UTC: {n} {name}",
                }
            )
    ticks = [{"y": round(top_pad + plot_h - plot_h * v / scale, 1), "value": v} for v in _ticks(scale)]
    hours = [
        {"x": round(left + hour * slot + slot / 2, 1), "label": f"{hour:02d}"} for hour in range(0, 24, 3)
    ]
    return {
        "width": width,
        "height": height,
        "left": left,
        "base": top_pad + plot_h,
        "bars": bars,
        "ticks": ticks,
        "hours": hours,
        "now_x": round(left + (d.at.hour + d.at.minute / 60) * slot, 1),
    }


def _nice(peak: int) -> int:
    """A round top for the axis, at or above the peak."""
    for step in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000, 10000):
        if peak <= step * 4:
            return step * 4
    return peak


def _ticks(scale: int) -> list[int]:
    return [scale * i // 4 for i in range(5)]


def _ago(now: datetime, at: datetime) -> str:
    seconds = max(0, int((now - at).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"
