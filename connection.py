"""Connecting to Temporal, and making sure the namespace knows our search attributes.

Where and how to connect is read the way the Temporal CLI reads it (`temporalio.envconfig`): a profile
of the TOML config file (`TEMPORAL_CONFIG_FILE`, `TEMPORAL_PROFILE`) and the standard variables
(`TEMPORAL_ADDRESS`, `TEMPORAL_NAMESPACE`, `TEMPORAL_API_KEY`, `TEMPORAL_TLS*`), so that one set of
settings serves the `temporal` CLI and this system; `OMS_TEMPORAL_ADDRESS` and `OMS_TEMPORAL_NAMESPACE`,
where set, win over them (docs/configuration.md#connecting-to-temporal).

The Temporal SDK is imported inside the functions that use it, not at the top: commands that never
talk to Temporal (`starter.py migrate`, `stock`, `codec generate`, ...) import this module only for
`exit_without_finalizing`, and should not pay the SDK's import time for it."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from temporalio.client import Client
    from temporalio.envconfig import ClientConfigProfile
    from temporalio.runtime import Runtime

    from config import Settings

# A certificate or key given inline in the config file rather than as a path
CertificateSource = Path | bytes | str


class TemporalUnavailable(Exception):
    """Temporal cannot be reached as configured. The message is one line that names the setting (and
    the file) at fault: the CLI and the worker print it as it is, without a traceback."""


@dataclass(frozen=True)
class TemporalTarget:
    """Where and how this process connects to Temporal, resolved from the settings, the config file's
    profile and the environment. What `describe()` returns is safe to print: never the API key."""

    address: str
    namespace: str
    profile: str
    tls: bool
    server_name: str | None = None
    server_ca_cert: CertificateSource | None = None
    client_cert: CertificateSource | None = None
    client_key: CertificateSource | None = None
    api_key: str | None = field(default=None, repr=False)  # a secret: not in a log line or a traceback
    rpc_metadata: Mapping[str, str] | None = None
    # what each setting is called where it was given: the variable, or the key in the config file
    setting_names: Mapping[str, str] | None = None

    def describe(self) -> dict[str, object]:
        return {
            "address": self.address,
            "namespace": self.namespace,
            "profile": self.profile,
            "tls": self.tls,
            "server_name": self.server_name,
            "server_ca_cert": _shown(self.server_ca_cert),
            "client_cert": self.client_cert is not None,
            "api_key": self.api_key is not None,
        }

    def setting(self, name: str) -> str:
        """What the setting `name` (a field of this class) is called where it was given."""
        return (self.setting_names or {}).get(name, name)


# The standard variable for each setting, and its key in a profile of the TOML file
_SETTINGS = {
    "server_ca_cert": ("TEMPORAL_TLS_SERVER_CA_CERT_PATH", "tls.server_ca_cert_path"),
    "client_cert": ("TEMPORAL_TLS_CLIENT_CERT_PATH", "tls.client_cert_path"),
    "client_key": ("TEMPORAL_TLS_CLIENT_KEY_PATH", "tls.client_key_path"),
    "server_name": ("TEMPORAL_TLS_SERVER_NAME", "tls.server_name"),
    "api_key": ("TEMPORAL_API_KEY", "api_key"),
    "tls": ("TEMPORAL_TLS", "tls"),
    "address": ("TEMPORAL_ADDRESS", "address"),
}


def temporal_target(settings: Settings, environ: Mapping[str, str] | None = None) -> TemporalTarget:
    """Resolve where to connect; raises TemporalUnavailable for a config file or profile that is not
    there. Reads no certificate: `connect` does, so that its errors name the file."""
    from temporalio.envconfig import ClientConfigProfile

    env = dict(os.environ if environ is None else environ)
    profile_name = env.get("TEMPORAL_PROFILE") or "default"
    config_file = env.get("TEMPORAL_CONFIG_FILE")
    if config_file and not os.access(config_file, os.R_OK):
        # the SDK quietly ignores a config file that is not there: a typo would connect elsewhere
        raise TemporalUnavailable(f"TEMPORAL_CONFIG_FILE: cannot read {config_file}")
    try:
        profile = ClientConfigProfile.load(profile=env.get("TEMPORAL_PROFILE"), override_env_vars=env)
    except Exception as exc:  # the bridge's ConfigError: a profile not found, a file that is not TOML
        where = f" in {config_file}" if config_file else ""
        raise TemporalUnavailable(f"Temporal profile {profile_name!r}{where}: {exc}") from None
    in_file = f"of profile {profile_name!r} in {config_file or 'the Temporal config file'}"
    names = {
        setting: variable if env.get(variable) else f"{key} {in_file}"
        for setting, (variable, key) in _SETTINGS.items()
    }
    explicit = settings.model_fields_set
    if "temporal_address" in explicit:
        names["address"] = "OMS_TEMPORAL_ADDRESS"
    tls = profile.tls
    return TemporalTarget(
        # OMS_TEMPORAL_* set explicitly win; with nothing set anywhere, the settings' defaults
        address=settings.temporal_address
        if "temporal_address" in explicit
        else profile.address or settings.temporal_address,
        namespace=settings.temporal_namespace
        if "temporal_namespace" in explicit
        else profile.namespace or settings.temporal_namespace,
        profile=profile_name,
        # as the SDK decides it: on with an API key or any TLS setting, unless turned off
        tls=_tls_enabled(profile),
        server_name=tls.server_name if tls else None,
        server_ca_cert=tls.server_root_ca_cert if tls else None,
        client_cert=tls.client_cert if tls else None,
        client_key=tls.client_private_key if tls else None,
        api_key=profile.api_key,
        rpc_metadata=dict(profile.grpc_meta) or None,
        setting_names=names,
    )


def _tls_enabled(profile: ClientConfigProfile) -> bool:
    if profile.tls is not None:
        return profile.tls.disabled is not True
    return profile.api_key is not None


def _shown(source: CertificateSource | None) -> str | None:
    if source is None:
        return None
    return str(source) if isinstance(source, Path) else "(inline in the config file)"


def _read_pem(target: TemporalTarget, name: str, source: CertificateSource | None, what: str) -> bytes | None:
    if source is None:
        return None
    if isinstance(source, Path):
        try:
            data = source.read_bytes()
        except OSError as exc:
            raise TemporalUnavailable(
                f"{target.setting(name)}: cannot read {what} {source}: {exc.strerror}"
            ) from None
    else:
        data = source.encode() if isinstance(source, str) else source
    if b"-----BEGIN" not in data:
        raise TemporalUnavailable(f"{target.setting(name)}: {_shown(source)} is not a PEM {what}")
    return data


def _connect_options(target: TemporalTarget) -> dict[str, Any]:
    """The keyword arguments of Client.connect for this target; reads the certificate files."""
    from temporalio.service import TLSConfig

    if (target.client_cert is None) != (target.client_key is None):
        given, missing = (
            ("client_cert", "client_key") if target.client_key is None else ("client_key", "client_cert")
        )
        raise TemporalUnavailable(
            f"{target.setting(given)} is set but {target.setting(missing)} is not: mTLS needs both"
        )
    tls: bool | TLSConfig = target.tls
    if target.tls and (target.server_name or target.server_ca_cert or target.client_cert):
        tls = TLSConfig(
            domain=target.server_name,
            server_root_ca_cert=_read_pem(target, "server_ca_cert", target.server_ca_cert, "CA certificate"),
            client_cert=_read_pem(target, "client_cert", target.client_cert, "client certificate"),
            client_private_key=_read_pem(target, "client_key", target.client_key, "private key"),
        )
    options: dict[str, Any] = {"target_host": target.address, "namespace": target.namespace, "tls": tls}
    if target.api_key is not None:
        options["api_key"] = target.api_key
    if target.rpc_metadata:
        options["rpc_metadata"] = target.rpc_metadata
    return options


def check_temporal_settings(settings: Settings) -> TemporalTarget:
    """Resolve the target and read its certificate files, without connecting: what a process that
    connects lazily (the API) checks before it serves, so that a bad setting stops it at start."""
    target = temporal_target(settings)
    _connect_options(target)
    return target


async def connect(settings: Settings, *, lazy: bool = False, runtime: Runtime | None = None) -> Client:
    """The one way this system's processes connect to its Temporal (worker, API, CLI, bench). Raises
    TemporalUnavailable, one line naming the setting at fault, when it cannot; with lazy=True only for
    a setting that cannot work (an unreadable certificate): a lazy client connects on first use.
    `runtime`: the SDK runtime the client (and workers built on it) run on, e.g. the worker's with its
    metrics exporter (observability/sdk_metrics.py); None is the SDK's default."""
    from temporalio.client import Client

    from encryption.converter import converter_for
    from observability.tracing import client_interceptors

    target = temporal_target(settings)
    options = _connect_options(target)
    try:
        return await Client.connect(
            **options,
            data_converter=converter_for(settings),
            interceptors=client_interceptors(),  # none unless tracing (it also traces the workers)
            lazy=lazy,
            runtime=runtime,
        )
    except RuntimeError as exc:
        raise TemporalUnavailable(explain_connect_failure(target, exc)) from None


