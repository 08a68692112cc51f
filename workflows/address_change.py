"""A shipping address changed after release (docs/orders.md#order-edits): only until the handover, and
only if every warehouse holding one of the order's shipments accepts.

The order's `edit` update calls this part once the order is with its warehouses. Each released shipment's
warehouse is asked through the `Warehouse` adapter (`change_address`, an outside party's step); a refusal
refuses the edit with the warehouse's reason, after the warehouses that had accepted are asked to keep the
address they had, so nothing changes. A parcel already labelled gets a new label: the carrier is booked
again to the new address (`relabel_shipment`) and the old booking cancelled. The order records the address
and tells the customer (workflows/order.py) only once all of that is through.

Races: the edit is refused while a warehouse report is being acted on (`Inbox.pending`) or a shipment is
being released, and a report arriving while the edit is under way waits for it (`OrderWorkflow.warehouse_report`):
an edit is applied wholly before a report, or refused.
"""

from __future__ import annotations

from dataclasses import dataclass

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.fulfilment import FulfilmentActivities
    from models.events import OrderEventType
    from models.fulfilment import AddressChange, AddressChangeAnswer
    from models.orders import Address, ShipmentStatus, ShipmentView
    from models.steps import LabelResult, RelabelRequest, ShipmentRef
    from workflows.context import OrderContext
    from workflows.failures import business_refusal
    from workflows.parties import Inbox
    from workflows.saga import Saga

EDIT_REFUSED = "EditRefused"  # an edit refused once under way (nothing changed): the door's 409
# shipments a warehouse is working on, whose warehouse is asked
AT_A_WAREHOUSE = frozenset(
    {ShipmentStatus.released, ShipmentStatus.picking, ShipmentStatus.picked, ShipmentStatus.packed}
)


def refuse_edit(reason: str) -> ApplicationError:
    return ApplicationError(reason, type=EDIT_REFUSED, non_retryable=True)


@dataclass
class Relabelled:
    shipment: ShipmentView
    label: LabelResult


