"""The worker: builds the database engine, adapters and activities, and runs the workflows of its role.

`python worker.py` is the order worker: orders, replenishment, the sandbox parties and the outbox.
`python worker.py --role analytics` is the analytics worker: the demand forecast, the one role that
needs the `analytics` extra (extras.py). Configuration from OMS_* variables. SIGINT/SIGTERM stop either
gracefully: running activities get time to finish, workflows simply continue on another worker.
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import gc
import logging
import signal
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory
from temporalio.worker import PollerBehaviorSimpleMaximum, Worker, WorkerTuner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities import RefuseBadData
from activities.forecast import ForecastActivities
from activities.fulfilment import FulfilmentActivities
from activities.inventory import InventoryActivities
from activities.notifications import NotificationActivities, Outbox
from activities.orders import OrderActivities
from activities.payments import PaymentActivities
from activities.replenishment import ReplenishmentActivities
from activities.returns import ReturnActivities
from adapters import build_parties, mailer, payment_gateway
from config import Settings, WorkerRole, get_settings
from connection import TemporalUnavailable, connect, ensure_search_attributes, exit_without_finalizing
from db import SessionFactory, make_engine, make_session_factory
from domain.payment_ledger import PaymentLedger
from extras import Extra, ExtraMissing, require
from logs import configure_logging
from observability.endpoint import MetricsEndpoint, MetricsPortUnavailable, metrics_endpoint
from observability.health import STALL_SECONDS, Health, LoopHeartbeat
from observability.sdk_metrics import SdkMetrics
from observability.step_timings import StepTimings
from observability.tracing import SERVICE_WORKER, TracingMisconfigured, start_tracing
from sandbox.activities import SandboxPartyActivities
from sandbox.carrier import SandboxCarrier
from sandbox.supplier import SandboxSupplier
from sandbox.workflows import SandboxCarrierWorkflow, SandboxWarehouseWorkflow
from services.forecast import ensure_schedule as ensure_forecast_schedule
from services.outbox import Dispatcher, Dispatchers, OutboxDispatcher
from services.versions import deployment_config
from services.webhook_dispatcher import WebhookDispatcher
from workflows.forecast import ForecastWorkflow
from workflows.order import OrderWorkflow
from workflows.replenishment import ReplenishmentWorkflow

log = logging.getLogger("oms.worker")

ORDER_WORKFLOWS = [OrderWorkflow, ReplenishmentWorkflow]
# The forecast polls a queue of its own (Settings.analytics_task_queue) on the analytics worker: its
# libraries (statsforecast, pandas, numba...: 700 MB) stay out of the order worker's image, and a
# forecast of hundreds of series never holds the order worker's CPU or activity slots.
ANALYTICS_WORKFLOWS = [ForecastWorkflow]
# The sandbox parties poll a task queue of their own (Settings.sandbox_task_queue): they stand for
# outside parties, and their activities wait for the order to act on their reports. Sharing the
# order worker's activity slots, a hundred of them waiting would leave no slot for the steps they
# wait for (seen in `make bench`: orders crawled for minutes). OMS_SANDBOX_PARTIES=false (production)
# runs none of them.
PARTY_WORKFLOWS = [SandboxWarehouseWorkflow, SandboxCarrierWorkflow]
WORKFLOWS = ORDER_WORKFLOWS + ANALYTICS_WORKFLOWS + PARTY_WORKFLOWS  # every workflow type, for the replayer
PARTY_ACTIVITY_SLOTS = 200  # mostly async sends waiting for an update's answer: no thread each
# one forecast at a time (the schedule never overlaps its runs; a CLI forecast runs in its own process),
# and the apply after it
ANALYTICS_ACTIVITY_SLOTS = 2


# On SIGTERM the worker stops polling and gives the activities in flight this long to finish (a
# container's stop grace period must be longer: docker-compose.yml, tests/test_compose.py).
DRAIN_TIMEOUT = timedelta(seconds=10)

# a worker's activities: bound methods of the activity classes
Activities = list[Callable[..., Any]]


def build_activities(sessions: SessionFactory, client: Client, settings: Settings) -> Activities:
    """The order's steps (and replenishment's): the order worker's activities."""
    orders = OrderActivities(sessions, Outbox(settings))
    payments = PaymentActivities(PaymentLedger(sessions, payment_gateway(sessions)))
    inventory = InventoryActivities(sessions)
    # the warehouse and carrier as parties: sandbox workflows (`auto`) or people (`manual`), per settings
    warehouse, tracking = build_parties(client, settings)
    fulfilment = FulfilmentActivities(sessions, SandboxCarrier(sessions), warehouse, tracking)
    notifications = NotificationActivities(sessions, settings)
    returns = ReturnActivities(sessions)
    replenishment = ReplenishmentActivities(
        sessions, client, SandboxSupplier(), settings.task_queue, settings.supplier_lead_time
    )
    # fmt: off
    return [
        orders.admit_order, orders.price_sku, orders.record_events, orders.record_feedback,
        orders.record_address_edit, orders.record_line_edit,
        payments.authorize_payment, payments.capture_payment, payments.void_payment, payments.refund_payment,
        payments.refund_goodwill, payments.increment_authorization, payments.void_part,
        inventory.reserve_stock, inventory.release_stock, inventory.pick_stock, inventory.restock_picked, inventory.keep_units,
        fulfilment.pack_shipment, fulfilment.ship_shipment, fulfilment.cancel_carrier_booking,
        fulfilment.record_delivery,
        fulfilment.release_shipment, fulfilment.record_pack, fulfilment.book_carrier, fulfilment.record_handover,
        fulfilment.record_tracking_event, fulfilment.record_claim,
        fulfilment.change_address, fulfilment.relabel_shipment,
        inventory.record_pick, inventory.restock_returned, inventory.return_order_stock,
        notifications.send_notification,
        returns.record_return, returns.receive_return, returns.close_return,
        replenishment.replenish_if_low, replenishment.release_backorders, replenishment.low_stock,
        replenishment.replenish_for_backorders,
        replenishment.raise_purchase_order, replenishment.receive_purchase_order,
    ]
    # fmt: on


