"""Connecting like the Temporal CLI does: TLS, mTLS and API keys, from the standard TEMPORAL_* settings.

The suite's dev server speaks plain gRPC; tests/tls_proxy.py puts a TLS-terminating proxy in front of
it on 127.0.0.1, with certificates made here, so every handshake below is a real one: the CLI
(`doctor`, `status`), a worker and its orders, and the failures a person meets (a wrong CA, no client
certificate, a certificate file that is not there), each one line naming the setting.
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from temporalio.client import Client

from config import Settings
from connection import TemporalUnavailable, connect, temporal_target
from db import SessionFactory
from tests.helpers import add_products, cli, order_doc, place, wait_status
from tests.refusing_frontend import RefusingFrontend
from tests.tls_proxy import Certificates, TlsProxy, make_certificates
from worker import build_worker

PROJECT_DIR = Path(__file__).parent.parent
TEMPORAL_SETTINGS = (
    "TEMPORAL_CONFIG_FILE",
    "TEMPORAL_PROFILE",
    "TEMPORAL_ADDRESS",
    "TEMPORAL_NAMESPACE",
    "TEMPORAL_API_KEY",
    "TEMPORAL_TLS",
    "TEMPORAL_TLS_SERVER_CA_CERT_PATH",
    "TEMPORAL_TLS_SERVER_NAME",
    "TEMPORAL_TLS_CLIENT_CERT_PATH",
    "TEMPORAL_TLS_CLIENT_KEY_PATH",
    "OMS_TEMPORAL_ADDRESS",
    "OMS_TEMPORAL_NAMESPACE",
)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
async def mtls_proxy(certificates: Certificates, client: Client) -> AsyncIterator[TlsProxy]:
    """TLS in front of the dev server that also requires a client certificate signed by our CA."""
    upstream = client.service_client.config.target_host
    async with TlsProxy(certificates, upstream, require_client_cert=True) as proxy:
        yield proxy


@pytest.fixture
def no_temporal_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Nothing of the machine's own Temporal settings leaks in: its variables are unset and the config
    file is an empty one (not ~/.config/temporalio/temporal.toml)."""
    for name in TEMPORAL_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    empty = tmp_path / "temporal.toml"
    empty.write_text("")
    monkeypatch.setenv("TEMPORAL_CONFIG_FILE", str(empty))
    return empty


@pytest.fixture
def through_mtls(
    mtls_proxy: TlsProxy,
    certificates: Certificates,
    no_temporal_settings: Path,
    monkeypatch: pytest.MonkeyPatch,
    settings: Settings,
) -> Callable[..., Settings]:
    """Set the TEMPORAL_* variables for the proxy (`overrides` change them) in this process; returns
    the suite's settings with the Temporal address left to them."""

    def configure(**overrides: str) -> Settings:
        apply(monkeypatch, mtls_env(mtls_proxy, certificates, **overrides))
        return from_environment(settings)

    return configure


def mtls_env(proxy: TlsProxy, certificates: Certificates, **overrides: str) -> dict[str, str]:
    settings = {
        "TEMPORAL_ADDRESS": proxy.address,
        "TEMPORAL_TLS_SERVER_CA_CERT_PATH": str(certificates.ca_cert),
        "TEMPORAL_TLS_CLIENT_CERT_PATH": str(certificates.client_cert),
        "TEMPORAL_TLS_CLIENT_KEY_PATH": str(certificates.client_key),
    }
    return {k: v for k, v in (settings | overrides).items() if v}  # an empty override unsets it


def apply(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)


def from_environment(settings: Settings) -> Settings:
    """The suite's settings, but with the Temporal address left to the TEMPORAL_* settings."""
    return Settings(**settings.model_dump(include=settings.model_fields_set - {"temporal_address"}))


