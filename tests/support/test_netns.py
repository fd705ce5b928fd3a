"""tests.support.netns and the test daemon's network namespace (issue 12).

The gateway is tested in a throwaway network namespace (no engine needed): a port
of this machine's loopback shared into it, and the HTTP proxy (absolute-form
requests and CONNECT) carrying requests out of it. Then a real test daemon: its
network namespace is not the machine's and holds only ``lo``.
"""

from __future__ import annotations

import http.server
import json
import os
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import root_only
from tests.support.netns import PROXY_PORT, Gateway, run_in_netns, shared_loopback_port

BODY = b"reached the machine's loopback\n"

# Run inside the namespace: a GET through a shared port, the same through the
# proxy (absolute form), and a CONNECT tunnel; prints what came back.
CLIENT = r"""
import json, socket, sys
port, proxy = int(sys.argv[1]), int(sys.argv[2])
def exchange(address, data):
    with socket.create_connection(address, timeout=10) as s:
        s.sendall(data)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode()
direct = exchange(("127.0.0.1", port), b"GET /x HTTP/1.0\r\n\r\n")
proxied = exchange(
    ("127.0.0.1", proxy),
    f"GET http://127.0.0.1:{port}/y HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode(),
)
tunnel = exchange(
    ("127.0.0.1", proxy),
    f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\n\r\nGET /z HTTP/1.0\r\n\r\n".encode(),
)
print(json.dumps({"direct": direct, "proxied": proxied, "tunnel": tunnel}))
"""


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("X-Path", self.path)
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[int]:
    """An HTTP server on this machine's 127.0.0.1; yields its port."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def netns() -> Iterator[str]:
    """A throwaway network namespace (a sleeping process holds it), ``lo`` up."""
    holder = subprocess.Popen(
        ["unshare", "--net", "sh", "-c", "ip link set lo up && echo up && exec sleep 600"],
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == b"up\n"
        yield f"/proc/{holder.pid}/ns/net"
    finally:
        holder.kill()
        holder.wait(timeout=10)


@root_only
def test_gateway_shares_loopback_ports_and_proxies_out_of_the_namespace(
    netns: str, http_server: int
) -> None:
    argv = ["nsenter", f"--net={netns}", "--", "python3", "-c", CLIENT, str(http_server)]
    argv.append(str(PROXY_PORT))
    gateway = Gateway(netns).start()
    try:
        with shared_loopback_port(http_server):
            out = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True)
        replies = json.loads(out.stdout)
        # The proxy passes the absolute form on, as origin servers must accept it.
        url = f"http://127.0.0.1:{http_server}/y"
        for kind, path in (("direct", "/x"), ("proxied", url), ("tunnel", "/z")):
            expected = "HTTP/1.1 200 Connection established\r\n\r\n" if kind == "tunnel" else ""
            assert replies[kind].startswith(expected + "HTTP/1.0 200 OK"), (kind, replies[kind])
            assert f"X-Path: {path}\r\n" in replies[kind]
            assert replies[kind].endswith(BODY.decode())
        # Unshared, the port is gone from the namespace again.
        closed = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        assert closed.returncode != 0 and "ConnectionRefusedError" in closed.stderr
    finally:
        gateway.close()
    with pytest.raises(ConnectionRefusedError):  # closed: nothing listens in there any more
        run_in_netns(netns, lambda: socket.create_connection(("127.0.0.1", PROXY_PORT), 5))


@root_only
def test_a_test_daemon_has_a_network_namespace_of_its_own(tmp_path: Path) -> None:
    from tests.support.dockerd import engine_missing, start_dockerd

    if engine_missing():
        from tests.support.dockerd import ensure_engine

        ensure_engine()
    machine = os.readlink("/proc/self/ns/net")
    with start_dockerd(tmp_path / "d") as d:
        assert os.readlink(f"/proc/{d.pid}/ns/net") != machine
        links = subprocess.run(
            d.in_namespaces("ip", "-json", "link", "show"),
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
        assert [link["ifname"] for link in json.loads(links)] == ["lo"]
    assert os.readlink("/proc/self/ns/net") == machine
