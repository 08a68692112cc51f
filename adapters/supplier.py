"""The supplier: purchase orders go to it, and it confirms each with a reference of its own.

Delivery takes the supplier lead time (OMS_SUPPLIER_LEAD_TIME); the replenishment workflow waits
for it, or for a warehouse's explicit receipt (`stock receive ... --po ID`). The sandbox's is
sandbox/supplier.py.
"""

from __future__ import annotations

from typing import Protocol


class Supplier(Protocol):
    def confirm(self, po_id: str, sku: str, quantity: int) -> str:
        """Place the purchase order; the supplier's confirmation reference. The same purchase order
        always gets the same one."""
        ...
