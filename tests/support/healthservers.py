"""Real servers on 127.0.0.1 for health-check tests, each with one behaviour: answer a status, hang,
reset, close early, speak TLS with a given certificate. No mocks: qrm's probes talk to real sockets.

One asyncio loop in a thread hosts them all (asyncio sets TCP_NODELAY on accepted sockets, so no
Nagle delay); `Certificates` makes a CA, certificates it signs and a self-signed one with `cryptography`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import http.server
import ipaddress
import socket
import ssl
import struct
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

T = TypeVar("T")
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Switch:
    """A status a test can change between rounds (a service that recovers or breaks)."""

    def __init__(self, status: int):
        self.status = status


class Servers:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.loop.set_exception_handler(lambda loop, context: None)  # failed TLS handshakes are the point
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self._servers: list[asyncio.Server] = []
        self._stop: asyncio.Event = self._call(self._make_event())
        self._holders: list[socket.socket] = []
        self._http_servers: list[http.server.ThreadingHTTPServer] = []

    @staticmethod
    async def _make_event() -> asyncio.Event:
        return asyncio.Event()

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def serve(self, handler: Handler, *, tls: ssl.SSLContext | None = None, port: int = 0) -> int:
        async def start() -> int:
            server = await asyncio.start_server(handler, "127.0.0.1", port, ssl=tls)
            self._servers.append(server)
            return int(server.sockets[0].getsockname()[1])

        return self._call(start())

    # --- behaviours --------------------------------------------------------------------------------

    def status(self, status: int | Switch, *, headers: tuple[str, ...] = (), body: bytes = b"ok",
               tls: ssl.SSLContext | None = None, read_whole_head: bool = True, port: int = 0) -> int:
        """Answer every request with `status` (a fixed number or a Switch) and close."""

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                if read_whole_head:
                    await reader.readuntil(b"\r\n\r\n")
                else:  # answer whatever comes first, as lenient servers answer garbage with a 400
                    await reader.read(65536)
                code = status.status if isinstance(status, Switch) else status
                extra = "".join(f"{h}\r\n" for h in headers)
                writer.write(f"HTTP/1.1 {code} X\r\n{extra}Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
                             .encode() + body)
                await writer.drain()
            writer.close()

        return self.serve(handle, tls=tls, port=port)

    def raw(self, data: bytes, then: str = "close", *, read_request: bool = True) -> int:
        """Send `data` (after reading the request head), then `close`, `reset` (RST) or `hang`."""

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                if read_request:
                    await reader.readuntil(b"\r\n\r\n")
                if data:
                    writer.write(data)
                    await writer.drain()
                if then == "hang":
                    await self._stop.wait()
                elif then == "reset":
                    await asyncio.sleep(0.05)  # let the client read what was sent
                    sock = writer.get_extra_info("socket")
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    writer.transport.abort()
                    return
            writer.close()

        return self.serve(handle)

    def hang(self) -> int:
        """Accept, read, never answer."""
        return self.raw(b"", "hang", read_request=False)

    def http_server(self) -> int:
        """Python's own http.server in HTTP/1.1 keep-alive mode (Nagle disabled), answering 200 on /health."""

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def do_GET(self) -> None:
                body = b"healthy" if self.path == "/health" else b"missing"
                self.send_response(200 if self.path == "/health" else 404)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self._http_servers.append(server)
        return int(server.server_address[1])

    def listener(self, port: int = 0) -> int:
        """A bare listening socket (a TCP check passes; nothing ever answers)."""
        sock = socket.socket()
        sock.bind(("127.0.0.1", port))
        sock.listen(64)
        self._holders.append(sock)
        return int(sock.getsockname()[1])

    def refused(self) -> int:
        """A port bound but not listening, held for the test: connecting to it is refused."""
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self._holders.append(sock)
        return int(sock.getsockname()[1])

    def close(self) -> None:
        async def stop() -> None:
            self._stop.set()
            for server in self._servers:
                server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(Exception):
            self._call(stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()
        for sock in self._holders:
            sock.close()
        for server in self._http_servers:
            server.shutdown()
            server.server_close()


@contextlib.contextmanager
def running() -> Iterator[Servers]:
    servers = Servers()
    try:
        yield servers
    finally:
        servers.close()


class Certificates:
    """A test CA (to trust through SSL_CERT_FILE), certificates it signs, and a self-signed one."""

    def __init__(self, folder: Path):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.ca_key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "qrm test CA")])
        self.ca_name = name
        self.ca = (self._builder(name, name, self.ca_key.public_key())
                   .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                   .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                                content_commitment=False, key_encipherment=False,
                                                data_encipherment=False, key_agreement=False,
                                                encipher_only=False, decipher_only=False), critical=True)
                   .sign(self.ca_key, hashes.SHA256()))
        self.ca_file = folder / "ca.pem"
        self.ca_file.write_bytes(self.ca.public_bytes(serialization.Encoding.PEM))

    @staticmethod
    def _builder(subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePublicKey) -> x509.CertificateBuilder:
        now = datetime.datetime.now(datetime.UTC)
        return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key)
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(hours=1))
                .not_valid_after(now + datetime.timedelta(days=1)))

    def server_context(self, name: str, *, ip: str | None = "127.0.0.1", self_signed: bool = False) -> ssl.SSLContext:
        """A server TLS context with a certificate for `name` (and `ip`), signed by the CA or by itself."""
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        alt: list[x509.GeneralName] = [x509.DNSName(name)]
        if ip:
            alt.append(x509.IPAddress(ipaddress.ip_address(ip)))
        builder = (self._builder(subject, subject if self_signed else self.ca_name, key.public_key())
                   .add_extension(x509.SubjectAlternativeName(alt), critical=False))
        cert = builder.sign(key if self_signed else self.ca_key, hashes.SHA256())
        stem = f"{name}-{'self' if self_signed else 'ca'}-{ip}"
        cert_file, key_file = self.folder / f"{stem}.pem", self.folder / f"{stem}.key"
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_file, key_file)
        return context
