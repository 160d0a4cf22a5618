"""TLS in front of a plain-HTTP test server, like the API server's own HTTPS endpoint.

A throwaway CA (openssl) signs a certificate for 127.0.0.1; the proxy terminates TLS with it and
pipes bytes to the backend, so long watches stream through unchanged. Clients trust the CA file,
as pods trust /var/run/secrets/kubernetes.io/serviceaccount/ca.crt. The proxy keeps the bearer
tokens it saw, so a test can tell which credentials a client really sent.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

_BEARER = re.compile(rb"\r\nauthorization: bearer ([^\r\n]+)\r\n", re.IGNORECASE)


@dataclass
class Certificates:
    ca: Path
    cert: Path
    key: Path


def make_certificates(directory: Path, host: str = "127.0.0.1") -> Certificates:
    """A CA and a server certificate for `host` (an IP SAN), written to `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca, key, csr, cert = (directory / n for n in ("ca.key", "ca.crt", "tls.key", "tls.csr", "tls.crt"))
    ext = directory / "san.ext"
    ext.write_text(f"subjectAltName=IP:{host}\nextendedKeyUsage=serverAuth\n")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca),
            "-days", "2", "-subj", "/CN=kubedrift-test-ca")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr),
            "-subj", "/CN=kube-apiserver")
    openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
            "-out", str(cert), "-days", "2", "-extfile", str(ext))
    return Certificates(ca, cert, key)


@dataclass
class TlsProxy:
    port: int
    tokens: set[str] = field(default_factory=set)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, proxy: TlsProxy | None) -> None:
    try:
        while data := await reader.read(65536):
            if proxy is not None:
                proxy.tokens.update(t.decode(errors="replace").strip() for t in _BEARER.findall(data))
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
        pass
    finally:
        writer.close()


@contextmanager
def tls_proxy(backend_port: int, certificates: Certificates) -> Iterator[TlsProxy]:
    """HTTPS on 127.0.0.1 (a free port) in front of http://127.0.0.1:`backend_port`."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificates.cert, certificates.key)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="tls-proxy", daemon=True)
    thread.start()
    proxy = TlsProxy(port=0)

    async def handle(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            backend_reader, backend_writer = await asyncio.open_connection("127.0.0.1", backend_port)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(_pipe(client_reader, backend_writer, proxy), _pipe(backend_reader, client_writer, None))

    async def start() -> asyncio.base_events.Server:
        return await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)

    server = asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=10)
    proxy.port = int(server.sockets[0].getsockname()[1])
    try:
        yield proxy
    finally:
        server.close()
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
