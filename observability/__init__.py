"""Observability: what the processes tell about themselves besides their logs. Metrics for Prometheus
(docs/observability.md): the business metrics (`metrics.py`, counted in the process;
`database_collector.py`, read from the database at scrape time), the Temporal SDK's own
(`sdk_metrics.py`), the step timings of the worker (`step_timings.py`), and the one HTTP endpoint a
process serves them on with its health (`endpoint.py`). Traces for OpenTelemetry (`tracing.py`).
"""