def build_analytics_activities(sessions: SessionFactory, client: Client, settings: Settings) -> Activities:
    """The forecast's steps: the analytics worker's activities."""
    forecast = ForecastActivities(sessions, client, settings)
    return [forecast.refresh_recommendations, forecast.apply_recommendations]


def build_party_activities(sessions: SessionFactory, client: Client) -> Activities:
    """The sandbox warehouse's and carrier's activities: the sandbox parties' worker's."""
    parties = SandboxPartyActivities(client, sessions)
    return [
        parties.send_warehouse_report,
        parties.pack_and_report,
        parties.send_carrier_event,
        parties.collect_parcel,
    ]


class ActivityFailureLog(logging.Filter):
    """Keeps real problems visible in the worker's log. The SDK logs every failed activity attempt as
    "Completing activity as failed" with the whole traceback (business refusals, being BENIGN, at DEBUG).
    With this filter on the `temporalio.activity` logger:

    - a business refusal (a BENIGN ApplicationError, see `activities.refuse`) is one INFO line;
    - a transient failure keeps its traceback on the first attempt and when the retries give up
      (non-retryable, or the last attempt the retry policy allows); the retries in between are one
      WARNING line each, with the attempt number;
    - other records below `level` are dropped (the logger itself must let DEBUG through, or the SDK
      would not create the refusals' records at all: see `quiet_activity_failures`).
    """

    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and record.msg.startswith("Completing activity as failed"):
            err = record.exc_info[1] if record.exc_info else None
            if isinstance(err, BaseException):
                _rewrite_failure(record, err)
        return record.levelno >= self.level


