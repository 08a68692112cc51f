"""What a customer's message shows besides its own words: their order (lines, total) and the link to
its tracking page, as the text part's closing lines and in the HTML part (domain/templates/
message.html). Read from the order's rows when the message is written into the outbox, so a resend
says what the first attempt said."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models import tables as t

TEMPLATES = Path(__file__).resolve().parent / "templates"
CENT = Decimal("0.01")


@dataclass(frozen=True)
class SummaryLine:
    sku: str
    name: str
    quantity: int
    unit_price: Decimal

    @property
    def line_total(self) -> Decimal:
        return (self.unit_price * self.quantity).quantize(CENT)


@dataclass(frozen=True)
class OrderSummary:
    order_id: str
    lines: list[SummaryLine]
    total: Decimal
    currency: str
    tracking_url: str | None

    def text(self) -> str:
        """The lines as the confirmation has always written them, the total, the tracking link."""
        lines = "".join(f"  {x.quantity} x {x.name} ({x.sku}) at {x.unit_price}\n" for x in self.lines)
        link = f"Track your order: {self.tracking_url}\n" if self.tracking_url else ""
        return f"{lines}Total: {self.total} {self.currency}\n{link}"


def order_summary(session: Session, order_id: str, tracking_url: str | None) -> OrderSummary:
    """The order as placed: its lines at their price (the source's, else the catalog's; a SKU the
    catalog does not know is named by itself) and its total (the priced one once the order has it)."""
    order = session.get(t.Order, order_id)
    assert order is not None, f"a message for order {order_id}, which has no row"
    rows = session.execute(
        select(
            t.OrderLine.sku,
            func.coalesce(t.Product.name, t.OrderLine.sku),
            t.OrderLine.quantity,
            func.coalesce(t.OrderLine.unit_price, t.Product.price, 0),
        )
        .outerjoin(t.Product, t.Product.sku == t.OrderLine.sku)
        .where(t.OrderLine.order_id == order_id)
        .order_by(t.OrderLine.line_no)
    ).all()
    lines = [SummaryLine(sku, name, qty, Decimal(price).quantize(CENT)) for sku, name, qty, price in rows]
    total = order.total if order.total is not None else sum((x.line_total for x in lines), Decimal("0"))
    return OrderSummary(order_id, lines, Decimal(total).quantize(CENT), order.currency, tracking_url)


@lru_cache
def _environment() -> Environment:
    return Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]))


def render_html(subject: str, body: str, summary: OrderSummary) -> str:
    """The HTML part: the message's own text (paragraphs at its blank lines), then the order."""
    paragraphs = [p.splitlines() for p in body.strip().split("\n\n") if p.strip()]
    return (
        _environment()
        .get_template("message.html")
        .render(subject=subject, paragraphs=paragraphs, summary=summary)
    )
