"""The codec server through the real API process, as the Temporal Web UI and CLI call it: protobuf JSON
Payloads in and out, a support key or the console's session, CORS for the Web UI's origin only, the
size limit, undecryptable payloads, and the audit trail (rows and log, never a payload)."""

from __future__ import annotations

import base64
import json
import os
from typing import Any

import httpx
import pytest
from google.protobuf.json_format import MessageToDict, ParseDict
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.converter import WorkflowSerializationContext

from config import Settings
from domain.api_keys import Role
from domain.codec_audit import CodecUse, Via, recent_codec_uses
from encryption.codec import COMPRESSION, ENCODING, EncryptionCodec
from encryption.converter import key_ring
from encryption.keys import KeyRing
from tests.helpers import as_, unique
from tests.test_console_session import key_name, sign_in

DECODE, ENCODE = "/codec/decode", "/codec/encode"


@pytest.fixture(scope="module")
def codec(settings: Settings) -> EncryptionCodec:
    """The workers' codec: the API process reads the same keys (OMS_CODEC_KEYS, set by the conftest)."""
    return EncryptionCodec(key_ring(settings))


def plain(value: Any) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=json.dumps(value).encode())


def sealed(codec: EncryptionCodec, workflow_id: str, *payloads: Payload) -> list[Payload]:
    """Encrypted as a worker running `workflow_id` would."""
    context = WorkflowSerializationContext(namespace="default", workflow_id=workflow_id)
    own = codec.with_context(context)
    return [own.encrypt(p) for p in payloads]


def body(*payloads: Payload) -> dict[str, Any]:
    return {"payloads": [MessageToDict(p) for p in payloads]}


def payloads_of(answer: httpx.Response) -> list[Payload]:
    assert answer.status_code == 200, answer.text
    return list(ParseDict(answer.json(), Payloads()).payloads)


def uses_of(sessions, workflow_id: str) -> list[CodecUse]:
    return [u for u in recent_codec_uses(sessions, limit=500) if workflow_id in u.workflow_ids.split(",")]


async def test_a_support_key_decodes_what_a_worker_encrypted(http, api_keys, codec):
    order = {"customer": {"name": "Ada Lovelace", "email": "ada@example.com"}, "note": unique("n")}
    big = {"lines": [{"sku": f"SKU-{i}", "quantity": i, "name": "Blue ceramic mug"} for i in range(400)]}
    originals = [plain(order), plain(big), Payload(metadata={"encoding": b"binary/null"})]
    encrypted = sealed(codec, unique("order"), *originals)
    assert all(p.metadata["encoding"] == ENCODING for p in encrypted)
    assert encrypted[1].metadata[COMPRESSION] == b"zlib"  # the big one went through zlib
    assert b"Ada Lovelace" not in encrypted[0].data

    answer = await http.post(DECODE, json=body(*encrypted), headers=as_(api_keys, Role.support))
    assert payloads_of(answer) == originals  # byte for byte, metadata included
    assert answer.headers["content-type"] == "application/json"


async def test_the_console_session_decodes_for_the_web_ui(http, api, api_keys, codec, sessions, settings):
    """What the Web UI's browser does: a session from the sign-in form, then a cross-origin fetch with
    credentials from the UI's origin, with no key."""
    ui = settings.temporal_ui_origins[0]
    workflow_id = unique("order")
    original = plain({"customer": "Grace Hopper"})
    assert (await sign_in(http, api_keys[Role.support])).status_code == 303

    answer = await http.post(
        DECODE,
        json=body(*sealed(codec, workflow_id, original)),
        headers={"Origin": ui, "X-Namespace": "default"},
    )
    assert payloads_of(answer) == [original]
    assert answer.headers["access-control-allow-origin"] == ui
    assert answer.headers["access-control-allow-credentials"] == "true"
    [use] = uses_of(sessions, workflow_id)
    assert (use.actor, use.via, use.origin, use.namespace) == (
        key_name(sessions, api_keys[Role.support]),
        Via.session,
        ui,
        "default",
    )


