"""Customer data is ciphertext in Temporal: histories, query results, failures, summaries; the keys
rotate without losing old runs; a payload that cannot be opened says which key it needs."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import stat
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest
from temporalio.api.common.v1 import Payload, WorkflowExecution
from temporalio.api.enums.v1 import EventType
from temporalio.api.query.v1 import WorkflowQuery
from temporalio.api.workflowservice.v1 import QueryWorkflowRequest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import ActivitySerializationContext, DataConverter, WorkflowSerializationContext

from config import Settings
from domain.api_keys import Role, authenticate
from encryption.codec import COMPRESSION, KEY_ID, WORKFLOW_ID, EncryptionCodec, UndecryptablePayload
from encryption.converter import data_converter
from encryption.keys import CodecKeyError, KeyRing, format_keys, load_key_ring, parse_keys
from models.orders import OrderInput
from models.workflow_names import OrderQuery, order_workflow_id
from services.orders import add_note, confirm_delivery, handle, order_view, placed_order
from tests.conftest import TEMPORAL_BIN, TEST_CODEC_KEYS
from tests.helpers import add_products, order_doc, place, unique, wait_status
from worker import build_worker

pytestmark = pytest.mark.usefixtures("worker")

# Strings that identify the customer; none may appear anywhere Temporal keeps or shows in clear.
NAME, EMAIL, PHONE = "Philippa Quennell-Marsh", "philippa.qm@example.org", "+44 20 7946 0815"
STREET, NOTE_SECRET = "77 Wimpole Mews", "called from 07700 900461"
PERSONAL = (NAME, EMAIL, PHONE, STREET, NOTE_SECRET, "Quennell")


def personal_order(sku: str, **overrides: object) -> dict:
    return order_doc(
        [(sku, 1)],
        customer={"id": unique("C"), "name": NAME, "email": EMAIL, "phone": PHONE},
        shipping_address={
            "name": NAME,
            "line1": STREET,
            "city": "London",
            "postal_code": "W1G 8AF",
            "country": "GB",
        },
        **overrides,
    )


async def temporal_cli(client: Client, *args: str, check: bool = True) -> str:
    """The plain Temporal CLI, as anyone with access to the server would run it: no codec. (Async: a
    query needs the worker, which runs on this event loop.) Without `check`, a failure's output and
    error text come back instead of failing the test."""
    process = await asyncio.create_subprocess_exec(
        str(TEMPORAL_BIN),
        *args,
        "--address",
        client.service_client.config.target_host,
        "-o",
        "json",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    if check:
        assert process.returncode == 0, err.decode()
        return out.decode()
    assert process.returncode != 0, "expected the command to fail"
    return out.decode() + err.decode()


def assert_no_personal_data(text: str) -> None:
    found = [s for s in PERSONAL if s.lower() in text.lower()]
    assert not found, f"personal data in clear: {found}"


async def test_history_query_and_description_hold_no_personal_data_in_clear(client, settings, sessions):
    skus = add_products(sessions, {"LAMP": 3})
    order_id = await place(client, settings, personal_order(skus["LAMP"]))
    await wait_status(client, order_id, "shipped")
    await add_note(client, order_id, f"customer {NOTE_SECRET}", by="support-ana")
    await confirm_delivery(client, order_id)
    view = await wait_status(client, order_id, "delivered")
    assert any(e.type == "support_note" for e in view.events)
    workflow_id = order_workflow_id(order_id)

    history = await temporal_cli(client, "workflow", "show", "--workflow-id", workflow_id)
    assert_no_personal_data(history)
    assert '"binary/encrypted"' not in history  # metadata is base64 in the JSON: check by decoding
    started = json.loads(history)["events"][0]["workflowExecutionStartedEventAttributes"]
    metadata = {k: base64.b64decode(v) for k, v in started["input"]["payloads"][0]["metadata"].items()}
    assert _started_payload(history)[0] == b"binary/encrypted"
    assert metadata[KEY_ID] == parse_keys(TEST_CODEC_KEYS).current_id.encode()

    assert_no_personal_data(await temporal_cli(client, "workflow", "describe", "--workflow-id", workflow_id))
    assert_no_personal_data(
        await temporal_cli(
            client, "workflow", "query", "--workflow-id", workflow_id, "--name", OrderQuery.view.value
        )
    )

    # ...while the project's own client reads all of it
    placed = await placed_order(client, order_id)
    assert placed is not None and placed.customer.name == NAME
    description = await handle(client, order_id).describe()
    assert await description.static_summary() == f"web order {order_id} for customer {placed.customer.id}"
    assert not any(s in str(description.typed_search_attributes) for s in PERSONAL)
    details = await handle(client, order_id).query("__temporal_workflow_metadata")
    assert "delivered" in str(details) and NOTE_SECRET not in str(details)


async def test_a_failure_message_is_encrypted_too(client, settings, sessions):
    skus = add_products(sessions, {"LAMP": 3})
    order_id = await place(
        client, settings, personal_order(skus["LAMP"], payment={"method": "card", "token": "tok_declined"})
    )
    view = await wait_status(client, order_id, "rejected")
    assert any("card_declined" in e.detail for e in view.events)
    history = await temporal_cli(client, "workflow", "show", "--workflow-id", order_workflow_id(order_id))
    assert "card_declined" not in history and "Encoded failure" in history
    assert_no_personal_data(history)


async def test_no_log_line_carries_personal_data(client, settings, sessions, caplog):
    skus = add_products(sessions, {"LAMP": 3})
    with caplog.at_level(logging.INFO):
        ok = await place(client, settings, personal_order(skus["LAMP"]))
        declined = await place(
            client,
            settings,
            personal_order(skus["LAMP"], payment={"method": "card", "token": "tok_declined"}),
        )
        await wait_status(client, ok, "shipped")
        await add_note(client, ok, f"customer {NOTE_SECRET}")
        await wait_status(client, declined, "rejected")
        await confirm_delivery(client, ok)
        await wait_status(client, ok, "delivered")
    assert caplog.records, "the worker logs at INFO: nothing captured means the check proves nothing"
    assert_no_personal_data("\n".join(r.getMessage() for r in caplog.records))


async def test_a_run_encrypted_under_an_old_key_carries_on_after_rotation(client, settings, sessions):
    """Place under the current key; a worker and client that were given a rotated ring (a new key in
    front, the old one kept) finish the order; its history then holds both key ids."""
    old = parse_keys(TEST_CODEC_KEYS)
    rotated = old.rotated("next-key")
    assert rotated.current_id == "next-key" and rotated.ids[1:] == old.ids
    skus = add_products(sessions, {"LAMP": 3})
    queue = settings.model_copy(update={"task_queue": f"{settings.task_queue}-rotated"})
    order_id = await place(client, queue, personal_order(skus["LAMP"]))  # no worker polls it yet

    after = Client(client.service_client, namespace=client.namespace, data_converter=data_converter(rotated))
    async with build_worker(after, sessions, queue):
        await wait_status(after, order_id, "shipped")
        assert (await placed_order(after, order_id)).customer.name == NAME  # type: ignore[union-attr]

    key_ids = set()
    async for event in handle(client, order_id).fetch_history_events():
        for p in _payloads_of(event):
            key_ids.add(p.metadata.get(KEY_ID, b"").decode())
    assert {old.current_id, "next-key"} <= key_ids

    # a ring that dropped the old key cannot read the run, and says which key it needs
    forgetful = KeyRing((rotated.keys[0],))
    started = await _started_input(client, order_id)
    with pytest.raises(UndecryptablePayload, match=f"key '{old.current_id}'.*no such key.*next-key"):
        await EncryptionCodec(forgetful).decode([started])


async def test_a_tampered_payload_fails_with_the_key_id(client, settings, sessions):
    skus = add_products(sessions, {"LAMP": 3})
    order_id = await place(client, settings, personal_order(skus["LAMP"]))
    started = await _started_input(client, order_id)
    codec = EncryptionCodec(parse_keys(TEST_CODEC_KEYS))
    assert (await codec.decode([started]))[0].metadata["encoding"] == b"json/plain"
    assert started.metadata[WORKFLOW_ID] == order_workflow_id(order_id).encode()

    flipped = Payload()
    flipped.CopyFrom(started)
    flipped.data = started.data[:-1] + bytes([started.data[-1] ^ 1])
    moved = Payload()  # the same ciphertext claimed for another workflow
    moved.CopyFrom(started)
    moved.metadata[WORKFLOW_ID] = b"order-SOMEONE-ELSE"
    for bad in (flipped, moved):
        with pytest.raises(UndecryptablePayload, match=r"key 'test-2026-11'.*fails authentication"):
            await codec.decode([bad])
    with pytest.raises(Exception, match="Unknown payload encoding binary/encrypted"):  # nor can plain JSON
        await pydantic_data_converter.decode([started], [OrderInput])


async def _started_input(client: Client, order_id: str) -> Payload:
    async for event in handle(client, order_id).fetch_history_events():
        assert event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED
        return event.workflow_execution_started_event_attributes.input.payloads[0]
    raise AssertionError("no history")


def _payloads_of(event) -> list[Payload]:  # type: ignore[no-untyped-def]
    found: list[Payload] = []

    def walk(message) -> None:  # type: ignore[no-untyped-def]
        for field, value in message.ListFields():
            if field.message_type is None:
                continue
            values = value if isinstance(value, Sequence) else [value]
            for v in values:
                if isinstance(v, Payload):
                    found.append(v)
                elif hasattr(v, "ListFields"):
                    walk(v)

    walk(event)
    return found


# ---- the codec and its keys, without a server ----


async def test_large_payloads_are_compressed_before_encryption_and_small_ones_are_not():
    codec = EncryptionCodec(parse_keys(TEST_CODEC_KEYS))
    big = OrderInput.model_validate(order_doc([(f"SKU-{n:04d}", 1 + n % 5) for n in range(200)]))
    small = OrderInput.model_validate(order_doc([("SKU-1", 1)]))
    (big_plain,) = pydantic_data_converter.payload_converter.to_payloads([big])
    (small_plain,) = pydantic_data_converter.payload_converter.to_payloads([small])
    big_sealed, small_sealed = await codec.encode([big_plain, small_plain])
    assert big_sealed.metadata[COMPRESSION] == b"zlib"
    assert len(big_sealed.data) < len(big_plain.data) / 3  # 200 similar lines shrink a lot
    assert COMPRESSION not in small_sealed.metadata
    assert len(small_sealed.data) == len(small_plain.SerializeToString()) + 12 + 16  # nonce + tag
    assert await codec.decode([big_sealed, small_sealed]) == [big_plain, small_plain]


async def test_a_converter_bound_to_a_workflow_names_it_and_builds_no_new_converters(monkeypatch):
    """The SDK binds the converter to the workflow (or the activity of one) for every payload a workflow
    task carries. The bound converter writes the workflow id in the clear metadata, the unbound one
    reads what it wrote, and binding builds no new pydantic or failure converter (it did, for every
    payload, only to drop them)."""
    converter = data_converter(parse_keys(TEST_CODEC_KEYS))
    built: list[DataConverter] = []
    build = DataConverter.__post_init__
    monkeypatch.setattr(DataConverter, "__post_init__", lambda self: (built.append(self), build(self))[1])
    order = OrderInput.model_validate(order_doc([("SKU-1", 2)]))
    on_workflow = WorkflowSerializationContext(namespace="default", workflow_id="order-A1")
    on_activity = ActivitySerializationContext(
        namespace="default",
        activity_id="3",
        activity_type="reserve_stock",
        activity_task_queue="oms",
        workflow_id="order-A1",
        workflow_type="OrderWorkflow",
        is_local=True,
    )
    for context in (on_workflow, on_activity):
        bound = converter.with_context(context)
        assert bound.payload_converter is converter.payload_converter
        assert bound.failure_converter is converter.failure_converter
        (sealed,) = await bound.encode([order])
        assert sealed.metadata[WORKFLOW_ID] == b"order-A1"
        assert await converter.decode([sealed], [OrderInput]) == [order]
    assert (
        converter.with_context(on_workflow).with_context(on_activity).payload_codec.workflow_id == "order-A1"
    )
    (unbound,) = await converter.encode([order])
    assert WORKFLOW_ID not in unbound.metadata
    assert built == []


async def test_a_plain_payload_from_before_the_codec_still_decodes():
    (plain,) = pydantic_data_converter.payload_converter.to_payloads([{"kept": "as written"}])
    assert await EncryptionCodec(parse_keys(TEST_CODEC_KEYS)).decode([plain]) == [plain]


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("", "at least one key"),
        ("nokey", "entry 1: write it as ID:KEY"),
        ("bad id!:" + "A" * 43, "entry 1: write it as ID:KEY"),
        ("k1:c2hvcnQ", "'k1': the key must be 32 bytes"),
        ("k1:" + "%" * 43, "'k1': the key must be 32 bytes"),
        (f"{TEST_CODEC_KEYS},{TEST_CODEC_KEYS}", "appears twice"),
    ],
)
def test_a_bad_key_setting_is_refused_without_showing_the_key(setting, message):
    with pytest.raises(CodecKeyError, match=message) as caught:
        parse_keys(setting)
    assert TEST_CODEC_KEYS.split(":")[1] not in str(caught.value)


def test_the_ring_never_shows_its_keys():
    ring = parse_keys(TEST_CODEC_KEYS)
    assert TEST_CODEC_KEYS.split(":")[1] not in repr(ring) + str(ring)


def test_the_embedded_default_key_is_generated_once_owner_only_and_shared(tmp_path):
    key_file = tmp_path / "codec-keys"
    rings: list[KeyRing] = []
    threads = [threading.Thread(target=lambda: rings.append(load_key_ring(None, key_file))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({format_keys(r) for r in rings}) == 1  # every racer got the same key
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert format_keys(load_key_ring(None, key_file)) == format_keys(rings[0])
    assert load_key_ring(TEST_CODEC_KEYS, key_file).ids == ["test-2026-11"]  # the setting wins


def _starter(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "starter.py", *args],
        cwd=Path(__file__).parent.parent,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
    )


def test_codec_rotate_prints_the_new_setting_for_an_environment_key(tmp_path):
    done = _starter("codec", "rotate", env={"OMS_CODEC_KEYS": TEST_CODEC_KEYS})
    assert done.returncode == 0, done.stderr
    setting = done.stdout.strip().splitlines()[-1]
    assert setting.startswith("OMS_CODEC_KEYS=")
    ring = parse_keys(setting.removeprefix("OMS_CODEC_KEYS="))
    assert ring.ids[1:] == ["test-2026-11"] and ring.keys[1:] == parse_keys(TEST_CODEC_KEYS).keys
    assert TEST_CODEC_KEYS.split(":")[1] not in done.stderr


def test_codec_rotate_rewrites_the_embedded_key_file_and_shows_no_key(tmp_path):
    key_file = tmp_path / "codec-keys"
    before = load_key_ring(None, key_file)
    env = {"OMS_CODEC_KEYS": "", "OMS_CODEC_KEY_FILE": str(key_file)}
    done = _starter("codec", "rotate", env=env)
    assert done.returncode == 0, done.stderr
    after = load_key_ring(None, key_file)
    assert after.ids[1:] == before.ids and after.keys[1:] == before.keys
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    for _, key in after.keys:
        assert format_keys(KeyRing((("x", key),))).split(":")[1] not in done.stdout + done.stderr
    listed = _starter("codec", "keys", env=env)
    assert listed.returncode == 0, listed.stderr
    assert after.current_id in listed.stdout and "encrypts" in listed.stdout


def test_settings_read_the_codec_keys_as_a_secret():
    settings = Settings(codec_keys=TEST_CODEC_KEYS)  # type: ignore[arg-type]
    assert TEST_CODEC_KEYS.split(":")[1] not in repr(settings)


async def test_a_query_answer_is_ciphertext_to_a_client_without_the_codec(client, settings, sessions):
    skus = add_products(sessions, {"LAMP": 3})
    order_id = await place(client, settings, personal_order(skus["LAMP"]))
    await wait_status(client, order_id, "shipped")
    answered = await client.workflow_service.query_workflow(  # the raw answer, as the server relays it
        QueryWorkflowRequest(
            namespace=client.namespace,
            execution=WorkflowExecution(workflow_id=order_workflow_id(order_id)),
            query=WorkflowQuery(query_type=OrderQuery.view.value),
        )
    )
    (answer,) = answered.query_result.payloads
    assert answer.metadata["encoding"] == b"binary/encrypted"
    assert NAME.encode() not in answer.data
    assert (await order_view(client, order_id)).status == "shipped"


def test_codec_generate_prints_a_fresh_setting_for_a_new_deployment():
    done = _starter("codec", "generate", env={"OMS_CODEC_KEYS": TEST_CODEC_KEYS})
    assert done.returncode == 0, done.stderr
    ring = parse_keys(done.stdout.strip().removeprefix("OMS_CODEC_KEYS="))
    assert len(ring.ids) == 1 and ring.keys != parse_keys(TEST_CODEC_KEYS).keys


async def test_the_temporal_cli_decodes_through_the_codec_server_and_the_read_is_audited(
    client, settings, sessions, api, api_keys
):
    skus = add_products(sessions, {"LAMP": 3})
    order_id = await place(client, settings, personal_order(skus["LAMP"]))
    workflow_id = order_workflow_id(order_id)
    await wait_status(client, order_id, "shipped")
    codec = ("--codec-endpoint", f"{api.url}/codec")

    decoded = await temporal_cli(
        client,
        "workflow",
        "show",
        "--workflow-id",
        workflow_id,
        *codec,
        "--codec-auth",
        f"Bearer {api_keys[Role.support]}",
    )
    encoding, data = _started_payload(decoded)
    assert encoding == b"json/plain" and NAME in data.decode() and STREET in data.decode()
    # a carrier's key may not read customer data: the codec server refuses it, and the CLI says so
    refused = await temporal_cli(
        client,
        "workflow",
        "show",
        "--workflow-id",
        workflow_id,
        *codec,
        "--codec-auth",
        f"Bearer {api_keys[Role.carrier]}",
        check=False,
    )
    assert_no_personal_data(refused)

    done = _starter("codec", "audit", "--json", env={"OMS_DATABASE_URL": settings.database_url})
    assert done.returncode == 0, done.stderr
    mine = [u for u in json.loads(done.stdout) if workflow_id in u["workflow_ids"]]
    assert mine and all(u["operation"] == "decode" and u["via"] == "api_key" for u in mine)
    assert {u["actor"] for u in mine} == {_key_name(sessions, api_keys[Role.support])}
    assert_no_personal_data(done.stdout)


def _key_name(sessions, key: str) -> str:  # type: ignore[no-untyped-def]
    who = authenticate(sessions, key)
    assert who is not None
    return who.name


def _started_payload(cli_json: str) -> tuple[bytes, bytes]:
    """(encoding, data) of the workflow input in `temporal workflow show -o json` output."""
    started = json.loads(cli_json)["events"][0]["workflowExecutionStartedEventAttributes"]
    (payload,) = started["input"]["payloads"]
    return base64.b64decode(payload["metadata"]["encoding"]), base64.b64decode(payload["data"])
