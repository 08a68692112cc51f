"""The sandbox supplier (a `Supplier`, adapters/supplier.py): accepts every purchase order and confirms
it with a reference of its own; it never delivers (the replenishment workflow waits the lead time, or
for a warehouse's receipt)."""

from __future__ import annotations

import hashlib


class SandboxSupplier:
    name = "sandbox-supplier"

    def confirm(self, po_id: str, sku: str, quantity: int) -> str:
        """The supplier's confirmation reference; the same purchase order always gets the same one."""
        digest = hashlib.sha256(f"{po_id}:{sku}:{quantity}".encode()).hexdigest()[:10].upper()
        return f"SUP-{digest}"
