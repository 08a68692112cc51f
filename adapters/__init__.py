"""Adapters to the outside world: the interface each outside party's integration implements (payment
gateway, carrier, warehouse, supplier, mailer), and which implementation the settings choose. Apart from
the SMTP mailer the implementations are the stand-ins in sandbox/; all are imported here lazily: a
module that needs an interface alone loads none of them (nor Temporal's client)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from temporalio.client import Client

    from adapters.carrier import CarrierTracking
    from adapters.mailer import Mailer
    from adapters.payments import PaymentGateway
    from adapters.warehouse import Warehouse
    from config import Settings
    from db import SessionFactory


def build_parties(client: Client, settings: Settings) -> tuple[Warehouse, CarrierTracking]:
    """The warehouse and carrier tracking the worker's settings choose (`OMS_SANDBOX_WAREHOUSE`,
    `OMS_SANDBOX_CARRIER`: `auto` plays the party, `manual` leaves it to a person)."""
    from sandbox.carrier import tracking_for
    from sandbox.warehouse import warehouse_for

    return warehouse_for(settings, client), tracking_for(settings, client)


def payment_gateway(sessions: SessionFactory) -> PaymentGateway:
    """The payment provider the worker's payment steps and `reconcile` talk to: the sandbox's (a real
    provider's class would be chosen here, by a setting)."""
    from sandbox.gateway import SandboxGateway

    return SandboxGateway(sessions)


def mailer(settings: Settings) -> Mailer:
    """Where the worker's outbox dispatcher sends messages: the SMTP server OMS_SMTP_HOST names, else
    the sandbox mailer, which keeps nothing."""
    if settings.smtp_host is not None:
        from adapters.smtp_mailer import SmtpMailer

        return SmtpMailer.from_settings(settings)
    from sandbox.mailer import SandboxMailer

    return SandboxMailer()