def _rewrite_failure(record: logging.LogRecord, err: BaseException) -> None:
    details = getattr(record, "temporal_activity", None) or {}
    attempt = int(details.get("attempt") or 1)
    name = details.get("activity_type", "activity")
    where = f"workflow {details.get('workflow_id')}, activity {details.get('activity_id')}"
    kind = err.type if isinstance(err, ApplicationError) and err.type else type(err).__name__
    what = f"{kind}: {err.message if isinstance(err, ApplicationError) else err}"
    record.args = ()
    if isinstance(err, ApplicationError) and err.category == ApplicationErrorCategory.BENIGN:
        record.msg = f"{name} refused: {what} ({where})"  # an expected outcome: one line
        record.levelno, record.levelname = logging.INFO, logging.getLevelName(logging.INFO)
    elif _gives_up(err, attempt, kind):
        record.msg = f"{name} attempt {attempt} failed, giving up: {what} ({where})"
        return  # with the whole traceback
    else:
        record.msg = f"{name} attempt {attempt} failed, will retry: {what} ({where})"
        if attempt == 1:
            return  # with the whole traceback, once
    record.exc_info, record.exc_text, record.stack_info = None, None, None


def _gives_up(err: BaseException, attempt: int, kind: str) -> bool:
    """Whether this failure ends the activity's retries (as far as the worker can tell)."""
    if isinstance(err, ApplicationError) and err.non_retryable:
        return True
    policy = activity.info().retry_policy if activity.in_activity() else None
    if policy is None:
        return False
    return (0 < policy.maximum_attempts <= attempt) or kind in (policy.non_retryable_error_types or ())


def quiet_activity_failures(level: int = logging.INFO) -> None:
    """Install ActivityFailureLog on the `temporalio.activity` logger (once per process)."""
    logger = logging.getLogger("temporalio.activity")
    if any(isinstance(f, ActivityFailureLog) for f in logger.filters):
        return
    level = min(level, logger.getEffectiveLevel())  # a worker run at DEBUG keeps everything
    logger.addFilter(ActivityFailureLog(level))
    logger.setLevel(logging.DEBUG)


# The modules of the workflows the sandbox runs. The sandbox parties' (sandbox/workflows.py) run
# unsandboxed, imported once like any module: they need no cache of their own.
WORKFLOW_MODULES = Path(__file__).resolve().parent / "workflows"


def cache_workflow_bytecode() -> None:
    """Write the workflow modules' bytecode cache. The sandbox imports a workflow's module afresh for
    every run it starts; with no cache (PYTHONDONTWRITEBYTECODE, set on our machines and in the image)
    each new order compiled workflows/order.py from source: a third of its first workflow task
    (`make bench`: 5.5 -> 6.9 orders/s with the cache). Cheap when the cache is current; where the
    tree is read-only nothing is written (the image compiles it at build, see Dockerfile)."""
    compileall.compile_dir(WORKFLOW_MODULES, maxlevels=0, quiet=2)


def freeze_startup_heap() -> None:
    """Put what start-up built (the imported libraries, the worker and its definitions) out of the cyclic
    garbage collector's reach. A full collection walked all of it every time, a pause of the whole worker
    and of every order it was handling: 114-117 ms in a process running the worker and placing orders
    at 2.25/s, 31-37 ms with the heap frozen (137 -> 46-82 ms in `make bench`'s latency phase). Objects
    made later are collected as before, so nothing leaks."""
    gc.collect()
    gc.freeze()


def workflow_runner() -> SandboxedWorkflowRunner:
    cache_workflow_bytecode()
    # pydantic validates EmailStr with email_validator, loaded lazily (and it loads idna for an
    # internationalized address, later still): share both with the sandbox, not re-import them per run.
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules("email_validator", "idna")
    )


class Workers:
    """The order worker and the sandbox parties' worker (None with OMS_SANDBOX_PARTIES=false), run and
    stopped together (like a Worker: `async with`, or `run()` and `shutdown()`)."""

    def __init__(self, orders: Worker, parties: Worker | None, outbox: Dispatcher) -> None:
        self.orders, self.parties, self.outbox = orders, parties, outbox
        self.task_queue = orders.task_queue

    @property
    def workers(self) -> list[Worker]:
        return [self.orders] if self.parties is None else [self.orders, self.parties]

    async def run(self) -> None:
        await asyncio.gather(*(w.run() for w in self.workers), self.outbox.run())

    async def shutdown(self) -> None:
        self.outbox.stop()
        await asyncio.gather(*(w.shutdown() for w in self.workers))

    async def __aenter__(self) -> Workers:
        self._stack = AsyncExitStack()
        for worker in self.workers:
            await self._stack.enter_async_context(worker)
        dispatching = asyncio.create_task(self.outbox.run())

        async def stop_dispatching() -> None:
            self.outbox.stop()
            await dispatching

        self._stack.push_async_callback(stop_dispatching)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()


