"""A TLS endpoint on 127.0.0.1 that answers every gRPC call the way Temporal Cloud answers a revoked or
expired API key: `grpc-status: 16` (UNAUTHENTICATED) with a message, and nothing else.

The dev server has no API keys to refuse, so this stands in for the frontend's refusal only: a real TLS
handshake (tests/tls_proxy.py's certificates) and real HTTP/2 (h2), so the SDK meets the refusal
exactly as it would from a cluster. It records the `authorization` headers it was sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl

import h2.config
import h2.connection
import h2.events

from tests.tls_proxy import Certificates

UNAUTHENTICATED = 16  # gRPC status code


class RefusingFrontend:
    def __init__(self, certificates: Certificates, message: str) -> None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(certificates.server_cert, certificates.server_key)
        context.set_alpn_protocols(["h2"])  # gRPC: the client insists on HTTP/2
        self.context = context
        self.message = message
        self.authorizations: list[str] = []
        self.server: asyncio.Server | None = None

    @property
    def address(self) -> str:
        assert self.server is not None
        return f"127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def __aenter__(self) -> RefusingFrontend:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.context)
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self.server is not None
        self.server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.server.wait_closed(), 5)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        )
        connection.initiate_connection()
        writer.write(connection.data_to_send())
        try:
            while data := await reader.read(65536):
                for event in connection.receive_data(data):
                    self._answer(connection, event)
                writer.write(connection.data_to_send())
                await writer.drain()
        except (ConnectionError, ssl.SSLError, h2.exceptions.ProtocolError):
            pass  # the client went away: nothing to answer
        finally:
            writer.close()

    def _answer(self, connection: h2.connection.H2Connection, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.RequestReceived):
            headers = dict((str(k), str(v)) for k, v in event.headers or [])
            self.authorizations.append(headers.get("authorization", ""))
            # a "trailers-only" gRPC response: the status in the one HEADERS frame that ends the stream
            connection.send_headers(
                event.stream_id,
                [
                    (":status", "200"),
                    ("content-type", "application/grpc"),
                    ("grpc-status", str(UNAUTHENTICATED)),
                    ("grpc-message", self.message),
                ],
                end_stream=True,
            )
        elif isinstance(event, h2.events.DataReceived):
            connection.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
