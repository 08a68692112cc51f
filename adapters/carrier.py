"""Sandbox carrier: books shipments in its own ledger and hands out unique tracking numbers.

Booking is idempotent per key. A postal code of `REFUSE` makes the carrier refuse the booking
(a business refusal), so the failure paths can be exercised like a real carrier's.
"""

from __future__ import annotations

import secrets

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from db import SessionFactory
from models.tables import CarrierBooking

CARRIER_NAME = "sandbox-post"
REFUSED_POSTAL_CODE = "REFUSE"


class CarrierRefused(Exception):
    pass


class CarrierUnavailable(Exception):
    pass


class SandboxCarrier:
    name = CARRIER_NAME

    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions

    def book(self, key: str, weight_g: int, postal_code: str) -> CarrierBooking:
        with self._sessions.begin() as session:
            if (
                done := session.scalar(select(CarrierBooking).where(CarrierBooking.idempotency_key == key))
            ) is not None:
                return done
            if postal_code.upper() == REFUSED_POSTAL_CODE:
                raise CarrierRefused(f"carrier {self.name} does not serve postal code {postal_code}")
            booking = CarrierBooking(
                idempotency_key=key,
                carrier=self.name,
                tracking_number=f"SBX{secrets.randbelow(10**12):012d}",
                status="booked",
                weight_g=weight_g,
            )
            session.add(booking)
            try:
                session.flush()
            except IntegrityError as exc:
                raise CarrierUnavailable("booking collided; retry") from exc
            return booking

    def cancel(self, key: str) -> bool:
        """Cancel a booking; False when there was nothing to cancel."""
        with self._sessions.begin() as session:
            booking = session.scalar(select(CarrierBooking).where(CarrierBooking.idempotency_key == key))
            if booking is None:
                return False
            booking.status = "cancelled"
            return True
