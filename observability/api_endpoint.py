"""The API process's metrics endpoint (OMS_METRICS_PORT): its own request and codec metrics, and the
database's figures (database_collector.py), which only the API exports: the workers' endpoints would
report the same numbers once per worker."""

from __future__ import annotations

from functools import partial

from prometheus_client import REGISTRY

from config import Settings
from db import make_engine, make_session_factory
from domain.monitoring import monitoring_figures
from observability.database_collector import DatabaseCollector
from observability.endpoint import MetricsEndpoint, metrics_endpoint

# connections for the scrape's queries: one scrape at a time reads (the collector's lock), one spare
METRICS_POOL_SIZE = 2


def start_api_metrics(settings: Settings) -> MetricsEndpoint | None:
    """Serve /metrics and /healthz on OMS_METRICS_PORT (None without it); raises MetricsPortUnavailable."""
    if settings.metrics_port is None:
        return None
    endpoint = metrics_endpoint(settings).start()
    # an engine of its own: a scrape never waits for a connection behind the requests, nor they for it
    engine = make_engine(settings.database_url, read_only=True, pool_size=METRICS_POOL_SIZE)
    REGISTRY.register(DatabaseCollector(partial(monitoring_figures, make_session_factory(engine))))
    return endpoint
