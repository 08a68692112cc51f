"""Where a webhook may be sent: the SSRF guard. A subscriber's URL must not reach the OMS's own network
(loopback, private, link-local, unique-local, multicast, reserved addresses: databases, the Temporal
frontend, a cloud's metadata service at 169.254.169.254). Checked when an admin subscribes and again at
every delivery, on the addresses DNS gives then (a name can be pointed elsewhere later): the
dispatcher connects to the address checked, not to the name again. OMS_WEBHOOK_ALLOW_PRIVATE=true
lifts the rule (tests, a receiver on the same host in development)."""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class TargetRefused(ValueError):
    """A URL the OMS will not send to; the message says why."""


@dataclass(frozen=True)
class Target:
    """A URL and the address to connect to for it (checked)."""

    url: str
    host: str
    port: int
    address: IPAddress


def is_public(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return is_public(address.ipv4_mapped)
    return address.is_global and not (address.is_multicast or address.is_reserved)


def resolve(url: str, allow_private: bool) -> Target:
    """The address this URL reaches now; TargetRefused if DNS has none, or any address it gives is not
    public (a name with one public and one private address is refused: the connection could go to
    either) unless `allow_private`."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise TargetRefused(f"the host {host!r} does not resolve: {exc}") from None
    addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))
    if not addresses:
        raise TargetRefused(f"the host {host!r} has no address")
    if not allow_private:
        refused = [a for a in addresses if not is_public(a)]
        if refused:
            raise TargetRefused(
                f"{host} resolves to {refused[0]}, a loopback, private or link-local address: webhooks go"
                " to public addresses only (OMS_WEBHOOK_ALLOW_PRIVATE=true allows them)"
            )
    return Target(url, host, port, addresses[0])