class Liveness:
    """What the worker's /healthz answers (OMS_METRICS_PORT): healthy while every worker polls its task
    queue and the event loop turns. Called from the endpoint's thread: it only reads flags."""

    def __init__(self) -> None:
        self.workers: list[Worker] | None = None  # set once they are built
        self.heartbeat = LoopHeartbeat()

    def __call__(self) -> Health:
        if self.workers is None:
            return Health(False, "starting: not polling yet")
        stopped = [w.task_queue for w in self.workers if not w.is_running]
        if stopped:
            return Health(False, f"not polling task queue {', '.join(map(repr, stopped))}")
        if (stalled := self.heartbeat.age()) > STALL_SECONDS:
            return Health(False, f"event loop stalled for {stalled:.0f} s")
        return Health(True, "polling")


def _common_options(settings: Settings) -> dict[str, Any]:
    """What every Worker of every role is built with."""
    quiet_activity_failures()
    return {
        "graceful_shutdown_timeout": DRAIN_TIMEOUT,
        "workflow_runner": workflow_runner(),
        "interceptors": [RefuseBadData()],  # no step retries for ever on data the database refuses
        # one build = one deployment version for every queue of every role (set current together);
        # None: unversioned
        "deployment_config": deployment_config(settings),
    }


def build_worker(
    client: Client, sessions: SessionFactory, settings: Settings, activities: Activities | None = None
) -> Workers:
    """The order worker the settings ask for; `activities`: its activities (default: build_activities)."""
    threads = settings.worker_activity_threads
    common = _common_options(settings)
    activities = activities if activities is not None else build_activities(sessions, client, settings)
    orders = Worker(
        client,
        task_queue=settings.task_queue,
        workflows=ORDER_WORKFLOWS,
        activities=activities,
        activity_executor=ThreadPoolExecutor(max_workers=threads, thread_name_prefix="oms-activity"),
        # The slots as a tuner, which is what the SDK builds from max_concurrent_*: those would also
        # size its workflow task thread pool by the workflow task slots (else 500), a change of its own
        tuner=WorkerTuner.create_fixed(
            workflow_slots=settings.worker_workflow_tasks,
            activity_slots=settings.worker_activity_slots,
            local_activity_slots=settings.worker_local_activities,
        ),
        workflow_task_poller_behavior=PollerBehaviorSimpleMaximum(settings.worker_workflow_polls),
        activity_task_poller_behavior=PollerBehaviorSimpleMaximum(settings.worker_activity_polls),
        **common | {"interceptors": [StepTimings(), *common["interceptors"]]},  # the order's steps timed
    )
    parties = None
    if settings.sandbox_parties:
        parties = Worker(
            client,
            task_queue=settings.sandbox_task_queue,
            workflows=PARTY_WORKFLOWS,
            activities=build_party_activities(sessions, client),
            # threads start as needed: the sends are async, only the sandbox weighing and lookups use one
            activity_executor=ThreadPoolExecutor(
                max_workers=PARTY_ACTIVITY_SLOTS, thread_name_prefix="oms-sandbox"
            ),
            max_concurrent_activities=PARTY_ACTIVITY_SLOTS,
            **common,
        )
    outbox = OutboxDispatcher(sessions, mailer(settings), settings.outbox_poll.total_seconds())
    webhooks = WebhookDispatcher(sessions, client, settings)  # docs/webhooks.md
    return Workers(orders, parties, Dispatchers(outbox, webhooks))


def build_analytics_worker(client: Client, sessions: SessionFactory, settings: Settings) -> Worker:
    """The analytics worker: ForecastWorkflow and its steps, on Settings.analytics_task_queue."""
    return Worker(
        client,
        task_queue=settings.analytics_task_queue,
        workflows=ANALYTICS_WORKFLOWS,
        activities=build_analytics_activities(sessions, client, settings),
        activity_executor=ThreadPoolExecutor(
            max_workers=ANALYTICS_ACTIVITY_SLOTS, thread_name_prefix="oms-analytics"
        ),
        max_concurrent_activities=ANALYTICS_ACTIVITY_SLOTS,
        **_common_options(settings),
    )


