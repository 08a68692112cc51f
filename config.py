"""Settings, read once, in one place (environment variables with the OMS_ prefix)."""

from __future__ import annotations

import math
import re
import unicodedata
from datetime import timedelta
from decimal import Decimal
from email.utils import parseaddr
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import BeforeValidator, Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from models.shipping import ShortPickPolicy

PROJECT_DIR = Path(__file__).resolve().parent
DATA_DIR = PROJECT_DIR / ".data"

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$")
_MAX_SECONDS = 100 * 365 * 86400
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(value: str | int | float | timedelta) -> timedelta:
    """'30d', '6h', '45s', '500ms' -> timedelta; a bare number is seconds. Never negative or unbounded."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float):
        seconds = float(value)
    elif match := _DURATION.match(value):
        amount, unit = match.groups()
        seconds = float(amount) * _UNIT_SECONDS[unit]
    else:
        try:
            seconds = float(value)
        except ValueError:
            seconds = math.nan
    if not (0 <= seconds <= _MAX_SECONDS):  # also refuses nan and inf
        raise ValueError(f"invalid duration {value!r}: write it like 30d, 6h, 15m, 45s or 500ms")
    return timedelta(seconds=seconds)


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]

# Our bound, not the server's (the dev server took a 256-character build id): these are names people
# read in `versions` and the UI and type into `set-current-version`
_MAX_VERSION_PART = 255


def check_build_id(value: str) -> str:
    """A worker build id as Temporal takes it: one printable line, 1-255 characters, no outer blanks.
    It names the build in `versions`, in visibility and in the UI, so what passes here is what people
    will read and type (`set-current-version BUILD_ID`)."""
    return _check_version_part("build id", value)


def check_deployment_name(value: str) -> str:
    """A worker deployment name: like a build id, and without a dot (Temporal writes a version as
    `<deployment>.<build id>` in places and splits it at the first dot)."""
    value = _check_version_part("deployment name", value)
    if "." in value:
        raise ValueError(f"invalid deployment name {value!r}: it must not contain a dot")
    return value


def _check_version_part(what: str, value: str) -> str:
    if not value.strip():
        raise ValueError(f"invalid {what}: it is {'blank' if value else 'empty'}")
    if value != value.strip():
        raise ValueError(f"invalid {what} {value!r}: it starts or ends with a blank")
    if any(unicodedata.category(c) == "Cc" for c in value):
        raise ValueError(f"invalid {what} {value!r}: it contains a control character")
    if len(value) > _MAX_VERSION_PART:
        raise ValueError(f"invalid {what}: {len(value)} characters, at most {_MAX_VERSION_PART}")
    return value


# The least each of the worker's capacities takes. Fewer than 2 workflow task slots (or polls) would
# stall a worker that caches workflows, as ours does (the SDK's sticky queues): it refuses them.
_WORKER_CAPACITY_MINIMUM = {
    "worker_activity_threads": 1,
    "worker_activities": 1,
    "worker_local_activities": 1,
    "worker_workflow_tasks": 2,
    "worker_workflow_polls": 2,
    "worker_activity_polls": 1,
}


def _unset_if_blank(value: object) -> object:
    """An empty variable means unset (`OMS_WORKER_BUILD_ID=` in a compose file, a build arg not given)."""
    return None if value == "" else value


class LogFormat(StrEnum):
    text = "text"  # for people: time, level, logger, message (logs.py)
    json = "json"  # for a log pipeline: one JSON object per line


class WorkerRole(StrEnum):
    """What a worker process runs (`python worker.py --role ROLE`); each polls its own task queue."""

    orders = "orders"  # orders, replenishment, the sandbox parties, the outbox: no analytics library
    analytics = "analytics"  # the demand forecast: the `analytics` extra's libraries (extras.py)


class SandboxMode(StrEnum):
    auto = "auto"
    manual = "manual"


class SmtpSecurity(StrEnum):
    """How the SMTP mailer protects its connection (adapters/smtp_mailer.py)."""

    none = "none"  # plain SMTP: a local relay or catcher only
    starttls = "starttls"  # plain connect, then STARTTLS before anything else (port 587)
    tls = "tls"  # TLS from the first byte, "SMTPS" (port 465)


# the port each security setting listens on by convention, when OMS_SMTP_PORT is not given
SMTP_DEFAULT_PORTS = {SmtpSecurity.none: 25, SmtpSecurity.starttls: 587, SmtpSecurity.tls: 465}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OMS_", extra="ignore")

    temporal_address: str = "localhost:7233"
    temporal_namespace: str = "default"
    task_queue: str = "orders"
    # the demand forecast's queue, which only the analytics worker (`worker.py --role analytics`) polls:
    # the order worker runs without the `analytics` extra's libraries (extras.py)
    analytics_task_queue: str = "analytics"
    database_url: str = f"sqlite:///{DATA_DIR / 'oms.db'}"

    delivery_sla: Duration = timedelta(days=7)
    return_window: Duration = timedelta(days=30)
    hold_timeout: Duration = timedelta(days=3)
    return_receipt_timeout: Duration = timedelta(days=14)
    backorder_timeout: Duration = timedelta(days=7)
    supplier_lead_time: Duration = timedelta(days=2)
    review_above: Decimal | None = None
    # the largest goodwill refund (POST /orders/{id}/refunds) support may give, in the order's currency;
    # above it only an admin may
    goodwill_limit: Decimal = Field(default=Decimal("50.00"), ge=0)
    # the countries an order edit may ship to (ISO 3166-1 alpha-2, comma-separated); empty: any country
    ship_to_countries: str = "AT,BE,DE,DK,ES,FI,FR,GB,IE,IT,LU,NL,PL,PT,SE"
    # a customer's return request (the tracking page) whose refund value is at most this is approved at
    # once, in the order's currency; 0: support approves every one
    return_auto_approve_limit: Decimal = Field(default=Decimal("0"), ge=0, le=Decimal("9999999999.99"))
    compensation_attempts: int = Field(default=20, ge=1)
    # A step (activity) failing this many attempts in a row for a reason that is not a business
    # refusal marks its order NeedsAttention (event `step_stuck`) and goes on retrying. A setting of
    # the worker, read when it starts (see workflows/options.py).
    step_attention_attempts: int = Field(default=5, ge=1)

    # Worker Versioning (docs/versioning.md). With a build id the worker joins the worker deployment as
    # the version <deployment>:<build id> and every workflow it starts stays PINNED to that build; with
    # none (the default: dev, tests, `make run`) the worker is unversioned, as before versioning.
    worker_deployment: str = "oms"
    worker_build_id: Annotated[str | None, BeforeValidator(_unset_if_blank)] = None

    @field_validator("worker_deployment")
    @classmethod
    def _deployment_name_is_sane(cls, value: str) -> str:
        return check_deployment_name(value)

    @field_validator("worker_build_id")
    @classmethod
    def _build_id_is_sane(cls, value: str | None) -> str | None:
        return None if value is None else check_build_id(value)

    # how much one worker takes at once (docs/configuration.md says what each trades): threads for the
    # steps written as plain functions, local or not; outside parties' steps (activities; default: one
    # per thread), database steps (local activities) and workflow tasks in flight (the SDK's 100 each)
    worker_activity_threads: int = 32
    worker_activities: int | None = None
    worker_local_activities: int = 100
    worker_workflow_tasks: int = 100
    # polls a worker keeps open for workflow and for activity tasks (the SDK's default is 5 each;
    # chosen by `make bench`, see docs/performance.md)
    worker_workflow_polls: int = 5
    worker_activity_polls: int = 5

    @field_validator(*_WORKER_CAPACITY_MINIMUM)
    @classmethod
    def _worker_capacity_is_enough(cls, value: int | None, info: ValidationInfo) -> int | None:
        least = _WORKER_CAPACITY_MINIMUM[str(info.field_name)]
        if value is not None and value < least:
            raise ValueError(f"OMS_{str(info.field_name).upper()} must be at least {least}, not {value}")
        return value

    @property
    def worker_activity_slots(self) -> int:
        """Activities one worker runs at once: OMS_WORKER_ACTIVITIES, else one per activity thread."""
        return self.worker_activities if self.worker_activities is not None else self.worker_activity_threads

    # database connections a worker or an API process keeps (as many again when busy); a worker's: at
    # least its activity threads, which run the steps, local or not, plus the outbox dispatcher
    database_pool_size: int = Field(default=20, ge=1)
    # how often the worker's outbox dispatcher looks for messages to send (services/outbox.py)
    outbox_poll: Duration = timedelta(seconds=1)

    # outbound webhooks (docs/webhooks.md), sent by the worker's webhook dispatcher every outbox_poll:
    # loopback, private and link-local targets are refused unless allowed (development, tests); one
    # request's timeout; the wait after a failure (doubled each time, up to the cap); how long one
    # delivery is retried before it is given up, and a subscription fails before it is disabled
    webhook_allow_private: bool = False
    webhook_timeout: Duration = timedelta(seconds=10)
    webhook_retry_base: Duration = timedelta(seconds=10)
    webhook_retry_cap: Duration = timedelta(hours=1)
    webhook_retry_for: Duration = timedelta(hours=24)
    webhook_disable_after: Duration = timedelta(hours=24)
    # after a secret is rotated, the old one still signs (next to the new) this long, so receivers can
    # switch without losing a message; 0: it stops at once (a leaked secret)
    webhook_secret_overlap: Duration = timedelta(hours=24)

    @field_validator("webhook_timeout", "webhook_retry_base", "webhook_retry_cap")
    @classmethod
    def _webhook_wait_is_not_zero(cls, value: timedelta, info: ValidationInfo) -> timedelta:
        # zero would time every request out at once, or retry a failing endpoint in a busy loop
        if value <= timedelta(0):
            raise ValueError(f"OMS_{str(info.field_name).upper()} must be longer than 0")
        return value

    # e-mail over SMTP (adapters/smtp_mailer.py): with a host the worker sends every outbox message
    # there; without one it hands them to the sandbox mailer, which keeps nothing
    smtp_host: Annotated[str | None, BeforeValidator(_unset_if_blank)] = None
    smtp_port: int | None = Field(default=None, ge=1, le=65535)  # default: 25, 587 or 465 by security
    smtp_security: SmtpSecurity = SmtpSecurity.none
    smtp_username: Annotated[str | None, BeforeValidator(_unset_if_blank)] = None
    smtp_password: SecretStr | None = None
    smtp_from: str = "OMS <orders@oms.example>"  # the From of every message; its domain names Message-IDs
    # one SMTP conversation's limit: the dispatcher holds the message's row lock while it talks
    smtp_timeout: Duration = timedelta(seconds=10)
    # development only: the folder `make run`'s SMTP catcher stores what it receives in; with it the
    # console shows a mailbox page (api/routes/console_mailbox.py)
    dev_mailbox: Annotated[Path | None, BeforeValidator(_unset_if_blank)] = None

    @field_validator("smtp_timeout")
    @classmethod
    def _smtp_timeout_is_positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):  # smtplib would take 0 as "never wait": every send would fail
            raise ValueError("OMS_SMTP_TIMEOUT must be more than 0 (e.g. 10s)")
        return value

    @field_validator("smtp_from")
    @classmethod
    def _from_is_an_address(cls, value: str) -> str:
        _, address = parseaddr(value)
        if "@" not in address or address.startswith("@") or address.endswith("@"):
            raise ValueError(
                f"OMS_SMTP_FROM must be an e-mail address (e.g. OMS <orders@shop.example>), not {value!r}"
            )
        return value

    @model_validator(mode="after")
    def _smtp_login_is_whole(self) -> Settings:
        if (self.smtp_username is None) != (self.smtp_password is None):
            raise ValueError("OMS_SMTP_USERNAME and OMS_SMTP_PASSWORD go together: set both or neither")
        return self

    @property
    def smtp_port_or_default(self) -> int:
        return self.smtp_port if self.smtp_port is not None else SMTP_DEFAULT_PORTS[self.smtp_security]

    # warehouses and carriers (models/fulfilment.py): the order's policy ...
    release_delay: Duration = timedelta(minutes=10)  # confirmed -> released to the warehouses
    exception_timeout: Duration = timedelta(days=3)  # a lost parcel with no choice by then is refunded
    short_pick_policy: ShortPickPolicy = ShortPickPolicy.backorder
    # ... and the sandbox parties of the worker (sandbox/: stand-ins for a real warehouse and carrier).
    # OMS_SANDBOX_PARTIES: whether the worker runs their workflows and activities (a second Worker on
    # `sandbox_task_queue`). Set it to false in production, where real warehouses and carriers report:
    # the worker then registers none of them and polls no sandbox queue, and the warehouse and carrier
    # below default to `manual` (an explicit `auto` is refused: nothing would play the party).
    sandbox_parties: bool = True
    # `auto` plays the party, `manual` leaves it to a person or a real integration (the `warehouse` and
    # `carrier-event` commands, the warehouse and carrier endpoints)
    sandbox_warehouse: SandboxMode = Field(default=SandboxMode.auto, validate_default=False)  # checked below
    sandbox_pick_time: Duration = timedelta(seconds=3)
    sandbox_pack_time: Duration = timedelta(seconds=3)
    sandbox_short_pick_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    sandbox_carrier: SandboxMode = Field(default=SandboxMode.auto, validate_default=False)  # checked below
    sandbox_transit_time: Duration = timedelta(seconds=20)
    sandbox_loss_rate: float = Field(default=0.0, ge=0.0, le=1.0)

    # demand forecast and reorder points (domain/forecast.py, ForecastWorkflow): the share of lead times
    # the reorder point should cover without running out (0.5 < level < 1), the days one reorder
    # should last, the days of shipped demand the forecast reads, how often the schedule refreshes the
    # recommendations, and whether it also writes them to the stock rows (else `forecast --apply` does)
    service_level: float = 0.95
    forecast_review_days: int = Field(default=14, ge=1, le=365)
    forecast_history_days: int = Field(default=730, ge=28, le=3650)
    forecast_every: Duration = timedelta(days=1)
    auto_apply_forecast: bool = False

    @field_validator("service_level")
    @classmethod
    def _service_level_in_range(cls, value: float) -> float:
        if not 0.5 < value < 1:  # z would be <= 0 (no safety stock) or infinite
            raise ValueError(f"OMS_SERVICE_LEVEL must be between 0.5 and 1 (e.g. 0.95), not {value}")
        return value

    # how the worker and the API write their logs (logs.py): `text` for people, `json` for a pipeline
    log_format: LogFormat = LogFormat.text

    # Prometheus metrics (docs/observability.md): with a port, the worker and the API each serve
    # /metrics and /healthz on it (observability/endpoint.py), a port of its own next to the API's
    # public one; unset (the default: dev, tests, `make run`, where several processes share a host)
    # no such port is opened. All interfaces by default: the scraper and the kubelet's probes come
    # from another address. With a token, /metrics wants `Authorization: Bearer <token>`.
    metrics_port: Annotated[
        Annotated[int, Field(ge=1, le=65535)] | None, BeforeValidator(_unset_if_blank)
    ] = None
    metrics_host: str = "0.0.0.0"
    metrics_token: Annotated[SecretStr | None, BeforeValidator(_unset_if_blank)] = None

    # the HTTP API (api/)
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=1, le=65535)
    api_max_body: int = Field(default=1024 * 1024, ge=1024)  # bytes; larger requests get 413
    api_max_import: int = Field(default=20 * 1024 * 1024, ge=1024)  # bytes, for POST /orders/import
    api_wait_timeout: Duration = timedelta(seconds=30)  # ?wait=true answers with `received` after it
    api_key_cache_ttl: Duration = timedelta(seconds=2)  # a revoked key works on for at most this long
    # how long a mutating request's Idempotency-Key is remembered (api/idempotency.py): a retry within it
    # gets the first answer again, and the same key with another request is refused
    idempotency_ttl: Duration = timedelta(hours=24)

    # payload encryption (encryption/): "id:key,id:key", the first encrypts, all decrypt; without it a
    # key is generated once into codec_key_file. Keys never appear in logs or in `config` output.
    codec_keys: SecretStr | None = None
    codec_key_file: Path = DATA_DIR / "codec-keys"
    # the codec server (POST /codec/decode, /codec/encode) answers browsers from this origin only: the
    # Temporal Web UI's (a comma-separated list if it is reached under several names)
    temporal_ui_origin: str = "http://127.0.0.1:8233"
    codec_max_body: int = Field(default=4 * 1024 * 1024, ge=1024)  # bytes, for /codec/*

    # the console's signed session cookie (sign-in with a support or admin key)
    session_secret: SecretStr | None = None  # without it, one is generated once into session_secret_file
    session_secret_file: Path = DATA_DIR / "session-secret"
    session_ttl: Duration = timedelta(hours=8)
    session_cookie_secure: bool = False  # true behind HTTPS: the cookie is then never sent in clear
    # where customers reach this API (the tracking links in their messages: <public_url>/track/<token>)
    public_url: str = "http://127.0.0.1:8000"

    @field_validator("sandbox_warehouse", "sandbox_carrier")
    @classmethod
    def _auto_needs_the_sandbox_parties(cls, value: SandboxMode, info: ValidationInfo) -> SandboxMode:
        # Runs on a value given only (validate_default=False): the default follows the parties (below).
        # A field validator, not the model's: its error quotes this value, never the other settings.
        if value == SandboxMode.auto and info.data.get("sandbox_parties") is False:
            raise ValueError(
                "`auto` needs the sandbox parties, which OMS_SANDBOX_PARTIES=false turns off: set it to"
                " `manual`, or OMS_SANDBOX_PARTIES=true"
            )
        return value

    @model_validator(mode="after")
    def _without_sandbox_parties_a_person_reports(self) -> Settings:
        """With the sandbox parties off, the warehouse and carrier not set are `manual`."""
        if not self.sandbox_parties:
            for field in ("sandbox_warehouse", "sandbox_carrier"):
                if field not in self.model_fields_set:
                    setattr(self, field, SandboxMode.manual)
        return self

    @property
    def sandbox_task_queue(self) -> str:
        """Where the sandbox warehouse and carrier work (worker.py): a queue of their own."""
        return f"{self.task_queue}-sandbox-parties"

    def worker_task_queue(self, role: WorkerRole) -> str:
        """The task queue the worker of `role` polls for its workflows."""
        return self.analytics_task_queue if role == WorkerRole.analytics else self.task_queue

    @property
    def served_countries(self) -> frozenset[str]:
        """OMS_SHIP_TO_COUNTRIES as a set; empty: every country is served."""
        return frozenset(c.strip().upper() for c in self.ship_to_countries.split(",") if c.strip())

    @property
    def temporal_ui_origins(self) -> list[str]:
        return [o.strip().rstrip("/") for o in self.temporal_ui_origin.split(",") if o.strip()]


@lru_cache
def get_settings() -> Settings:
    return Settings()
