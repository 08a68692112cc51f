"""Inputs an earlier fault-injection run got past the door, kept as regression cases: each must be
refused by `services.orders.parse_order` (OrderInputError) before anything starts."""

from __future__ import annotations

import json
from typing import Any

from services.orders import OrderInputError, parse_order


def _order(**changes: Any) -> str:
    doc: dict[str, Any] = {
        "order_id": "BAD-1",
        "channel": "web",
        "customer": {"id": "C-7", "name": "Ada Lovelace", "email": "ada@example.com"},
        "shipping_address": {
            "name": "Ada Lovelace",
            "line1": "12 St James's Sq",
            "city": "London",
            "postal_code": "SW1Y 4JH",
            "country": "GB",
        },
        "lines": [{"sku": "KB-MX75-BRN", "quantity": 1}],
        "currency": "EUR",
        "payment": {"method": "card", "token": "tok_visa"},
    }
    for path, value in changes.items():
        *parents, leaf = path.split("__")
        target = doc
        for key in parents:
            target = target[int(key)] if isinstance(target, list) else target[key]
        target[leaf] = value
    return json.dumps(doc)


# case -> the order document (JSON text, as the doors receive it)
BAD_INPUTS: dict[str, str] = {
    "quantity 2^31 (overflows the INTEGER column)": _order(lines=[{"sku": "KB-MX75-BRN", "quantity": 2**31}]),
    "2,147,483,647 x 10.00 (overflows the Numeric(12, 2) total)": _order(
        lines=[{"sku": "KB-MX75-BRN", "quantity": 2_147_483_647, "unit_price": "10.00"}]
    ),
    "NUL in the customer's name (PostgreSQL refuses it)": _order(customer__name="Ada\x00Lovelace"),
    "JSON nested 100,000 deep (the parser's recursion limit)": "[" * 100_000 + "]" * 100_000,
}


def refusal(document: str) -> str | None:
    """Why parse_order refuses the document, or None when it lets it through."""
    try:
        parse_order(document)
    except OrderInputError as refused:
        return str(refused)
    return None


def let_through() -> list[str]:
    """The cases parse_order does not refuse (empty when all are refused at the door)."""
    return [case for case, document in BAD_INPUTS.items() if refusal(document) is None]
