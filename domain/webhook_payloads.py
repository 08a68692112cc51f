"""What a webhook's body says (docs/webhooks.md): `{"type", "timestamp", "data"}`, built once per event
and kept, so every attempt and redelivery sends the same bytes.

Personal data: an order's `data.order` is the order's view as `GET /orders/{id}` shows it (it holds no
name, e-mail, phone or address: only the customer's id), less every free text a person wrote or that
may quote the customer: event details (support notes), the hold reason (it names a blocklisted
e-mail), feedback comments, return reasons, carrier scan places and trouble texts. The typed fields
(statuses, reason codes, trouble kinds) say the same things without the words."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from models.choices import WebhookEventType
from models.orders import OrderView

# (path of a list or object in the view, the key dropped in each of its items)
_FREE_TEXT: tuple[tuple[tuple[str, ...], str], ...] = (
    (("events",), "detail"),
    (("returns",), "reason"),
    (("shipments",), "trouble"),
    (("shipments", "tracking"), "place"),
    (("feedback",), "comment"),
    ((), "hold_reason"),
)


def redacted_view(view: OrderView) -> dict[str, Any]:
    """The order's view as JSON, without its free texts (see the module's docstring)."""
    document: dict[str, Any] = view.model_dump(mode="json")
    for path, key in _FREE_TEXT:
        for item in _items(document, path):
            item.pop(key, None)
    return document


def _items(node: Any, path: tuple[str, ...]) -> list[dict[str, Any]]:
    """The objects at `path`, stepping into every item of a list on the way."""
    if isinstance(node, list):
        return [found for item in node for found in _items(item, path)]
    if not isinstance(node, dict):
        return []
    if not path:
        return [node]
    return _items(node.get(path[0]), path[1:])


def message_body(kind: WebhookEventType, at: datetime, data: dict[str, Any]) -> str:
    """The body sent: compact JSON, keys in a fixed order."""
    return json.dumps(
        {"type": kind.value, "timestamp": at.isoformat().replace("+00:00", "Z"), "data": data},
        separators=(",", ":"),
        default=str,
    )