async def run_worker(settings: Settings, stop: asyncio.Event, role: WorkerRole = WorkerRole.orders) -> None:
    if role == WorkerRole.analytics:
        require(Extra.analytics, "the analytics worker")  # at start, not at the first forecast's run
    liveness = Liveness()
    sdk: SdkMetrics | None = None
    endpoint: MetricsEndpoint | None = None
    if settings.metrics_port is not None:  # first: a port in use stops the worker before it connects
        sdk = SdkMetrics()
        endpoint = metrics_endpoint(settings, health=liveness, extra=sdk.text).start()
    try:
        await _serve(settings, stop, role, liveness, sdk)
    finally:
        if endpoint is not None:
            endpoint.stop()


async def _serve(
    settings: Settings, stop: asyncio.Event, role: WorkerRole, liveness: Liveness, sdk: SdkMetrics | None
) -> None:
    client = await connect(settings, runtime=sdk.runtime if sdk is not None else None)
    if role == WorkerRole.orders:  # the order workflows write them
        added = await ensure_search_attributes(client)
        if added:
            log.info("registered search attributes: %s", ", ".join(added))
    # `forecast-daily`: created, or updated to the settings, by every worker of either role. The order
    # workers too, as before the roles: the first worker of a build that moved the forecast to its own
    # queue points the schedule there, so no run is started on the orders' queue, where no worker of
    # the build would run it (and, open for ever, it would make the schedule skip every later run). On
    # the analytics queue a run waits, harmlessly, for an analytics worker to poll.
    await ensure_forecast_schedule(client, settings)
    engine = make_engine(settings.database_url, pool_size=settings.database_pool_size)
    sessions = make_session_factory(engine)
    worker: Workers | Worker = (
        build_worker(client, sessions, settings)
        if role == WorkerRole.orders
        else build_analytics_worker(client, sessions, settings)
    )
    liveness.workers = worker.workers if isinstance(worker, Workers) else [worker]
    freeze_startup_heap()

    async with worker, liveness.heartbeat:
        log.info(
            "%s worker polling task queue %r on %s",
            role,
            worker.task_queue,
            client.service_client.config.target_host,
        )
        if isinstance(worker, Workers):
            if worker.parties is None:
                log.info("sandbox parties off (OMS_SANDBOX_PARTIES=false)")
            else:
                log.info("sandbox parties polling task queue %r", worker.parties.task_queue)
            if settings.smtp_host is not None:
                log.info(
                    "outbox mailing %s:%d (%s) from %s",
                    settings.smtp_host,
                    settings.smtp_port_or_default,
                    settings.smtp_security.value,
                    settings.smtp_from,
                )
            else:  # say it: in production a forgotten OMS_SMTP_HOST would lose every message quietly
                log.warning(
                    "outbox messages go to the sandbox mailer, which mails nothing (OMS_SMTP_HOST unset)"
                )
        await stop.wait()
        log.info("shutting down")
    engine.dispose()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="The OMS Temporal worker (settings: OMS_* variables).")
    parser.add_argument(
        "--role",
        type=WorkerRole,
        choices=list(WorkerRole),
        default=WorkerRole.orders,
        help="orders (the default): orders, replenishment, the sandbox parties; "
        "analytics: the demand forecast (needs the `analytics` extra)",
    )
    return parser.parse_args(argv)


def main() -> None:
    role: WorkerRole = parse_args().role
    configure_logging(get_settings().log_format)

    async def _main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run_worker(get_settings(), stop, role)

    try:
        start_tracing(SERVICE_WORKER)  # before connecting: the client and the engine are traced
        asyncio.run(_main())
    # a certificate, a CA, a key, a missing extra, a metrics port or an OTLP endpoint: one line naming
    # what to do, no traceback
    except (TemporalUnavailable, ExtraMissing, MetricsPortUnavailable, TracingMisconfigured) as exc:
        print(f"error: {exc}", file=sys.stderr)
        exit_without_finalizing(1)
    exit_without_finalizing(0)


if __name__ == "__main__":
    main()
