"""A small registry (HTTP API v2, read side) for tests, with faults on demand.

It serves content put into it, or forwards to a real registry (``upstream``), and
can require Bearer tokens (a token-auth front with its own ``/token`` endpoint).
Faults make chosen requests fail the ways networks and registries do: an error
status, a connection cut mid-body, a corrupt byte, a Range header ignored, a stall;
and the ways a hostile registry would: any reply body, or one that never ends.
Every request is recorded so tests can check what the client asked for.
"""

from __future__ import annotations

import hashlib
import http.client
import itertools
import json
import re
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal
from urllib.parse import parse_qs, urlsplit

FaultKind = Literal[
    "status", "drop", "corrupt", "ignore-range", "stall", "redirect", "body", "endless"
]


@dataclass
class Fault:
    """What to do to the next ``times`` requests whose path matches ``path`` (a regex)."""

    path: str
    kind: FaultKind
    status: int = 500
    after: int = 0
    times: int = 1
    retry_after: str | None = None
    seconds: float = 0.0
    location: str = ""
    body: bytes = b""
    """``body``: the reply's whole body; ``endless``: the piece sent again and again."""


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    status: int = 0


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: Iterator[bytes]
    length: int | None


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Content:
    """Blobs by digest and manifests by (repository, tag or digest)."""

    blobs: dict[str, bytes] = field(default_factory=dict)
    manifests: dict[tuple[str, str], tuple[str, bytes]] = field(default_factory=dict)

    def add_blob(self, data: bytes) -> str:
        digest = sha256(data)
        self.blobs[digest] = data
        return digest

    def add_manifest(self, repo: str, tag: str | None, media_type: str, body: bytes) -> str:
        digest = sha256(body)
        self.manifests[(repo, digest)] = (media_type, body)
        if tag:
            self.manifests[(repo, tag)] = (media_type, body)
        return digest


_V2 = re.compile(r"/v2/(?P<repo>.+)/(?P<kind>manifests|blobs)/(?P<ref>[^/]+)\Z")


