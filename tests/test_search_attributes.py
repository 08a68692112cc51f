"""The custom search attributes: registered once, and kept current by every order so operators can find it."""

from __future__ import annotations

import uuid

import pytest
from google.protobuf.duration_pb2 import Duration
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.api.workflowservice.v1 import RegisterNamespaceRequest
from temporalio.client import Client

from connection import ensure_search_attributes
from models import search_attributes as sa
from services.orders import confirm_delivery, handle
from tests.helpers import add_products, eventually, order_doc, place, unique, wait_status

EXPECTED_TYPES = {
    "OrderStatus": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
    "CustomerId": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
    "OrderChannel": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
    "OrderTotal": IndexedValueType.INDEXED_VALUE_TYPE_DOUBLE,
    "DeliveryOverdue": IndexedValueType.INDEXED_VALUE_TYPE_BOOL,
    "NeedsAttention": IndexedValueType.INDEXED_VALUE_TYPE_BOOL,
}


async def registered(client: Client) -> dict[str, int]:
    listed = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=client.namespace)
    )
    return dict(listed.custom_attributes)


async def test_search_attributes_are_registered_once(client: Client):
    # the `client` fixture has run ensure_search_attributes on the dev server's namespace
    assert {name: (await registered(client)).get(name) for name in EXPECTED_TYPES} == EXPECTED_TYPES
    assert await ensure_search_attributes(client) == []


async def test_a_fresh_namespace_gets_every_search_attribute(client: Client):
    namespace = f"oms-{uuid.uuid4().hex[:8]}"
    await client.workflow_service.register_namespace(
        RegisterNamespaceRequest(
            namespace=namespace, workflow_execution_retention_period=Duration(seconds=86400)
        )
    )
    fresh = await Client.connect(client.service_client.config.target_host, namespace=namespace)
    assert not set(EXPECTED_TYPES) & set(await registered(fresh))

    assert await ensure_search_attributes(fresh) == sorted(key.name for key in sa.ALL)
    assert {name: (await registered(fresh)).get(name) for name in EXPECTED_TYPES} == EXPECTED_TYPES
    assert await ensure_search_attributes(fresh) == []


@pytest.mark.usefixtures("worker")
async def test_an_order_keeps_its_search_attributes_current(client, settings, sessions):
    skus = add_products(sessions, {"TEE": 5}, price="19.90")
    customer = unique("CUST")
    doc = order_doc([(skus["TEE"], 2)], channel="phone")
    doc["customer"] = {**doc["customer"], "id": customer}
    order_id = await place(client, settings, doc)

    async def attributes():
        return (await handle(client, order_id).describe()).typed_search_attributes

    attrs = await eventually(attributes, lambda a: a.get(sa.ORDER_STATUS) == "shipped")
    assert attrs.get(sa.CUSTOMER_ID) == customer
    assert attrs.get(sa.ORDER_CHANNEL) == "phone"
    assert attrs.get(sa.ORDER_TOTAL) == 39.80
    assert attrs.get(sa.DELIVERY_OVERDUE) is None

    await wait_status(client, order_id, "shipped")
    await confirm_delivery(client, order_id)
    await eventually(attributes, lambda a: a.get(sa.ORDER_STATUS) == "delivered")

    async def found() -> list[str]:
        query = f"OrderStatus = 'delivered' AND CustomerId = '{customer}'"
        return [execution.id async for execution in client.list_workflows(query)]

    await eventually(found, lambda ids: ids == [f"order-{order_id}"])
