"""The two doors an order's outside parties use, with one interface for the driver: the client layer
(`services.*` over the Temporal client, as the command line does) and the HTTP API (`python -m api`, with
an API key per role, as order sources, support staff, warehouses and carriers do).

Both raise what the client layer raises: Refused (ReportTooEarly for a report that came too early),
UnknownOrder; a fault is a transient error the driver retries (the HTTP door's 503, 504, a timeout or a
refused connection). The HTTP door counts every answer, those given while the database is cut apart,
and records every answer that is a server error (5xx other than 503/504) or that refuses a valid
request: the driver reports them as violations.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from chaos.orders import PlannedOrder
from config import Settings
from db import SessionFactory
from domain.api_keys import Role as KeyRole
from models.fulfilment import CarrierEvent, PickedLine, ResolveRequest, WarehouseReport, WarehouseStep
from models.orders import FeedbackIn, OrderPolicy, OrderView, ReturnCondition, ReturnIn, ReturnReceipt
from models.shipping import CarrierEventType, Resolution
from services import fulfilment, orders, replenishment
from services import stock as stock_changes
from services.fulfilment import ReportTooEarly
from services.orders import Refused, UnknownOrder

ATTEMPT_TIMEOUT = 30.0


class HttpTransient(Exception):
    """The API could not answer now (503, 504, a timeout, no connection): the same request again later.
    `status`: its HTTP status, or what happened instead."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status


class HttpWrong(HttpTransient):
    """The API answered a server error (but 503 and 504): a violation, and retried all the same so that
    the order still ends."""


class HttpRefusedValid(Exception):
    """The API refused a valid request (a 4xx but 404 and 409): a violation; not retried."""


@dataclass
class Placed:
    created: bool
    same_order: bool = True


class ClientDoor:
    name = "client"

    def __init__(
        self, client: Any, settings: Settings, reads: SessionFactory, writes: SessionFactory
    ) -> None:
        self.client, self.settings, self.reads, self.writes = client, settings, reads, writes

    async def place(self, order: PlannedOrder, policy: OrderPolicy) -> Placed:
        placement = await orders.place_order(self.client, self.settings, order.order, policy)
        return Placed(placement.created, placement.same_order)

    async def cancel(self, order_id: str, reason: str) -> None:
        await orders.cancel_order(self.client, order_id, reason, by="chaos-support")

    async def release(self, order_id: str) -> None:
        await orders.release_order(self.client, order_id, by="chaos-support")

    async def note(self, order_id: str, text: str) -> None:
        await orders.add_note(self.client, order_id, text, by="chaos-support")

    async def feedback(self, order_id: str, score: int, comment: str) -> None:
        await orders.give_feedback(
            self.client, order_id, FeedbackIn(score=score, comment=comment), by="chaos"
        )

    async def view(self, order_id: str) -> OrderView:
        return await orders.order_view(self.client, order_id)

    async def deliver(self, order_id: str, shipment_id: str, tracking: str | None) -> None:
        await orders.confirm_delivery(self.client, order_id, shipment_id, by="chaos-carrier")

    async def carrier_event(self, tracking: str, kind: CarrierEventType, event_id: str) -> str:
        event = CarrierEvent(
            tracking_number=tracking, type=kind, event_id=event_id, at=datetime.now(UTC), by="chaos-carrier"
        )
        return (await fulfilment.submit_carrier_event(self.client, self.reads, event)).detail

    async def report(
        self, shipment_id: str, step: WarehouseStep, lines: list[PickedLine], parcels: list[int]
    ) -> str:
        report = WarehouseReport(
            shipment_id=shipment_id, step=step, lines=lines, parcels_g=parcels, by="chaos-warehouse"
        )
        return (await fulfilment.submit_warehouse_report(self.client, report)).detail

    async def queue(self, warehouse: str) -> list[str]:
        listed = await asyncio.to_thread(fulfilment.warehouse_queue, self.reads, warehouse)
        return [s.shipment_id for s in listed]

    async def resolve(self, order_id: str, shipment_id: str, resolution: Resolution) -> None:
        request = ResolveRequest(shipment_id=shipment_id, resolution=resolution, by="chaos-support")
        await fulfilment.resolve_shipment(self.client, order_id, request)

    async def request_return(self, order_id: str, sku: str, quantity: int, reason: str) -> str:
        ret = await orders.request_return(
            self.client, order_id, ReturnIn(sku=sku, quantity=quantity, reason=reason), by="chaos-support"
        )
        return ret.rma

    async def receive_return(self, order_id: str, rma: str, condition: ReturnCondition) -> None:
        receipt = ReturnReceipt(rma=rma, condition=condition, by="chaos-warehouse")
        await orders.receive_return(self.client, order_id, receipt)

    async def receive_stock(self, sku: str, warehouse: str, quantity: int) -> None:
        await stock_changes.receive(self.client, self.writes, sku, warehouse, quantity)

    async def offer_stock(self, skus: list[str]) -> None:
        await replenishment.release_backorders(self.client, self.reads, skus)


