"""Sandbox supplier: accepts purchase orders and confirms them with a reference of its own.

Delivery takes the supplier lead time (OMS_SUPPLIER_LEAD_TIME); the replenishment workflow waits
for it, or for a warehouse's explicit receipt (`stock receive ... --po ID`).
"""

from __future__ import annotations

import hashlib


class SandboxSupplier:
    name = "sandbox-supplier"

    def confirm(self, po_id: str, sku: str, quantity: int) -> str:
        """The supplier's confirmation reference; the same purchase order always gets the same one."""
        digest = hashlib.sha256(f"{po_id}:{sku}:{quantity}".encode()).hexdigest()[:10].upper()
        return f"SUP-{digest}"
