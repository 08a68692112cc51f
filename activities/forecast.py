"""The demand forecast's steps for ForecastWorkflow: refresh the recommendations, apply them."""

from __future__ import annotations

from datetime import date

from temporalio import activity
from temporalio.client import Client

from config import Settings
from db import SessionFactory
from models.forecast import ApplyResult
from services import forecast


class ForecastActivities:
    def __init__(self, sessions: SessionFactory, client: Client, settings: Settings) -> None:
        self._sessions = sessions
        self._client = client
        self._settings = settings

    @activity.defn
    def refresh_recommendations(self, as_of: date) -> int:
        """Forecast every pair from its shipped demand up to `as_of` and store the recommendations.
        Idempotent: the same demand and day give the same rows (upserted per pair)."""
        return len(forecast.refresh(self._sessions, self._settings, as_of=as_of))

    @activity.defn
    async def apply_recommendations(self) -> ApplyResult:
        """Write the recommendations to the stock rows (a row already following them is left alone, so a
        retry writes no second ledger line) and start the replenishments they call for (one per pair)."""
        return await forecast.apply(self._client, self._sessions, self._settings)
