"""Admission's screening: why an order must wait for a person before its stock is reserved, as a
reason code and the text support reads (the order is then on hold), or None."""

from __future__ import annotations

from decimal import Decimal

from models.events import ReasonCode


def hold_reason(
    email: str,
    total: Decimal,
    review_above: Decimal | None,
    blocklisted: bool,
    blocklist_note: str | None = None,
) -> tuple[ReasonCode, str] | None:
    """`blocklisted`: the customer's e-mail is on the review blocklist (domain/blocklist.py), with
    `blocklist_note` as the reason support gave; `review_above`: the order policy's review limit."""
    if blocklisted:
        note = f" ({blocklist_note})" if blocklist_note else ""
        return ReasonCode.blocklisted_customer, f"customer e-mail {email} is on the blocklist{note}"
    if review_above is not None and total > review_above:
        return ReasonCode.above_review_limit, f"order total {total} is above the review limit {review_above}"
    return None
