"""The rough edges a new user meets first (issue 25), each as that user sees it: over HTTP, on the
command line, in the console."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx

from domain.api_keys import Role
from tests.helpers import as_, cli


async def _chunks(size: int, chunk: int = 64 * 1024) -> AsyncIterator[bytes]:
    """A body of `size` bytes sent as it is produced: chunked, with no Content-Length."""
    for start in range(0, size, chunk):
        yield b"x" * min(chunk, size - start)


async def test_a_chunked_body_over_the_limit_is_413_as_with_a_content_length(
    http: httpx.AsyncClient, api_keys
):
    answer = await http.post(
        "/orders",
        content=_chunks(2 * 1024 * 1024),
        headers={**as_(api_keys, Role.source), "Content-Type": "application/json"},
    )
    assert "content-length" not in answer.request.headers
    assert answer.status_code == 413, answer.text
    assert answer.json()["error"] == "too_large"


async def test_a_small_chunked_body_is_read_as_any_other(http: httpx.AsyncClient, api_keys):
    async def body() -> AsyncIterator[bytes]:
        yield b'{"order_id": '

    answer = await http.post(
        "/orders", content=body(), headers={**as_(api_keys, Role.source), "Content-Type": "application/json"}
    )
    assert (answer.status_code, answer.json()["error"]) == (400, "invalid_json"), answer.text


async def test_the_queue_of_an_unknown_warehouse_is_404_not_an_empty_list(http, api_keys, settings):
    answer = await http.get("/warehouses/NOPE/queue", headers=as_(api_keys, Role.warehouse))
    assert answer.status_code == 404, answer.text
    assert answer.json() == {"error": "not_found", "detail": "unknown warehouse NOPE", "problems": []}
    status, out = await cli(settings, "warehouse", "queue", "NOPE", "--json")
    assert (status, out) == (1, "")
