"""The metrics read from the database when Prometheus scrapes (domain/monitoring.py has the queries):
orders by outcome, channel and reason, orders by status, the outbox's backlog and its oldest message's
age, orders needing attention, stock-outs.

They describe the whole system, not the process that reports them, so only the API exports them
(api/__main__.py), and every API replica reports the same values: aggregate them with `max`, never
`sum` (deploy/grafana/oms-dashboard.json does). `oms_orders_total` is a counter made of rows (each
order's event, counted once however often its activity was retried), so `increase()` and `rate()`
work on it; it does not reset when a process restarts.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from domain.monitoring import MonitoringFigures

log = logging.getLogger("oms.metrics")

# Several scrapers (two Prometheus servers, a person's curl) within this many seconds share one read:
# the queries scan order events, which a scrape every few seconds should not repeat.
CACHE_SECONDS = 5.0


class DatabaseCollector(Collector):
    """Yields the database's figures as metric families; `read` runs the queries (monitoring_figures
    over a session factory). A database that does not answer yields `oms_database_figures_up 0` and
    nothing else, so an alert sees the gap instead of stale numbers."""

    def __init__(self, read: Callable[[], MonitoringFigures], cache_seconds: float = CACHE_SECONDS) -> None:
        self._read = read
        self._cache_seconds = cache_seconds
        self._lock = threading.Lock()  # the endpoint serves scrapes in threads
        self._cached: tuple[float, MonitoringFigures] | None = None

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "oms_database_figures_up", "1 if the database figures below could be read at this scrape."
        )
        try:
            figures = self._figures()
        except Exception as exc:  # noqa: BLE001 - the database is away: say so, serve the rest
            log.warning("metrics: cannot read the database figures: %s", type(exc).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families(figures)

    def _figures(self) -> MonitoringFigures:
        with self._lock:
            now = time.monotonic()
            if self._cached is None or now - self._cached[0] >= self._cache_seconds:
                self._cached = (now, self._read())
            return self._cached[1]


def families(figures: MonitoringFigures) -> Iterator[Metric]:
    orders = CounterMetricFamily(
        "oms_orders",
        "Live orders that were placed, backordered, confirmed, rejected or cancelled, by channel and reason code"
        " (reason empty for placed and confirmed). From the order events: the same on every API replica.",
        labels=["outcome", "channel", "reason"],
    )
    for count in figures.outcomes:
        orders.add_metric([count.outcome.value, count.channel, count.reason], count.orders)
    yield orders

    by_status = GaugeMetricFamily(
        "oms_orders_by_status", "Live orders in each status now.", labels=["status"]
    )
    for status, n in figures.by_status.items():
        by_status.add_metric([status], n)
    yield by_status

    yield GaugeMetricFamily(
        "oms_outbox_backlog",
        "Customer messages written to the outbox and not sent yet.",
        figures.outbox_backlog,
    )
    yield GaugeMetricFamily(
        "oms_outbox_oldest_age_seconds",
        "How long the oldest unsent outbox message has waited (0 with none waiting).",
        figures.outbox_oldest_age,
    )
    yield GaugeMetricFamily(
        "oms_orders_needing_attention",
        "Orders with a step stuck, a compensation that gave up, or a parcel in trouble (the console's list).",
        figures.needing_attention,
    )
    stock_outs = GaugeMetricFamily(
        "oms_stock_outs",
        "Stock positions (sku in a warehouse) with nothing available to reserve, by warehouse.",
        labels=["warehouse"],
    )
    for warehouse, n in figures.stock_outs.items():
        stock_outs.add_metric([warehouse], n)
    yield stock_outs