def explain_connect_failure(target: TemporalTarget, exc: Exception) -> str:
    """The SDK's connect errors (a Rust transport error, several lines) said as one line, naming the
    setting to look at."""
    text = str(exc)
    where = f"Temporal at {target.address} ({target.setting('address')})"
    if "UnknownIssuer" in text or "BadSignature" in text:
        if target.server_ca_cert is None:
            return (
                f"{where}: its TLS certificate is not signed by a CA this machine trusts; set "
                f"{_SETTINGS['server_ca_cert'][0]} to the CA that signed it"
            )
        return (
            f"{where}: its TLS certificate is not signed by the CA in {target.setting('server_ca_cert')}"
            f" ({_shown(target.server_ca_cert)})"
        )
    if "NotValidForName" in text:
        return (
            f"{where}: its TLS certificate is not for the name the client checked; set "
            f"{target.setting('server_name')} to a name in the certificate"
        )
    if "InvalidContentType" in text or "InvalidMessage" in text:
        return f"{where}: the server does not speak TLS; turn TLS off ({target.setting('tls')}=false)"
    refused = "close_notify" in text or "CertificateRequired" in text or "HandshakeFailure" in text
    # In TLS 1.3 the server checks a client's certificate after the client has finished its handshake,
    # so the refusal may reach the client only as a connection broken under its first request.
    lowered = text.lower()
    broken = any(
        sign in lowered for sign in ("broken pipe", "brokenpipe", "connection reset", "connectionreset")
    )
    if target.tls and (refused or (broken and target.client_cert is None)):
        if target.client_cert is None:
            because = "it requires" if refused else "if it requires"
            return (
                f"{where}: the server closed the TLS connection; {because} a client certificate (mTLS),"
                f" set {_SETTINGS['client_cert'][0]} and {_SETTINGS['client_key'][0]}"
            )
        return (
            f"{where}: the server refused the client certificate in {target.setting('client_cert')}"
            f" ({_shown(target.client_cert)})"
        )
    if "Unauthenticated" in text or "PermissionDenied" in text or "Request unauthorized" in text:
        return (
            f"{where}: the server refused our credentials ({target.setting('api_key')}): "
            f"{_server_message(text)}"
        )
    return f"{where}: cannot connect: {_one_line(text)}"


