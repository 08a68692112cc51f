"""The report as one static HTML file (`starter.py report --html FILE`, `GET /console/reports`): the
template `domain/templates/report.html`, a table for every figure, and the charts of
domain/report_charts.py as inline SVG. Nothing is fetched from elsewhere (no script, stylesheet, font or
image link): the file opens offline and can be mailed as it is.

The charts need matplotlib, the `analytics` extra's: where it is not installed (the runtime image of
the API and the order worker) the page has every table and says where the charts went.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from domain.reports import LIST_LIMIT, STAGE_LABELS, GroupBy, Report
from extras import Extra, ExtraMissing, installed

TEMPLATES = Path(__file__).resolve().parent / "templates"
# what the page says in place of the charts without the extra; `report --html` prints it too
CHARTS_MISSING = str(ExtraMissing(Extra.analytics, "Drawing the charts"))


@lru_cache
def _environment() -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]))
    env.filters["pct"] = lambda v: "–" if v is None else f"{v * 100:.1f} %"
    return env


def charts_available() -> bool:
    return installed(Extra.analytics)


def render_html(report: Report) -> str:
    drawn = charts_available()
    charts: dict[str, str | None] = {}
    if drawn:
        from domain.report_charts import charts as draw  # matplotlib: loaded when the first report is drawn

        charts = draw(report)
    return (
        _environment()
        .get_template("report.html")
        .render(
            r=report,
            charts={name: Markup(svg) if svg else None for name, svg in charts.items()},
            charts_missing=None if drawn else CHARTS_MISSING,
            stage_labels=STAGE_LABELS,
            group_all=GroupBy.all,
            limit=LIST_LIMIT,
        )
    )
