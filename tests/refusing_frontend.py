"""A TLS endpoint on 127.0.0.1 that answers every gRPC call the way Temporal Cloud answers a revoked or
expired API key: `grpc-status: 16` (UNAUTHENTICATED) with a message, and nothing else.

The dev server has no API keys to refuse, so this stands in for the frontend's refusal only: a real TLS
handshake (tests/tls_proxy.py's server and certificates) and real HTTP/2 (h2), so the SDK meets the
refusal exactly as it would from a cluster. It records the `authorization` headers it was sent.
"""

from __future__ import annotations

import asyncio
import ssl

import h2.config
import h2.connection
import h2.events
import h2.exceptions

from tests.tls_proxy import Certificates, TlsServer

UNAUTHENTICATED = 16  # gRPC status code


class RefusingFrontend(TlsServer):
    def __init__(self, certificates: Certificates, message: str) -> None:
        super().__init__(certificates)
        self.message = message
        self.authorizations: list[str] = []

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
            headers = {str(k): str(v) for k, v in event.headers or []}
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