def _server_message(text: str) -> str:
    """The server's own words out of the SDK's `Status { code: …, message: "…", … }` text (e.g. Temporal
    Cloud's "Jwt is expired"), else the whole text on one line."""
    found = re.search(r'message: "((?:[^"\\]|\\.)*)"', text)
    return _one_line(found.group(1) if found and found.group(1) else text)


def _one_line(text: str) -> str:
    return " ".join(text.split())[:300]


async def check_server(client: Client) -> dict[str, str]:
    """What `doctor` and operators want to know: the server's version and that our namespace is there
    (an RPC of its own: connecting checks the server, not the namespace)."""
    from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest, GetSystemInfoRequest

    info = await client.workflow_service.get_system_info(GetSystemInfoRequest())
    namespace = await client.workflow_service.describe_namespace(
        DescribeNamespaceRequest(namespace=client.namespace)
    )
    return {
        "server_version": info.server_version or "(not reported)",
        "namespace": namespace.namespace_info.name,
        "namespace_state": _namespace_state(namespace.namespace_info.state),
    }


def _namespace_state(state: int) -> str:
    from temporalio.api.enums.v1 import NamespaceState

    return NamespaceState.Name(NamespaceState.ValueType(state)).removeprefix("NAMESPACE_STATE_").lower()


async def ensure_search_attributes(client: Client) -> list[str]:
    """Register the custom search attributes the namespace lacks; returns the names added."""
    from temporalio.api.enums.v1 import IndexedValueType
    from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest

    from models import search_attributes

    existing = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=client.namespace)
    )
    missing = {
        key.name: IndexedValueType.ValueType(int(key.indexed_value_type))
        for key in search_attributes.ALL
        if key.name not in existing.custom_attributes
    }
    if missing:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=client.namespace, search_attributes=missing)
        )
    return sorted(missing)


def exit_without_finalizing(status: int) -> NoReturn:
    """Flush and leave at once. The SDK's native runtime can abort the interpreter while it finalizes
    (temporalio/sdk-python#300); callers have finished and flushed their work when they call this.
    The spans still queued are sent first (observability/tracing.py; nothing to do when not tracing)."""
    from observability.tracing import stop_tracing

    stop_tracing()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