class AddressAfterRelease:
    def __init__(self, ctx: OrderContext, inbox: Inbox, saga: Saga) -> None:
        self._ctx, self._inbox, self._saga = ctx, inbox, saga
        self._bookings: dict[str, str] = {}  # shipment id -> its carrier booking's step, once relabelled
        self._relabels = 0

    def refusal(self) -> str | None:
        """Why the address cannot change now, in words; None: the warehouses may be asked. The edit's
        validator asks, and its handler again (a report may have been accepted in between)."""
        view = self._ctx.view
        order = view.order_id
        if handed := [s for s in view.shipments if s.shipped_at is not None]:
            parcels = ", ".join(f"{s.id} ({s.status.value})" for s in handed)
            return (
                f"order {order} was handed over to the carrier ({parcels}): its address can no longer be "
                "changed; once delivered, a return is the way back"
            )
        if busy := [s.id for s in view.shipments if self._inbox.pending(s.id)]:
            return (
                f"order {order}: a warehouse report on {', '.join(busy)} is being recorded: try the edit "
                "again in a moment"
            )
        if releasing := [s.id for s in view.shipments if s.status == ShipmentStatus.allocated]:
            return (
                f"order {order}: {', '.join(releasing)} is being released to its warehouse: try the edit "
                "again in a moment"
            )
        return None

    async def ask(self, address: Address, edit: int) -> list[Relabelled]:
        """Ask every warehouse working on a shipment, then relabel the parcels already labelled. Raises
        EDIT_REFUSED, with nothing changed, when a warehouse or the carrier refuses, or the order stops."""
        ctx = self._ctx
        was = ctx.request.order.shipping_address
        asked = [s for s in ctx.view.shipments if s.status in AT_A_WAREHOUSE]
        accepted: list[ShipmentView] = []
        for shipment in asked:
            answer = await self._ask(shipment, address, f"edit-{edit}")
            if not answer.accepted:
                await self._take_back(accepted, was, edit)
                raise refuse_edit(
                    f"order {ctx.order_id}: warehouse {shipment.warehouse} refused the new address for "
                    f"{shipment.id}: {answer.reason}; nothing was changed"
                )
            accepted.append(shipment)
        relabelled: list[Relabelled] = []
        for shipment in [s for s in asked if s.label_ref is not None]:
            if ctx.stop is not None:
                break
            try:
                relabelled.append(Relabelled(shipment, await self._relabel(shipment, address)))
            except ActivityError as err:
                if (reason := business_refusal(err)) is None:
                    raise
                for done in relabelled:  # back to the address they had
                    await self._relabel(done.shipment, was)
                await self._take_back(accepted, was, edit)
                raise refuse_edit(
                    f"order {ctx.order_id}: the carrier refused the new address for {shipment.id}: {reason}; "
                    "nothing was changed"
                ) from None
        if (
            ctx.stop is not None
        ):  # cancelled meanwhile: it ends with the address it had (new bookings cancelled)
            await self._take_back(accepted, was, edit)
            raise refuse_edit(f"order {ctx.order_id} is being cancelled: the edit was not applied")
        return relabelled

    async def announce(self, relabelled: list[Relabelled]) -> None:
        """Each parcel's new label, in the order's story (after its `order_edited`)."""
        for done in relabelled:
            label = done.label
            await self._ctx.event(
                OrderEventType.label_printed,
                f"{done.shipment.id}: relabelled for the new address: {label.carrier} {label.tracking_number} "
                f"({label.label_ref})",
            )

    async def _ask(self, shipment: ShipmentView, address: Address, key: str) -> AddressChangeAnswer:
        ctx = self._ctx
        request = AddressChange(
            order_id=ctx.order_id,
            shipment_id=shipment.id,
            warehouse=shipment.warehouse,
            address=address,
            labelled=shipment.label_ref is not None,
            key=ctx.key(f"address:{key}:{shipment.id}"),
        )
        answer: AddressChangeAnswer = await ctx.step(
            FulfilmentActivities.change_address,
            request,
            f"ask {shipment.warehouse} to send {shipment.id} to {address.city}",
        )
        return answer

    async def _take_back(self, accepted: list[ShipmentView], was: Address, edit: int) -> None:
        """The warehouses that accepted keep the address they had (the edit is refused)."""
        for shipment in accepted:
            answer = await self._ask(shipment, was, f"edit-{edit}-undo")
            if not answer.accepted:
                workflow.logger.warning("%s kept the refused edit's address: %s", shipment.id, answer.reason)

    async def _relabel(self, shipment: ShipmentView, address: Address) -> LabelResult:
        """Book the carrier again to `address` (its own booking step), cancel the booking the parcel had,
        and keep the new one's undo (a cancellation of the order cancels it)."""
        ctx = self._ctx
        self._relabels += 1
        booking = f"ship:{shipment.id}:relabel-{self._relabels}"
        request = RelabelRequest(
            order_id=ctx.order_id,
            shipment_id=shipment.id,
            warehouse=shipment.warehouse,
            weight_g=shipment.weight_g or 0,
            parcels=max(len(shipment.parcels_g), 1),
            address=address,
            booking=booking,
            replaces=self._bookings.get(shipment.id, f"ship:{shipment.id}"),
        )
        label: LabelResult = await ctx.step(
            FulfilmentActivities.relabel_shipment, request, f"relabel {shipment.id} for {address.city}"
        )
        self._bookings[shipment.id] = booking
        shipment.carrier, shipment.tracking_number = label.carrier, label.tracking_number
        shipment.label_ref = label.label_ref
        ref = ShipmentRef(order_id=ctx.order_id, shipment_id=shipment.id, booking=booking)
        self._saga.push(
            f"cancel the carrier booking {booking}",
            lambda retry: ctx.step(
                FulfilmentActivities.cancel_carrier_booking, ref, f"cancel booking {booking}", retry
            ),
            shipment.id,
        )
        if ctx.stop is not None:  # the order is ending: its compensation may be past this undo already
            await ctx.step(FulfilmentActivities.cancel_carrier_booking, ref, f"cancel booking {booking}")
        return label
