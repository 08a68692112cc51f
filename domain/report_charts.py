"""The report's charts, drawn by matplotlib as inline SVG (domain/report_html.py puts them in the page).
matplotlib is the `analytics` extra's: this module is imported only where it is installed.
"""

from __future__ import annotations

import io
from datetime import date
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files, never a window; set before pyplot is imported

import matplotlib.dates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402

from domain.reports import STAGE_LABELS, Report, Stage  # noqa: E402

COLOURS = ("#4269d0", "#efb118", "#ff725c", "#6cc5b0", "#3ca951", "#ff8ab7", "#a463f2", "#97bbf5")
plt.rcParams.update({"svg.hashsalt": "oms-report", "font.size": 9, "figure.dpi": 96})


def charts(report: Report) -> dict[str, str | None]:
    """Every chart of the page by name, None where the period has nothing to chart."""
    return {
        "funnel": funnel_chart(report),
        "revenue": revenue_chart(report),
        "cycle": cycle_chart(report),
        "feedback": feedback_chart(report),
        "returns": returns_chart(report),
    }


def _svg(fig: plt.Figure) -> str:
    """The figure as an <svg> element to put inline (no XML prolog, no DOCTYPE, no metadata links)."""
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None, "Creator": None})
    plt.close(fig)
    text = buffer.getvalue()
    text = text[text.index("<svg") :]
    start, end = text.find("<metadata>"), text.find("</metadata>")
    if start != -1 and end != -1:
        text = text[:start] + text[end + len("</metadata>") :]
    return text


def _bars(labels: list[str], values: list[float], title: str, colour: str = COLOURS[0]) -> str:
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(labels) + 0.9))
    ax.barh(labels[::-1], values[::-1], color=colour)
    for y, value in enumerate(values[::-1]):
        ax.text(value, y, f" {value:g}", va="center")
    ax.set_title(title, loc="left")
    ax.spines[["top", "right"]].set_visible(False)
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.margins(x=0.12)
    return _svg(fig)


def funnel_chart(report: Report) -> str | None:
    f = report.funnel
    if not f.placed:
        return None
    steps = ["placed", "rejected", "held", "backordered", "cancelled", "shipped", "delivered", "returned"]
    return _bars(steps, [getattr(f, s) for s in steps], "Orders at each step")


def revenue_chart(report: Report) -> str | None:
    rows = report.revenue.per_day
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(7, 3))
    for n, currency in enumerate(sorted({r.currency for r in rows})):
        days = [r for r in rows if r.currency == currency]
        marker = "o" if len(days) < 40 else None
        when = [date.fromisoformat(r.key) for r in days]  # real dates: a quiet day is a gap, not a neighbour
        # matplotlib plots dates through its units registry; its stubs only know numbers
        dates_axis: Any = when
        ax.plot(dates_axis, [float(r.net) for r in days], marker=marker, color=COLOURS[n % 8])
        ax.plot(
            dates_axis,
            [float(r.captured) for r in days],
            linestyle="--",
            color=COLOURS[n % 8],
            alpha=0.5,
        )
        ax.plot([], [], color=COLOURS[n % 8], label=f"net {currency} (dashed: captured)")
    ax.set_title("Revenue per day (UTC)", loc="left")
    ax.legend(loc="lower left", bbox_to_anchor=(0, 1.08), frameon=False)
    ax.tick_params(axis="x", labelrotation=45)
    dates = sorted({date.fromisoformat(r.key) for r in rows})
    span = (dates[-1] - dates[0]).days
    locator = (
        matplotlib.dates.DayLocator(interval=max(1, span // 10))  # whole days, never hours
        if span <= 62
        else matplotlib.dates.AutoDateLocator()
    )
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(matplotlib.dates.ConciseDateFormatter(locator))
    ax.spines[["top", "right"]].set_visible(False)
    return _svg(fig)


def cycle_chart(report: Report) -> str | None:
    stages = [(s, p) for s in Stage if (p := report.cycle(s)) is not None]
    if not stages:
        return None
    fig, ax = plt.subplots(figsize=(7, 3))
    width = 0.27
    for k, name in enumerate(("p50_hours", "p90_hours", "p99_hours")):
        xs = [n + (k - 1) * width for n in range(len(stages))]
        ax.bar(xs, [getattr(p, name) for _, p in stages], width, label=name[:3], color=COLOURS[k])
    ax.set_xticks(range(len(stages)), [STAGE_LABELS[s].replace(" → ", " →\n") for s, _ in stages])
    ax.set_ylabel("hours")
    ax.set_title("Cycle times, all orders", loc="left")
    ax.legend(frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    return _svg(fig)


def feedback_chart(report: Report) -> str | None:
    fb = report.feedback
    if not fb.count:
        return None
    fig, (dist, trend) = plt.subplots(1, 2, figsize=(7, 2.8))
    scores = list(fb.distribution)
    dist.bar([str(s) for s in scores], [fb.distribution[s] for s in scores], color=COLOURS[4])
    dist.set_title("Scores", loc="left")
    dist.set_xlabel("score")
    dist.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    trend.plot([w.week.isoformat() for w in fb.trend], [w.average for w in fb.trend], marker="o")
    trend.set_ylim(1, 5)
    trend.set_title("Average per week", loc="left")
    trend.tick_params(axis="x", labelrotation=45)
    if len(fb.trend) > 10:
        trend.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(10))
    for ax in (dist, trend):
        ax.spines[["top", "right"]].set_visible(False)
    return _svg(fig)


def returns_chart(report: Report) -> str | None:
    reasons = report.returns.by_reason[:15]
    if not reasons:
        return None
    return _bars(
        [r.reason[:40] for r in reasons], [r.returns for r in reasons], "Returns by reason", COLOURS[2]
    )