async def test_no_credentials_is_401_and_another_role_is_403(http, api_keys, codec):
    payloads = body(*sealed(codec, unique("order"), plain("secret")))
    missing = await http.post(DECODE, json=payloads)
    assert missing.status_code == 401 and missing.json()["error"] == "unauthenticated"
    assert missing.headers["www-authenticate"] == "Bearer"
    unknown = await http.post(DECODE, json=payloads, headers={"Authorization": "Bearer oms_not-a-real-key"})
    assert unknown.status_code == 401 and unknown.json()["detail"] == "unknown or revoked API key"
    for role in (Role.carrier, Role.source, Role.warehouse):
        for path in (DECODE, ENCODE):
            refused = await http.post(path, json=payloads, headers=as_(api_keys, role))
            assert refused.status_code == 403, (role, path, refused.text)
            assert refused.json()["detail"].startswith(f"a {role.value} key may not do this")
    admin = await http.post(DECODE, json=payloads, headers=as_(api_keys, Role.admin))
    assert admin.status_code == 200


async def test_a_foreign_origin_is_refused_and_nothing_is_decoded(http, api, api_keys, codec, sessions):
    workflow_id = unique("order")
    payloads = body(*sealed(codec, workflow_id, plain("secret")))
    support = as_(api_keys, Role.support)
    for origin in ("http://evil.example", "http://127.0.0.1:1", "null"):
        answer = await http.post(DECODE, json=payloads, headers={**support, "Origin": origin})
        assert answer.status_code == 403, origin
        assert answer.json()["error"] == "origin_not_allowed"
        assert "secret" not in answer.text and "access-control-allow-origin" not in answer.headers
    assert uses_of(sessions, workflow_id) == []
    # the API's own origin (a page it serves) is not foreign
    own = await http.post(DECODE, json=payloads, headers={**support, "Origin": api.url})
    assert own.status_code == 200


def preflight(origin: str, path: str = DECODE) -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,x-namespace",
    }


async def test_cors_answers_the_web_ui_on_codec_paths_only(http, settings):
    ui = settings.temporal_ui_origins[0]
    for path in (DECODE, ENCODE):
        answer = await http.options(path, headers=preflight(ui))
        assert answer.status_code == 200, answer.text
        assert answer.headers["access-control-allow-origin"] == ui
        assert answer.headers["access-control-allow-credentials"] == "true"
        assert "POST" in answer.headers["access-control-allow-methods"]
        allowed = answer.headers["access-control-allow-headers"].lower()
        assert {"content-type", "x-namespace", "authorization"} <= {h.strip() for h in allowed.split(",")}

    foreign = await http.options(DECODE, headers=preflight("http://evil.example"))
    assert "access-control-allow-origin" not in foreign.headers
    assert "access-control-allow-credentials" not in foreign.headers
    # the rest of the API has no CORS at all, not even for the Web UI
    elsewhere = await http.options("/orders", headers=preflight(ui))
    assert "access-control-allow-origin" not in elsewhere.headers


async def test_a_body_over_the_limit_is_413(http, api_keys, settings):
    huge = b'{"payloads": [{"data": "' + b"A" * settings.codec_max_body + b'"}]}'
    answer = await http.post(
        DECODE, content=huge, headers={**as_(api_keys, Role.support), "Content-Type": "application/json"}
    )
    assert answer.status_code == 413 and answer.json()["error"] == "too_large"


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (b'{"payloads": [', "invalid_json"),
        (b"\xff\xfe not utf-8", "invalid_json"),
        (b"[" * 5000, "invalid_json"),
        (b"[]", "invalid_payloads"),
        (b'{"payloads": "x"}', "invalid_payloads"),
        (b'{"payloads": [{"data": 5}]}', "invalid_payloads"),
        (b'{"payload": []}', "invalid_payloads"),
    ],
    ids=["truncated", "not-utf8", "nested", "array", "not-a-list", "data-not-base64", "unknown-field"],
)
async def test_a_body_that_is_not_payloads_is_400(http, api_keys, raw, error):
    answer = await http.post(
        DECODE, content=raw, headers={**as_(api_keys, Role.support), "Content-Type": "application/json"}
    )
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == error and answer.json()["problems"] == []
    assert "Traceback" not in answer.text


