"""Durations in settings: '30d', '6h', '500ms' and friends, and the OMS_ environment variables."""

from __future__ import annotations

from datetime import timedelta

import pytest

from config import SandboxMode, Settings, parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30d", timedelta(days=30)),
        ("6h", timedelta(hours=6)),
        ("15m", timedelta(minutes=15)),
        ("45s", timedelta(seconds=45)),
        ("500ms", timedelta(milliseconds=500)),
        ("2w", timedelta(weeks=2)),
        ("1.5h", timedelta(minutes=90)),
        (" 10 s ", timedelta(seconds=10)),
        ("90", timedelta(seconds=90)),
        (90, timedelta(seconds=90)),
        (timedelta(days=1), timedelta(days=1)),
    ],
)
def test_parse_duration(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["abc", "10x", "", "6 hours"])
def test_invalid_duration_says_how_to_write_one(text):
    with pytest.raises(ValueError, match=r"invalid duration .*30d, 6h, 15m, 45s or 500ms"):
        parse_duration(text)


def test_settings_read_durations_from_the_environment(monkeypatch):
    monkeypatch.setenv("OMS_DELIVERY_SLA", "3s")
    monkeypatch.setenv("OMS_RETURN_WINDOW", "2w")
    settings = Settings()
    assert settings.delivery_sla == timedelta(seconds=3)
    assert settings.return_window == timedelta(weeks=2)
    assert settings.hold_timeout == timedelta(days=3)  # untouched default


def test_settings_refuse_an_invalid_duration(monkeypatch):
    monkeypatch.setenv("OMS_DELIVERY_SLA", "soon")
    with pytest.raises(ValueError, match="invalid duration 'soon'"):
        Settings()


def test_a_negative_bare_number_is_refused_like_minus_5s():
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration("-5")


@pytest.mark.parametrize("text", ["inf", "1e400"])
def test_an_infinite_duration_is_refused_with_the_helpful_message(text):
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


# ---- the sandbox parties (OMS_SANDBOX_PARTIES) ----


def test_the_sandbox_parties_play_by_default(monkeypatch):
    for name in ("OMS_SANDBOX_PARTIES", "OMS_SANDBOX_WAREHOUSE", "OMS_SANDBOX_CARRIER"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    assert settings.sandbox_parties is True
    assert (settings.sandbox_warehouse, settings.sandbox_carrier) == (SandboxMode.auto, SandboxMode.auto)


def test_without_the_sandbox_parties_the_warehouse_and_carrier_are_manual(monkeypatch):
    monkeypatch.delenv("OMS_SANDBOX_WAREHOUSE", raising=False)
    monkeypatch.setenv("OMS_SANDBOX_PARTIES", "false")
    monkeypatch.setenv("OMS_SANDBOX_CARRIER", "manual")
    settings = Settings()
    assert settings.sandbox_parties is False
    assert (settings.sandbox_warehouse, settings.sandbox_carrier) == (SandboxMode.manual, SandboxMode.manual)


@pytest.mark.parametrize("variable", ["OMS_SANDBOX_WAREHOUSE", "OMS_SANDBOX_CARRIER"])
def test_a_sandbox_party_set_to_auto_without_the_parties_is_refused(monkeypatch, variable):
    """Nothing would play it: its workflows would wait on a task queue no worker polls."""
    monkeypatch.setenv("OMS_SANDBOX_PARTIES", "false")
    monkeypatch.setenv(variable, "auto")
    with pytest.raises(ValueError, match="`auto` needs the sandbox parties, which OMS_SANDBOX_PARTIES=false"):
        Settings()
