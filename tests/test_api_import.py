"""Batch imports over HTTP: good, bad and duplicate rows; progress; formats; roles."""

from __future__ import annotations

import httpx
import pytest

from domain.api_keys import Role
from services.orders import UnknownOrder, order_view
from tests.helpers import add_products, eventually, ledger, unique, wait_status

HEADER = (
    "order_id,channel,customer_id,customer_name,customer_email,customer_phone,ship_name,ship_line1,"
    "ship_line2,ship_city,ship_postal_code,ship_country,currency,payment_token,delivery_instructions,"
    "sku,quantity,unit_price"
)


def row(order_id: str, sku: str, quantity: str = "1", email: str = "ada@example.com") -> str:
    return (
        f"{order_id},csv,C-7,Ada Lovelace,{email},,Ada Lovelace,12 St James's Sq,,London,SW1Y 4JH,GB,EUR,"
        f"tok_visa,,{sku},{quantity},"
    )


async def test_a_csv_batch_places_the_good_orders_and_reports_the_bad_rows(http, api_keys, client, sessions):
    skus = add_products(sessions, {"TEA": 20, "POT": 20})
    good, split, bad, bad_email = (unique("IMP") for _ in range(4))
    csv = "\n".join(
        [
            HEADER,
            row(good, skus["TEA"], "2"),
            row(split, skus["TEA"]),
            row(bad, skus["POT"], "zero"),  # line 4: not a number: the whole order is refused
            row(split, skus["POT"]),  # line 5: the same order as line 3
            row(bad_email, skus["POT"], email="not-an-email"),
        ]
    )
    source = {"Authorization": f"Bearer {api_keys[Role.source]}", "Content-Type": "text/csv"}
    answer = await http.post("/orders/import", content=csv, headers=source)
    assert answer.status_code == 202, answer.text
    started = answer.json()
    assert answer.headers["location"] == f"/imports/{started['id']}"
    assert (started["total"], started["refused"]) == (4, 2)  # refused at once; the rest to be placed
    reasons = {p["order_id"]: (p["rows"], p["reason"]) for p in started["problems"]}
    assert reasons[bad][0] == "4" and "quantity" in reasons[bad][1]
    assert "customer_email" in reasons[bad_email][1]

    async def progress() -> dict:
        return (await http.get(answer.headers["location"], headers=source)).json()

    done = await eventually(progress, lambda s: s["status"] == "done")
    assert (done["accepted"], done["duplicates"], done["refused"], done["pending"]) == (2, 0, 2, 0)
    view = await wait_status(client, split, "shipped")
    assert sorted(line.sku for line in view.lines) == sorted([skus["TEA"], skus["POT"]])
    await wait_status(client, good, "shipped")
    for refused in (bad, bad_email):
        with pytest.raises(UnknownOrder):
            await order_view(client, refused)

    again = await http.post("/orders/import", content=csv, headers=source)  # the same file once more
    redone = await eventually(
        lambda: _status(http, again.headers["location"], source), lambda s: s["status"] == "done"
    )
    assert (redone["accepted"], redone["duplicates"], redone["refused"]) == (0, 2, 2)
    assert sorted(redone["duplicate_orders"]) == sorted([good, split])
    assert len(ledger(sessions, good)) >= 1 and ledger(sessions, good)["authorization"] > 0


async def _status(http: httpx.AsyncClient, url: str, headers: dict[str, str]) -> dict:
    return (await http.get(url, headers=headers)).json()


async def test_json_lines_and_the_refusals_of_a_batch(http, api_keys):
    source = {"Authorization": f"Bearer {api_keys[Role.source]}"}
    wrong_type = await http.post(
        "/orders/import", content="{}", headers={**source, "Content-Type": "text/plain"}
    )
    assert wrong_type.status_code == 415
    not_utf8 = await http.post(
        "/orders/import", content=b"order_id\n\xff\xfe", headers={**source, "Content-Type": "text/csv"}
    )
    assert not_utf8.status_code == 422 and "UTF-8" in not_utf8.json()["detail"]
    bad_header = await http.post(
        "/orders/import", content="nonsense,columns\n1,2", headers={**source, "Content-Type": "text/csv"}
    )
    assert bad_header.status_code == 422 and bad_header.json()["error"] == "invalid_file"
    lines = '{"order_id": "JL-1", "channel": "web"}\nnot json at all\n'
    answer = await http.post(
        "/orders/import", content=lines, headers={**source, "Content-Type": "application/x-ndjson"}
    )
    assert answer.status_code == 202
    status = answer.json()
    assert (status["status"], status["refused"], status["accepted"]) == ("done", 2, 0)  # nothing to place
    assert [p["rows"] for p in status["problems"]] == ["1", "2"]
    carrier = {"Authorization": f"Bearer {api_keys[Role.carrier]}", "Content-Type": "text/csv"}
    assert (await http.post("/orders/import", content=HEADER, headers=carrier)).status_code == 403
    unknown = await http.get("/imports/IMP-NOPE", headers=source)
    assert unknown.status_code == 404
