"""A TLS-terminating proxy in front of the suite's dev server, and the certificates it needs.

The dev server speaks plain gRPC (HTTP/2 over TCP); the proxy accepts TLS on 127.0.0.1 (mTLS when
asked: it then refuses a client without a certificate signed by the CA) and forwards the bytes, so the
client's TLS settings are tested against a real handshake."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import hpack
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Certificates:
    ca_cert: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca_cert: Path  # a CA that signed nothing here: "the wrong CA"


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return path


def _write_cert(cert: x509.Certificate, path: Path) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: str,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool = False,
    server: bool = False,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    elif server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    else:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
    return builder.sign(issuer_key, hashes.SHA256())


def make_certificates(folder: Path) -> Certificates:
    """A CA, a server certificate for 127.0.0.1 and localhost, a client certificate, and another CA."""
    ca_key, other_key, server_key, client_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(4))
    return Certificates(
        ca_cert=_write_cert(
            _certificate("OMS test CA", ca_key, "OMS test CA", ca_key, ca=True), folder / "ca.pem"
        ),
        server_cert=_write_cert(
            _certificate("localhost", server_key, "OMS test CA", ca_key, server=True), folder / "server.pem"
        ),
        server_key=_write_key(server_key, folder / "server-key.pem"),
        client_cert=_write_cert(
            _certificate("oms-worker", client_key, "OMS test CA", ca_key), folder / "client.pem"
        ),
        client_key=_write_key(client_key, folder / "client-key.pem"),
        other_ca_cert=_write_cert(
            _certificate("Someone else's CA", other_key, "Someone else's CA", other_key, ca=True),
            folder / "other-ca.pem",
        ),
    )


class TlsServer:
    """A gRPC-shaped TLS server on 127.0.0.1 (a free port) with the server certificate made here; each
    connection goes to `_serve`, which the kinds below implement. `async with` runs it."""

    def __init__(self, certificates: Certificates, *, require_client_cert: bool = False) -> None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(certificates.server_cert, certificates.server_key)
        context.set_alpn_protocols(["h2"])  # gRPC: the client insists on HTTP/2
        if require_client_cert:
            context.load_verify_locations(certificates.ca_cert)
            context.verify_mode = ssl.CERT_REQUIRED
        self.context = context
        self.server: asyncio.Server | None = None

    @property
    def address(self) -> str:
        assert self.server is not None
        return f"127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def __aenter__(self) -> Self:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.context)
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self.server is not None
        self.server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.server.wait_closed(), 5)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError


class TlsProxy(TlsServer):
    """Accepts TLS and forwards each connection's bytes to `upstream`."""

    def __init__(self, certificates: Certificates, upstream: str, *, require_client_cert: bool) -> None:
        super().__init__(certificates, require_client_cert=require_client_cert)
        self.upstream_host, port = upstream.rsplit(":", 1)
        self.upstream_port = int(port)
        # every request header the clients sent, decoded: what the server behind receives
        self.request_headers: list[tuple[str, str]] = []

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(
                self.upstream_host, self.upstream_port
            )
        except OSError:
            client_writer.close()
            return
        requests = RequestHeaders(self.request_headers)
        await asyncio.gather(
            _pipe(client_reader, upstream_writer, requests.feed),
            _pipe(upstream_reader, client_writer, lambda _: None),
            return_exceptions=True,
        )


class RequestHeaders:
    """Reads the headers out of a client's HTTP/2 stream (RFC 9113 frames, RFC 7541 HPACK), as the
    proxy forwards it: the one place an API key sent over TLS can be seen on the wire."""

    PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
    HEADERS, CONTINUATION = 0x1, 0x9
    END_HEADERS, PADDED, PRIORITY = 0x4, 0x8, 0x20

    def __init__(self, into: list[tuple[str, str]]) -> None:
        self.into = into
        self.buffer = b""
        self.preface_seen = False
        self.decoder = hpack.Decoder()  # one per connection: HPACK's table spans the connection
        self.block = b""

    def feed(self, data: bytes) -> None:
        self.buffer += data
        if not self.preface_seen:
            if len(self.buffer) < len(self.PREFACE):
                return
            self.buffer, self.preface_seen = self.buffer[len(self.PREFACE) :], True
        while len(self.buffer) >= 9:
            length = int.from_bytes(self.buffer[:3], "big")
            if len(self.buffer) < 9 + length:
                return
            kind, flags, payload = self.buffer[3], self.buffer[4], self.buffer[9 : 9 + length]
            self.buffer = self.buffer[9 + length :]
            if kind == self.HEADERS:
                padding = payload[0] if flags & self.PADDED else 0
                payload = payload[1:] if flags & self.PADDED else payload
                payload = payload[5:] if flags & self.PRIORITY else payload
                self.block = payload[: len(payload) - padding]
            elif kind == self.CONTINUATION:
                self.block += payload
            else:
                continue
            if flags & self.END_HEADERS:
                self.into.extend((str(k), str(v)) for k, v in self.decoder.decode(self.block))
                self.block = b""


async def _pipe(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, observe: Callable[[bytes], None]
) -> None:
    try:
        while data := await reader.read(65536):
            observe(data)
            writer.write(data)
            await writer.drain()
    finally:
        with contextlib.suppress(Exception):
            writer.close()
