"""The codec server: Temporal's remote codec protocol, for the Temporal Web UI and CLI. `/codec/decode`
opens the payloads the workers encrypted, for a support person; `/codec/encode` seals what the UI sends
(a signal's input, say) the way a worker would.

Bodies in and out are a `temporal.api.common.v1.Payloads` message in protobuf JSON. Every call is
audited (a `codec_audit` row and a line in `oms.api.audit`) before it is answered, and a database that
cannot take the row means no answer. A payload that cannot be opened fails the whole call, naming its
key id; it is never passed through, and no payload is ever logged.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from functools import partial
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from google.protobuf.json_format import MessageToDict, ParseDict, ParseError
from temporalio.api.common.v1 import Payload, Payloads

from api.auth import SupportViaKeyOrSession
from api.errors import ApiError, ErrorBody
from api.routes import JSON_BODY
from api.state import AppState, app_state
from domain.api_keys import Principal
from domain.codec_audit import CodecUse, Operation, Via, join_workflow_ids, record_codec_use
from encryption.codec import EncryptionCodec, UndecryptablePayload, workflow_of
from observability.metrics import CodecOutcome, count_codec_call

router = APIRouter(prefix="/codec", tags=["codec"])
State = Annotated[AppState, Depends(app_state)]
audit_log = logging.getLogger("oms.api.audit")

_PAYLOADS_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {"type": "object", "description": "temporal.api.common.v1.Payloads in protobuf JSON"},
            "example": {"payloads": [{"metadata": {"encoding": "YmluYXJ5L2VuY3J5cHRlZA=="}, "data": "..."}]},
        }
    },
}
_RESPONSES: dict[int | str, dict[str, object]] = {
    200: {"description": "the payloads, in the order sent (protobuf JSON)"},
    400: {"model": ErrorBody, "description": "the body is not a Payloads message in protobuf JSON"},
    401: {"model": ErrorBody, "description": "no API key or console session"},
    403: {"model": ErrorBody, "description": "a role other than support or admin, or a foreign Origin"},
    413: {"model": ErrorBody, "description": "larger than OMS_CODEC_MAX_BODY"},
    503: {"model": ErrorBody, "description": "the database is not answering: nothing was decoded"},
}


@router.post(
    "/decode",
    dependencies=[JSON_BODY],
    openapi_extra={"requestBody": _PAYLOADS_BODY},
    responses=_RESPONSES
    | {
        422: {
            "model": ErrorBody,
            "description": "a payload cannot be decrypted (error undecryptable_payload)",
        }
    },
    summary="Decrypt payloads (Temporal remote codec)",
)
async def decode(
    request: Request,
    who: SupportViaKeyOrSession,
    state: State,
    x_namespace: Annotated[str, Header()] = "",
) -> JSONResponse:
    """For the Temporal Web UI (Codec Server setting, with cross-origin credentials and a console
    session) and the CLI (`--codec-endpoint <api>/codec --codec-auth "Bearer <key>"`)."""
    return await _run(Operation.decode, request, who, state, x_namespace)


@router.post(
    "/encode",
    dependencies=[JSON_BODY],
    openapi_extra={"requestBody": _PAYLOADS_BODY},
    responses=_RESPONSES,
    summary="Encrypt payloads (Temporal remote codec)",
)
async def encode(
    request: Request,
    who: SupportViaKeyOrSession,
    state: State,
    x_namespace: Annotated[str, Header()] = "",
) -> JSONResponse:
    return await _run(Operation.encode, request, who, state, x_namespace)


async def _run(
    operation: Operation, request: Request, who: Principal, state: AppState, namespace: str
) -> JSONResponse:
    use = partial(
        CodecUse,
        actor=who.name,
        role=who.role.value,
        via=Via(request.state.via),
        operation=operation,
        namespace=namespace,
        origin=request.headers.get("origin", ""),
    )
    try:
        payloads = _parse(await request.body())
    except ApiError as refusal:
        await _audit(
            state, use(workflow_ids="", payloads=0, outcome=f"refused: {refusal.error}"), CodecOutcome.refused
        )
        raise
    workflow_ids = join_workflow_ids(workflow_of(p) for p in payloads)
    audited = partial(use, workflow_ids=workflow_ids, payloads=len(payloads))
    try:
        # AES and zlib over up to OMS_CODEC_MAX_BODY: off the event loop, like the database calls
        result = await run_in_threadpool(_apply, state.codec, operation, payloads)
    except UndecryptablePayload as exc:
        await _audit(
            state, audited(outcome=f"refused: undecryptable, key {exc.key_id}"), CodecOutcome.undecryptable
        )
        raise ApiError(422, "undecryptable_payload", str(exc)) from None
    await _audit(state, audited(outcome="ok"), CodecOutcome.ok)
    return JSONResponse({"payloads": [MessageToDict(p) for p in result]})


def _parse(raw: bytes) -> list[Payload]:
    try:
        document = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # ValueError: not JSON, or not UTF-8
        raise ApiError(400, "invalid_json", f"the body is not valid JSON: {str(exc)[:200]}") from None
    message = Payloads()
    try:
        if not isinstance(document, dict):  # protobuf's parser would take `[]` for an empty message
            raise ParseError(f"expected a JSON object, not {type(document).__name__}")
        ParseDict(document, message)
    except ParseError as exc:
        raise ApiError(
            400, "invalid_payloads", f"the body is not a Payloads message in protobuf JSON: {str(exc)[:200]}"
        ) from None
    return list(message.payloads)


def _apply(codec: EncryptionCodec, operation: Operation, payloads: Sequence[Payload]) -> list[Payload]:
    step = codec.decrypt if operation == Operation.decode else codec.encrypt
    return [step(p) for p in payloads]


async def _audit(state: AppState, use: CodecUse, outcome: CodecOutcome) -> None:
    await run_in_threadpool(record_codec_use, state.sessions, use)
    count_codec_call(use.operation.value, outcome, use.payloads)  # audited, so counted (never before)
    audit_log.info(
        # the namespace, origin and workflow ids are the caller's to choose: quoted, so one line each
        "codec %s key=%s role=%s via=%s namespace=%r workflows=%r payloads=%d origin=%r -> %s",
        use.operation.value,
        use.actor,
        use.role,
        use.via.value,
        use.namespace,
        use.workflow_ids,
        use.payloads,
        use.origin,
        use.outcome,
    )