@dataclass
class ApiFigures:
    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)  # every answer by status (0: no answer)
    during_outage: Counter[str] = field(default_factory=Counter)  # answers while the database was cut
    wrong: list[str] = field(default_factory=list)  # 5xx (not 503/504) or a 4xx to a valid request


class HttpDoor:
    """The HTTP API, one key per role (created by domain.api_keys for the run)."""

    name = "http"

    def __init__(self, url: str, keys: dict[KeyRole, str], outage: asyncio.Event | None = None) -> None:
        self.url, self.keys, self.outage = url, keys, outage
        self.figures = ApiFigures()
        self.http = httpx.AsyncClient(
            base_url=url, timeout=ATTEMPT_TIMEOUT, limits=httpx.Limits(max_connections=40)
        )

    async def close(self) -> None:
        await self.http.aclose()

    async def request(
        self, method: str, path: str, role: KeyRole, body: Any = None, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        """One request; raises as the client layer would (see the module's docstring)."""
        self.figures.requests += 1
        outage = self.outage is not None and self.outage.is_set()
        auth = {"Authorization": f"Bearer {self.keys[role]}"} | (headers or {})
        try:
            answer = await self.http.request(method, path, json=body, headers=auth)
        except httpx.TimeoutException:
            self._count(0, outage, "hang")
            raise HttpTransient(
                "hang", f"{method} {path}: no answer within {ATTEMPT_TIMEOUT:.0f} s"
            ) from None
        except httpx.TransportError as exc:
            self._count(0, outage, type(exc).__name__)
            raise HttpTransient(type(exc).__name__, f"{method} {path}: {type(exc).__name__}") from None
        status = answer.status_code
        self._count(status, outage, str(status))
        if status < 300:
            return answer
        error, detail = _error_of(answer)
        if status in (503, 504):
            raise HttpTransient(str(status), f"{status} {error}: {detail}")
        if status == 409:
            raise (ReportTooEarly if error == "too_early" else Refused)(detail)
        if status == 404:
            raise UnknownOrder(f"{path}: {detail}")
        what = f"{method} {path} answered {status} {answer.text[:300]!r}" + (
            " during the outage" if outage else ""
        )
        self.figures.wrong.append(what)
        raise HttpWrong(str(status), what) if status >= 500 else HttpRefusedValid(what)

    def _count(self, status: int, outage: bool, label: str) -> None:
        self.figures.statuses[status] += 1
        if outage:
            self.figures.during_outage[label] += 1

    async def place(self, order: PlannedOrder, policy: OrderPolicy) -> Placed:
        """POST /orders; every other one names its order id in the Idempotency-Key header instead of the
        body. Its policy is the API's settings (the run starts the API with DEFAULT_POLICY)."""
        doc = order.order.model_dump(mode="json", exclude_none=True)
        headers = {}
        if sum(map(ord, order.order_id)) % 2:
            headers["Idempotency-Key"] = doc.pop("order_id")
        answer = await self.request("POST", "/orders", KeyRole.source, doc, headers)
        return Placed(created=answer.status_code == 201)

    async def cancel(self, order_id: str, reason: str) -> None:
        await self.request("POST", f"/orders/{order_id}/cancel", KeyRole.support, {"reason": reason})

    async def release(self, order_id: str) -> None:
        await self.request("POST", f"/orders/{order_id}/release", KeyRole.support)

    async def note(self, order_id: str, text: str) -> None:
        await self.request("POST", f"/orders/{order_id}/notes", KeyRole.support, {"text": text})

    async def feedback(self, order_id: str, score: int, comment: str) -> None:
        body = {"score": score, "comment": comment}
        await self.request("POST", f"/orders/{order_id}/feedback", KeyRole.source, body)

    async def view(self, order_id: str) -> OrderView:
        answer = await self.request("GET", f"/orders/{order_id}", KeyRole.support)
        return OrderView.model_validate(answer.json())

    async def deliver(self, order_id: str, shipment_id: str, tracking: str | None) -> None:
        """The carrier's `delivered` event, with an event id of its own (a repeat is a duplicate)."""
        if tracking is None:
            raise Refused(f"{shipment_id} has no tracking number yet")
        await self.carrier_event(tracking, CarrierEventType.delivered, f"chaos-delivered-{shipment_id}")

    async def carrier_event(self, tracking: str, kind: CarrierEventType, event_id: str) -> str:
        body = {"tracking_number": tracking, "type": kind.value, "event_id": event_id, "place": "chaos hub"}
        answer = await self.request("POST", "/carrier/events", KeyRole.carrier, body)
        if answer.json().get("duplicate"):
            raise Refused(f"duplicate: {answer.json().get('detail')}")
        return str(answer.json().get("detail") or "")

    async def report(
        self, shipment_id: str, step: WarehouseStep, lines: list[PickedLine], parcels: list[int]
    ) -> str:
        body: dict[str, Any] = {"lines": [x.model_dump() for x in lines]} if lines else {}
        if step == WarehouseStep.packed:
            body["parcels_g"] = parcels
        path = f"/shipments/{shipment_id}/{step.value.replace('_', '-')}"
        answer = await self.request("POST", path, KeyRole.warehouse, body)
        return str(answer.json().get("detail", ""))

    async def queue(self, warehouse: str) -> list[str]:
        answer = await self.request("GET", f"/warehouses/{warehouse}/queue", KeyRole.warehouse)
        return [s["shipment_id"] for s in answer.json()]

    async def resolve(self, order_id: str, shipment_id: str, resolution: Resolution) -> None:
        path = f"/orders/{order_id}/shipments/{shipment_id}/resolution"
        await self.request("POST", path, KeyRole.support, {"resolution": resolution.value})

    async def request_return(self, order_id: str, sku: str, quantity: int, reason: str) -> str:
        body = {"sku": sku, "quantity": quantity, "reason": reason}
        answer = await self.request("POST", f"/orders/{order_id}/returns", KeyRole.support, body)
        return str(answer.json()["rma"])

    async def receive_return(self, order_id: str, rma: str, condition: ReturnCondition) -> None:
        path = f"/orders/{order_id}/returns/{rma}/receipt"
        await self.request("POST", path, KeyRole.warehouse, {"condition": condition.value})

    async def receive_stock(self, sku: str, warehouse: str, quantity: int) -> None:
        body = {"sku": sku, "warehouse": warehouse, "quantity": quantity}
        await self.request("POST", "/stock/receipts", KeyRole.warehouse, body)

    async def offer_stock(self, skus: list[str]) -> None:
        raise NotImplementedError  # the driver offers stock again through the client layer


def _error_of(answer: httpx.Response) -> tuple[str, str]:
    try:
        body = answer.json()
        return str(body.get("error", "")), str(body.get("detail", answer.text[:200]))
    except ValueError:
        return "", answer.text[:200]
