"""The webhook dispatcher as the worker runs it, beside the notification outbox's (services/outbox.py):
every poll interval it builds the bodies of new order events (the order's view, queried from its
workflow) and sends what is due (domain/webhook_dispatch.py), each request signed (Standard Webhooks),
to the address the SSRF guard checked (domain/webhook_targets.py), no redirects followed, within
OMS_WEBHOOK_TIMEOUT. Database work runs in threads, so the worker's event loop never waits on it."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime

import httpx
from temporalio.client import Client
from temporalio.service import RPCError

from config import Settings
from db import SessionFactory
from domain import webhook_dispatch as dispatch
from domain.webhook_payloads import message_body, redacted_view
from domain.webhook_signing import signed_headers
from domain.webhook_targets import TargetRefused, resolve
from models.choices import WebhookEventType
from services.orders import Refused, UnknownOrder, order_view
from services.outbox import poll_until_stopped

log = logging.getLogger("oms.webhooks")
BATCH = 50  # deliveries sent at once (each the head of its own order's queue), bodies built per round
USER_AGENT = "oms-webhooks/1"
BUILD_FETCHES = 10  # batches of bodies built per round at most, so that sending is never starved
VIEW_TIMEOUT = 10.0  # seconds an order's view may take to come; one stuck order holds up no other


class WebhookDispatcher:
    def __init__(self, sessions: SessionFactory, client: Client, settings: Settings) -> None:
        self._sessions, self._client, self._settings = sessions, client, settings
        self._policy = dispatch.RetryPolicy.of(settings)
        self._poll = settings.outbox_poll.total_seconds()
        self._stop = asyncio.Event()

    async def run(self) -> None:
        async with httpx.AsyncClient(
            follow_redirects=False,  # a redirect could lead past the SSRF guard: it is a failure
            trust_env=False,  # no proxy from the environment: the guard checks the address we connect to
            timeout=self._settings.webhook_timeout.total_seconds(),
            headers={"user-agent": USER_AGENT},
        ) as http:
            await poll_until_stopped(self._stop, self._poll, lambda: self.dispatch_once(http), "webhook")

    def stop(self) -> None:
        self._stop.set()

    async def dispatch_once(self, http: httpx.AsyncClient, now: datetime | None = None) -> int:
        """One round: build the bodies waiting, then send what is due at `now` (default: the clock);
        returns how many deliveries were attempted."""
        await self._build_bodies()
        claimed_at = now or datetime.now(UTC)
        due = await asyncio.to_thread(dispatch.claim_due, self._sessions, claimed_at, self._policy, BATCH)
        await asyncio.gather(*(self._attempt(http, d, now) for d in due))
        return len(due)

    async def _build_bodies(self) -> None:
        """An order event's body carries the order's view as the API shows it: queried once, when the
        dispatcher first sees the event (normally within a poll interval of it), and kept."""
        stalled: set[str] = set()  # orders whose view did not come this round: their later events wait too
        for _ in range(BUILD_FETCHES):
            events = await asyncio.to_thread(dispatch.unbuilt_events, self._sessions, BATCH, stalled)
            for event in events:
                await self._build_body(event, stalled)
            if len(events) < BATCH:
                return

    async def _build_body(self, event: dispatch.UnbuiltEvent, stalled: set[str]) -> None:
        if event.order_id in stalled:
            return
        try:
            async with asyncio.timeout(VIEW_TIMEOUT):
                view = redacted_view(await order_view(self._client, event.order_id))
        except (UnknownOrder, Refused) as exc:  # no live view (gone past retention, unreadable)
            log.info("webhook event %s goes without the order's view: %s", event.id, exc)
            view = None
        except (RPCError, TimeoutError) as exc:  # Temporal away, or this order's run stuck: next round
            log.warning("order view of %s unavailable, its webhooks wait: %s", event.order_id, exc)
            stalled.add(event.order_id)
            return
        body = message_body(WebhookEventType(event.type), event.occurred_at, {**event.data, "order": view})
        await asyncio.to_thread(dispatch.set_body, self._sessions, event.id, body)

    async def _attempt(self, http: httpx.AsyncClient, due: dispatch.Due, now: datetime | None) -> None:
        outcome = await self._send(http, due)
        ended = now or datetime.now(UTC)
        status = await asyncio.to_thread(
            dispatch.record_outcome, self._sessions, due, outcome, ended, self._policy
        )
        if not outcome.ok:
            log.info(
                "webhook %s to %s attempt %d failed (%s): %s",
                due.message_id,
                due.subscription_id,
                due.attempt,
                outcome.status_code or outcome.error,
                status.value,
            )

    async def _send(self, http: httpx.AsyncClient, due: dispatch.Due) -> dispatch.Outcome:
        started = time.monotonic()

        def elapsed() -> int:
            return round((time.monotonic() - started) * 1000)

        try:
            target = await asyncio.to_thread(resolve, due.url, self._settings.webhook_allow_private)
        except TargetRefused as exc:
            return dispatch.Outcome(None, elapsed(), f"refused: {exc}")
        body = due.body.encode()
        url = httpx.URL(due.url)
        request = http.build_request(
            "POST",
            # to the address just checked, not the name again (DNS could answer otherwise the second
            # time); the name goes in Host and, for TLS, in SNI and the certificate check
            url.copy_with(host=str(target.address)),
            content=body,
            headers={
                "host": url.netloc.decode("ascii"),
                "content-type": "application/json",
                **signed_headers(due.secrets, due.message_id, datetime.now(UTC), body),
            },
            extensions={"sni_hostname": target.host},
        )
        try:
            async with asyncio.timeout(self._settings.webhook_timeout.total_seconds()):
                response = await http.send(request, stream=True)
                try:
                    excerpt = await _excerpt(response)
                finally:
                    await response.aclose()
        except TimeoutError:
            return dispatch.Outcome(None, elapsed(), f"timed out after {self._settings.webhook_timeout}")
        except httpx.HTTPError as exc:
            return dispatch.Outcome(None, elapsed(), f"{type(exc).__name__}: {exc}"[:500])
        return dispatch.Outcome(response.status_code, elapsed(), None, excerpt)


async def _excerpt(response: httpx.Response) -> str:
    """The start of the answer's body, for the delivery log (never the whole of a large one)."""
    kept = b""
    async for chunk in response.aiter_bytes():
        kept += chunk
        if len(kept) >= dispatch.EXCERPT:
            break
    return kept[: dispatch.EXCERPT].decode("utf-8", errors="replace")