async def test_an_undecryptable_payload_fails_the_call_naming_the_key_id(http, api_keys, codec, sessions):
    support = as_(api_keys, Role.support)
    workflow_id = unique("order")
    good, bad = sealed(codec, workflow_id, plain("fine"), plain("tampered"))
    bad.data = bad.data[:-1] + bytes([bad.data[-1] ^ 1])
    tampered = await http.post(DECODE, json=body(good, bad), headers=support)
    assert tampered.status_code == 422
    assert tampered.json()["error"] == "undecryptable_payload"
    assert repr(codec.ring.current_id) in tampered.json()["detail"]
    assert "payloads" not in tampered.json()  # not even the payload that did decrypt

    stranger = EncryptionCodec(KeyRing((("retired-2019", os.urandom(32)),)))
    unknown = await http.post(DECODE, json=body(*sealed(stranger, workflow_id, plain("x"))), headers=support)
    assert unknown.status_code == 422
    assert "'retired-2019'" in unknown.json()["detail"]
    outcomes = sorted(u.outcome for u in uses_of(sessions, workflow_id))
    assert outcomes == [
        "refused: undecryptable, key retired-2019",
        f"refused: undecryptable, key {codec.ring.current_id}",
    ]


async def test_encode_then_decode_gives_back_the_same_payloads(http, api_keys, codec):
    support = as_(api_keys, Role.support)
    originals = [plain({"signal": "release", "by": "support"}), plain("x" * 5000)]
    encoded = payloads_of(await http.post(ENCODE, json=body(*originals), headers=support))
    assert [p.metadata["encoding"] for p in encoded] == [ENCODING, ENCODING]
    assert all(b"release" not in p.data for p in encoded)
    assert [codec.decrypt(p) for p in encoded] == originals  # a worker reads what the UI encoded
    assert payloads_of(await http.post(DECODE, json=body(*encoded), headers=support)) == originals


async def test_a_plain_payload_passes_through_decode_unchanged(http, api_keys):
    """Histories written before the codec: shown as they are."""
    old = [plain({"order_id": "T-1"}), Payload(metadata={"encoding": b"binary/plain"}, data=b"\x00\x01")]
    answer = await http.post(DECODE, json=body(*old), headers=as_(api_keys, Role.support))
    assert payloads_of(answer) == old
    empty = await http.post(DECODE, json={"payloads": []}, headers=as_(api_keys, Role.support))
    assert empty.json() == {"payloads": []}


async def test_every_call_is_audited_with_who_and_which_workflows_and_never_a_payload(
    http, api, api_keys, codec, sessions
):
    marker = unique("customer-secret")
    workflow_id = unique("order")
    other_workflow = unique("order")
    encrypted = [
        *sealed(codec, workflow_id, plain(marker), plain(marker)),
        *sealed(codec, other_workflow, plain(1)),
    ]
    answer = await http.post(
        DECODE, json=body(*encrypted), headers={**as_(api_keys, Role.support), "X-Namespace": "default"}
    )
    assert answer.status_code == 200
    name = key_name(sessions, api_keys[Role.support])

    [use] = uses_of(sessions, workflow_id)
    assert (use.actor, use.role, use.via, use.operation) == (name, "support", Via.api_key, "decode")
    assert use.workflow_ids == f"{workflow_id},{other_workflow}"
    assert (use.payloads, use.namespace, use.origin, use.outcome) == (3, "default", "", "ok")
    assert use.at.tzinfo is not None

    log = api.log()
    line = next(line for line in log.splitlines() if workflow_id in line)
    assert f"codec decode key={name} role=support via=api_key" in line and "payloads=3" in line
    assert marker not in log  # the plaintext
    for payload in encrypted:
        assert base64.b64encode(payload.data).decode()[:40] not in log  # nor the ciphertext