async def run(script: str, *argv: str, env: dict[str, str]) -> tuple[int, str, str]:
    """Run one of the project's programs as a person would, while this loop keeps the proxy serving."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        script,
        *argv,
        cwd=PROJECT_DIR,
        env={k: v for k, v in os.environ.items() if k not in TEMPORAL_SETTINGS} | env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), 90)
    finally:
        if process.returncode is None:
            process.kill()
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


# ---- where to connect: the standard settings, and ours over them ----


def test_with_nothing_set_the_defaults_hold(no_temporal_settings: Path) -> None:
    target = temporal_target(Settings())
    assert (target.address, target.namespace, target.tls) == ("localhost:7233", "default", False)


def test_oms_settings_win_over_the_standard_ones(
    no_temporal_settings: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    apply(monkeypatch, {"TEMPORAL_ADDRESS": "temporal.example:7233", "TEMPORAL_NAMESPACE": "shop.a1b2c"})
    assert temporal_target(Settings()).address == "temporal.example:7233"
    assert temporal_target(Settings()).namespace == "shop.a1b2c"
    apply(monkeypatch, {"OMS_TEMPORAL_ADDRESS": "127.0.0.1:7999", "OMS_TEMPORAL_NAMESPACE": "oms"})
    target = temporal_target(Settings())
    assert (target.address, target.namespace) == ("127.0.0.1:7999", "oms")


def test_a_profile_of_the_config_file_is_read(
    no_temporal_settings: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    no_temporal_settings.write_text(
        '[profile.prod]\naddress = "shop.a1b2c.tmprl.cloud:7233"\nnamespace = "shop.a1b2c"\napi_key = "k-123"\n'
    )
    monkeypatch.setenv("TEMPORAL_PROFILE", "prod")
    described = temporal_target(Settings()).describe()
    assert described["address"] == "shop.a1b2c.tmprl.cloud:7233" and described["namespace"] == "shop.a1b2c"
    assert described["tls"] is True and described["api_key"] is True  # an API key turns TLS on
    assert "k-123" not in repr(described)
    monkeypatch.setenv("TEMPORAL_PROFILE", "staging")
    with pytest.raises(TemporalUnavailable, match="profile 'staging'"):
        temporal_target(Settings())


# ---- mTLS through the proxy ----


async def test_doctor_connects_through_mtls_and_says_to_what(
    mtls_proxy: TlsProxy, certificates: Certificates, no_temporal_settings: Path
) -> None:
    env = mtls_env(mtls_proxy, certificates, TEMPORAL_CONFIG_FILE=str(no_temporal_settings))
    status, out, err = await run("starter.py", "doctor", env=env)
    assert status == 0, err
    assert f"address      {mtls_proxy.address}" in out
    assert f"tls          on, server name (from the address), CA {certificates.ca_cert}" in out
    assert "client cert  yes" in out and "api key      no" in out
    assert "server       Temporal 1." in out and "namespace default registered" in out


async def test_a_command_and_a_worker_work_through_mtls(
    through_mtls: Callable[..., Settings],
    mtls_proxy: TlsProxy,
    capsys: pytest.CaptureFixture[str],
    sessions: SessionFactory,
) -> None:
    configured = through_mtls()
    own = configured.model_copy(update={"task_queue": f"{configured.task_queue}-mtls-{uuid.uuid4().hex[:6]}"})

    status, _ = await cli(own, "status", "NO-SUCH-ORDER")
    assert status == 1 and "NO-SUCH-ORDER" in capsys.readouterr().err  # an answer from the server

    # the worker's client, its polls and an order placed and run: all over mTLS
    client = await connect(own)
    assert client.service_client.config.target_host == mtls_proxy.address
    async with build_worker(client, sessions, own):
        doc = order_doc([(add_products(sessions, {"TLS-MUG": 3})["TLS-MUG"], 1)])
        order_id = await place(client, own, doc)
        await wait_status(client, order_id, "shipped")


async def test_a_wrong_ca_is_one_line_naming_the_setting_and_the_file(
    mtls_proxy: TlsProxy, certificates: Certificates, no_temporal_settings: Path
) -> None:
    env = mtls_env(
        mtls_proxy,
        certificates,
        TEMPORAL_CONFIG_FILE=str(no_temporal_settings),
        TEMPORAL_TLS_SERVER_CA_CERT_PATH=str(certificates.other_ca_cert),
    )
    status, out, err = await run("starter.py", "status", "A-1", env=env)
    assert status == 1 and out == ""
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert "not signed by the CA in TEMPORAL_TLS_SERVER_CA_CERT_PATH" in err
    assert str(certificates.other_ca_cert) in err


async def test_no_client_certificate_where_the_server_requires_one(
    through_mtls: Callable[..., Settings], capsys: pytest.CaptureFixture[str]
) -> None:
    own = through_mtls(TEMPORAL_TLS_CLIENT_CERT_PATH="", TEMPORAL_TLS_CLIENT_KEY_PATH="")
    status, out = await cli(own, "doctor")
    err = capsys.readouterr().err
    assert status == 1 and "client cert  no" in out
    assert "requires a client certificate" in err and "TEMPORAL_TLS_CLIENT_CERT_PATH" in err, err


async def test_the_worker_stops_at_start_on_a_missing_key_file(
    mtls_proxy: TlsProxy, certificates: Certificates, no_temporal_settings: Path, tmp_path: Path
) -> None:
    missing = tmp_path / "nowhere" / "client-key.pem"
    env = mtls_env(
        mtls_proxy,
        certificates,
        TEMPORAL_CONFIG_FILE=str(no_temporal_settings),
        TEMPORAL_TLS_CLIENT_KEY_PATH=str(missing),
    )
    status, _, err = await run("worker.py", env=env)
    assert status == 1 and "Traceback" not in err, err
    assert f"error: TEMPORAL_TLS_CLIENT_KEY_PATH: cannot read private key {missing}" in err
    assert err.strip().count("\n") == 0


# ---- API keys ----


async def test_an_api_key_reaches_the_server_as_the_authorization_header(
    certificates: Certificates,
    client: Client,
    no_temporal_settings: Path,
    monkeypatch: pytest.MonkeyPatch,
    settings: Settings,
) -> None:
    """As on Temporal Cloud: TLS (no client certificate) and the key as `authorization: Bearer`. The
    proxy decrypts, so it reads the request headers the server behind it receives."""
    upstream = client.service_client.config.target_host
    async with TlsProxy(certificates, upstream, require_client_cert=False) as proxy:
        key = f"oms-test-{uuid.uuid4().hex}"
        apply(
            monkeypatch,
            {
                "TEMPORAL_ADDRESS": proxy.address,
                "TEMPORAL_API_KEY": key,
                "TEMPORAL_TLS_SERVER_CA_CERT_PATH": str(certificates.ca_cert),
            },
        )
        status, out = await cli(from_environment(settings), "doctor")
        assert status == 0 and "api key      yes" in out and key not in out
        assert ("authorization", f"Bearer {key}") in proxy.request_headers


async def test_an_expired_api_key_is_one_line_with_the_servers_words(
    certificates: Certificates, no_temporal_settings: Path
) -> None:
    """Temporal Cloud refuses a revoked or expired key with UNAUTHENTICATED on the first call: the worker
    stops at start saying so, with the server's reason, naming the setting and never printing the key."""
    async with RefusingFrontend(certificates, "Jwt is expired") as frontend:
        key = f"oms-expired-{uuid.uuid4().hex}"
        env = {
            "TEMPORAL_CONFIG_FILE": str(no_temporal_settings),
            "TEMPORAL_ADDRESS": frontend.address,
            "TEMPORAL_API_KEY": key,
            "TEMPORAL_TLS_SERVER_CA_CERT_PATH": str(certificates.ca_cert),
        }
        status, out, err = await run("worker.py", env=env)
        assert f"Bearer {key}" in frontend.authorizations  # the key was offered, and refused
    assert status == 1 and "Traceback" not in err, err
    assert err.strip().count("\n") == 0, err
    assert "refused our credentials (TEMPORAL_API_KEY): Jwt is expired" in err, err
    assert key not in err + out


@pytest.mark.parametrize(
    "transport_error",
    [
        'Status { code: Unknown, message: "transport error", source: hyper::Error(Io, Custom { kind: BrokenPipe,'
        ' error: "stream closed because of a broken pipe" }) }',
        "transport error: Connection reset by peer (os error 104)",
        "received fatal alert: CertificateRequired",
    ],
)
def test_a_tls_connection_the_server_drops_without_a_client_certificate_names_it(
    transport_error: str,
) -> None:
    """TLS 1.3: the server's refusal of a client without a certificate may come back as a broken pipe
    or a reset (the client's handshake was already done), depending on timing: each says the same."""
    from connection import TemporalTarget, explain_connect_failure

    target = TemporalTarget(address="127.0.0.1:7233", namespace="default", profile="default", tls=True)
    line = explain_connect_failure(target, RuntimeError(transport_error))
    assert "requires a client certificate" in line and "TEMPORAL_TLS_CLIENT_CERT_PATH" in line, line
    assert "\n" not in line