class RegistryServer:
    """A threaded HTTP server on 127.0.0.1; use as a context manager."""

    def __init__(self, upstream: str | None = None, token_auth: bool = False) -> None:
        self.upstream = upstream
        self.token_auth = token_auth
        self.content = Content()
        self.faults: list[Fault] = []
        self.requests: list[Recorded] = []
        self.tokens: dict[str, str] = {}
        self.lock = threading.Lock()
        server = self

        class Handler(_Handler):
            registry = server

        self.httpd = _Server(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def hostport(self) -> str:
        return self.url.removeprefix("http://")

    def __enter__(self) -> RegistryServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)

    def fault(self, *faults: Fault) -> None:
        with self.lock:
            self.faults.extend(faults)

    def take_fault(self, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.times > 0 and re.search(fault.path, path):
                    fault.times -= 1
                    return fault
        return None

    def blob_gets(self, digest: str = "") -> list[Recorded]:
        return [r for r in self.requests if "/blobs/" in r.path and digest in r.path]

    def revoke_tokens(self) -> None:
        with self.lock:
            self.tokens.clear()


class _Server(ThreadingHTTPServer):
    """Quiet about clients that hang up (the tool cancels downloads on purpose)."""

    def handle_error(self, request: object, client_address: object) -> None:
        pass


class _Handler(BaseHTTPRequestHandler):
    registry: RegistryServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        reg = self.registry
        record = Recorded("GET", self.path, dict(self.headers.items()))
        with reg.lock:
            reg.requests.append(record)
        url = urlsplit(self.path)
        match = _V2.match(url.path)
        if reg.token_auth and url.path.startswith("/v2/"):
            repo = match.group("repo") if match else ""
            if not self._authorized(repo):
                return self._challenge(repo, record)
        fault = reg.take_fault(url.path)
        if fault and fault.kind == "status":
            extra = {"Retry-After": fault.retry_after} if fault.retry_after else {}
            return self._send_error(fault.status, "INJECTED", "injected fault", record, extra)
        if fault and fault.kind in ("body", "endless"):
            return self._send_body(fault, url.path, record)
        if url.path == "/token":
            return self._token(parse_qs(url.query), record)
        if fault and fault.kind == "redirect":
            record.status = 307
            self.send_response(307)
            self.send_header("Location", fault.location + url.path)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        if url.path in ("/v2", "/v2/"):
            return self._send(
                Reply(200, {"Content-Type": "application/json"}, iter([b"{}"]), 2), record, None
            )
        if match is None:
            return self._send_error(404, "NOT_FOUND", "no such path", record)
        ignore_range = fault is not None and fault.kind == "ignore-range"
        range_header = None if ignore_range else self.headers.get("Range")
        reply = (
            self._upstream(url.path, range_header)
            if reg.upstream
            else self._local(match["repo"], match["kind"], match["ref"], range_header)
        )
        if reply is None:
            code = "MANIFEST_UNKNOWN" if match["kind"] == "manifests" else "BLOB_UNKNOWN"
            return self._send_error(404, code, f"{match['kind'][:-1]} unknown", record)
        return self._send(reply, record, fault)

    # -- content sources

    def _local(self, repo: str, kind: str, ref: str, range_header: str | None) -> Reply | None:
        content = self.registry.content
        if kind == "manifests":
            found = content.manifests.get((repo, ref))
            if found is None:
                return None
            media_type, body = found
            headers = {"Content-Type": media_type, "Docker-Content-Digest": sha256(body)}
            return Reply(200, headers, iter([body]), len(body))
        data = content.blobs.get(ref)
        if data is None:
            return None
        start = 0
        status = 200
        headers = {"Content-Type": "application/octet-stream", "Accept-Ranges": "bytes"}
        if range_header and (m := re.fullmatch(r"bytes=(\d+)-", range_header)):
            start = int(m.group(1))
            if start >= len(data):
                headers["Content-Range"] = f"bytes */{len(data)}"
                return Reply(416, headers, iter([b""]), 0)
            status = 206
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        body = data[start:]
        return Reply(status, headers, _chunks(body), len(body))

    def _upstream(self, path: str, range_header: str | None) -> Reply:
        target = urlsplit(str(self.registry.upstream))
        conn = http.client.HTTPConnection(target.hostname or "", target.port, timeout=30)
        headers = {"Accept": self.headers.get("Accept", "*/*")}
        if range_header:
            headers["Range"] = range_header
        if self.headers.get("Authorization"):
            headers["Authorization"] = self.headers["Authorization"]
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        keep = (
            "Content-Type",
            "Docker-Content-Digest",
            "Content-Range",
            "Accept-Ranges",
            "WWW-Authenticate",
        )
        out = {k: v for k in keep if (v := resp.getheader(k))}
        length = resp.getheader("Content-Length")

        def body() -> Iterator[bytes]:
            try:
                while chunk := resp.read(65536):
                    yield chunk
            finally:
                conn.close()

        return Reply(resp.status, out, body(), int(length) if length else None)

    # -- replies

    def _send(self, reply: Reply, record: Recorded, fault: Fault | None) -> None:
        record.status = reply.status
        self.send_response(reply.status)
        for key, value in reply.headers.items():
            self.send_header(key, value)
        if reply.length is not None:
            self.send_header("Content-Length", str(reply.length))
        else:
            self.close_connection = True
        self.end_headers()
        sent = 0
        try:
            for piece in reply.body:
                data = piece
                if fault and fault.kind in ("drop", "stall") and sent + len(data) >= fault.after:
                    self.wfile.write(data[: fault.after - sent])
                    self.wfile.flush()
                    if fault.kind == "drop":
                        self.close_connection = True
                        return
                    time.sleep(fault.seconds)
                    data, sent, fault = data[fault.after - sent :], fault.after, None
                if fault and fault.kind == "corrupt" and sent <= fault.after < sent + len(data):
                    i = fault.after - sent
                    data = data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1 :]
                self.wfile.write(data)
                sent += len(data)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _send_error(
        self,
        status: int,
        code: str,
        message: str,
        record: Recorded,
        headers: dict[str, str] | None = None,
    ) -> None:
        body = json.dumps({"errors": [{"code": code, "message": message}]}).encode()
        reply_headers = {"Content-Type": "application/json", **(headers or {})}
        self._send(Reply(status, reply_headers, iter([body]), len(body)), record, None)

    def _send_body(self, fault: Fault, path: str, record: Recorded) -> None:
        """A reply with the fault's status and body; ``endless`` never stops sending."""
        headers = {"Content-Type": "application/json"}
        if fault.location:
            headers["Location"] = fault.location + path
        if fault.kind == "body":
            reply = Reply(fault.status, headers, iter([fault.body]), len(fault.body))
        else:
            reply = Reply(fault.status, headers, itertools.repeat(fault.body or b"x" * 65536), None)
        self._send(reply, record, None)

    # -- token auth

    def _token(self, query: dict[str, list[str]], record: Recorded) -> None:
        scope = query.get("scope", [""])[0]
        service = query.get("service", [""])[0]
        if service != "test-registry" or not scope.startswith("repository:"):
            return self._send_error(
                400, "BAD_REQUEST", f"scope {scope!r} service {service!r}", record
            )
        token = secrets.token_hex(16)
        with self.registry.lock:
            self.registry.tokens[token] = scope
        body = json.dumps({"token": token, "expires_in": 300}).encode()
        return self._send(
            Reply(200, {"Content-Type": "application/json"}, iter([body]), len(body)), record, None
        )

    def _authorized(self, repo: str) -> bool:
        auth = self.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ")
        with self.registry.lock:
            scope = self.registry.tokens.get(token)
        return scope is not None and (not repo or scope == f"repository:{repo}:pull")

    def _challenge(self, repo: str, record: Recorded) -> None:
        realm = f"{self.registry.url}/token"
        value = f'Bearer realm="{realm}",service="test-registry"'
        if repo:
            value += f',scope="repository:{repo}:pull"'
        self._send_error(
            401, "UNAUTHORIZED", "authentication required", record, {"WWW-Authenticate": value}
        )


def _chunks(data: bytes, size: int = 65536) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]
    if not data:
        yield b""
