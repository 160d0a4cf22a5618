"""Real git repositories for tests, and a smart-HTTP git server on 127.0.0.1 behind basic auth.

    with serve_git_http(tmp_path / "srv", username="bot", password="t0ken") as server:
        origin = server.create_repo("shop", {"apps/web.yaml": "..."})   # bare repo, served
        url = server.url("shop")                                       # http://127.0.0.1:PORT/shop.git
        server.commit("shop", {"apps/web.yaml": "..."}, "scale web")   # push a new commit

The server runs the real `git http-backend` as a CGI program for every request. With `tls=True`
it serves https:// with a self-signed certificate for 127.0.0.1 (`server.ca_file`; point git at it
with GIT_SSL_CAINFO).
"""

from __future__ import annotations

import base64
import hmac
import os
import ssl
import subprocess
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urlsplit

# Tests must not depend on the machine's git configuration.
GIT_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_AUTHOR_NAME": "Test Author",
    "GIT_AUTHOR_EMAIL": "author@example.com",
    "GIT_COMMITTER_NAME": "Test Author",
    "GIT_COMMITTER_EMAIL": "author@example.com",
    "GIT_TERMINAL_PROMPT": "0",
}


def git(*args: str, cwd: Path | str | None = None) -> str:
    """Run git with a neutral configuration and return its stdout (stripped)."""
    done = subprocess.run(
        ["git", *args],
        cwd=cwd,
        env={**os.environ, **GIT_ENV},
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout.strip()


def write_files(root: Path, files: Mapping[str, str | None]) -> None:
    """Write files relative to root; a None value deletes the file."""
    for rel, text in files.items():
        path = root / rel
        if text is None:
            path.unlink(missing_ok=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def init_repo(path: Path, files: Mapping[str, str | None], message: str = "initial", branch: str = "main") -> str:
    """A working repository at `path` with one commit holding `files`; returns the commit SHA."""
    path.mkdir(parents=True, exist_ok=True)
    git("init", "-q", "-b", branch, str(path))
    return commit_files(path, files, message)


def commit_files(path: Path, files: Mapping[str, str | None], message: str) -> str:
    """Commit `files` (None deletes) on the current branch of the working repo at `path`; returns the SHA."""
    write_files(path, files)
    git("add", "-A", cwd=path)
    git("commit", "-q", "--allow-empty", "-m", message, cwd=path)
    return git("rev-parse", "HEAD", cwd=path)


@dataclass
class GitHttpServer:
    """Serves every bare repository under `root` at http://127.0.0.1:PORT/<name>.git."""

    root: Path
    username: str | None
    password: str | None
    work: Path
    """Working copies of the served repos (create_repo/commit push from there)."""
    port: int = 0
    authenticated: list[str] = field(default_factory=list)
    """User names of the requests that passed basic auth."""
    rejected: int = 0
    """Requests answered 401 (no or wrong credentials)."""
    ca_file: Path | None = None
    """The certificate of an https server (its own CA)."""

    def url(self, name: str) -> str:
        scheme = "https" if self.ca_file is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}/{name}.git"

    def create_repo(self, name: str, files: Mapping[str, str | None], message: str = "initial") -> str:
        """A served bare repo `name` with one commit on main (working copy kept for commit()); returns the SHA."""
        work = self.work / name
        sha = init_repo(work, files, message)
        bare = self.root / f"{name}.git"
        git("clone", "-q", "--bare", str(work), str(bare))
        git("remote", "add", "served", str(bare), cwd=work)
        return sha

    def commit(self, name: str, files: Mapping[str, str | None], message: str, *, tag: str | None = None) -> str:
        """Commit to the served repo `name` (and push, with an optional tag); returns the SHA."""
        work = self.work / name
        sha = commit_files(work, files, message)
        if tag:
            git("tag", tag, cwd=work)
        git("push", "-q", "--tags", "served", "HEAD:main", cwd=work)
        return sha


def _dechunk(stream: BinaryIO) -> bytes:
    body = bytearray()
    while True:
        size = int(stream.readline().split(b";")[0].strip() or b"0", 16)
        if size == 0:
            while stream.readline() not in (b"\r\n", b"\n", b""):
                pass
            return bytes(body)
        body += stream.read(size)
        stream.readline()


def _handler(server: GitHttpServer) -> type[BaseHTTPRequestHandler]:
    expected = None
    if server.username is not None and server.password is not None:
        expected = "Basic " + base64.b64encode(f"{server.username}:{server.password}".encode()).decode()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

        def _serve(self) -> None:
            if expected is not None:
                given = self.headers.get("Authorization", "")
                if not hmac.compare_digest(given.encode(), expected.encode()):
                    server.rejected += 1
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="git"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                server.authenticated.append(server.username or "")
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                body = _dechunk(self.rfile)
            else:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            parts = urlsplit(self.path)
            env = {
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "GIT_CONFIG_NOSYSTEM": "1",
                "GIT_CONFIG_GLOBAL": os.devnull,
                "GIT_PROJECT_ROOT": str(server.root),
                "GIT_HTTP_EXPORT_ALL": "1",
                "REQUEST_METHOD": self.command,
                "PATH_INFO": unquote(parts.path),
                "QUERY_STRING": parts.query,
                "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                "CONTENT_LENGTH": str(len(body)),
                "REMOTE_ADDR": self.client_address[0],
                "REMOTE_USER": server.username or "",
            }
            if self.headers.get("Content-Encoding"):
                env["HTTP_CONTENT_ENCODING"] = self.headers["Content-Encoding"]
            if self.headers.get("Git-Protocol"):
                env["GIT_PROTOCOL"] = self.headers["Git-Protocol"]
            done = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True, check=False)
            head, _, payload = done.stdout.partition(b"\r\n\r\n")
            if not _:
                head, _, payload = done.stdout.partition(b"\n\n")
            status = 200
            headers = []
            for line in head.decode("latin-1").splitlines():
                name, _, value = line.partition(":")
                if name.lower() == "status":
                    status = int(value.strip().split()[0])
                elif name:
                    headers.append((name, value.strip()))
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    return Handler


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """(certificate, key) for 127.0.0.1, made by openssl."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    return cert, key


@contextmanager
def serve_git_http(
    root: Path, *, username: str | None = "kubedrift", password: str | None = "s3cr3t-t0ken-value",
    tls: bool = False,
) -> Iterator[GitHttpServer]:
    """Serve the bare repos under `root` over HTTP(S) on 127.0.0.1 (basic auth unless both are None)."""
    root.mkdir(parents=True, exist_ok=True)
    work = root.parent / f"{root.name}-work"
    server = GitHttpServer(root=root, username=username, password=password, work=work)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(server))
    if tls:
        cert, key = self_signed_certificate(root.parent / f"{root.name}-tls")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
        server.ca_file = cert
    httpd.daemon_threads = True
    server.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), name="git-http", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()
