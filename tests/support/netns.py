"""Ways out of a test daemon's own network namespace that change nothing outside it.

A test dockerd runs in a network namespace of its own (see dockerd.py): on the
machine's netns, dockerd started with ``--bridge=none`` deletes the machine's
``docker0``, and any bridge or veth it made would be a change to the machine's
network. Its namespace has only ``lo``, so what the tests need from outside is
carried by userspace sockets of this process, which sit in the machine's netns
like any other client:

- **an HTTP proxy** on ``127.0.0.1:3128`` inside the namespace (plain requests in
  absolute form, and ``CONNECT``): ``docker build`` RUN steps reach the Debian
  mirror through it once the client passes the proxy variables (dockerd.py writes
  them to the client's config.json, which docker turns into build arguments);
- **shared loopback ports**: a port registered with :func:`shared_loopback_port`
  (tests.support.registry does it for its registry) is listened on at
  ``127.0.0.1:PORT`` in every gateway's namespace and connected to
  ``127.0.0.1:PORT`` on the machine, so ``docker push 127.0.0.1:PORT/...`` and a
  build step pulling from there work unchanged.

Listening sockets are created by a short-lived thread that joined the namespace
with setns(2) (a socket stays in the namespace it was made in); accepting and
relaying happen in ordinary threads. Nothing is configured in either namespace.
Limitation: a proxied connection is tied to the host of its first request.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import socket
import threading
from collections.abc import Callable, Iterator
from typing import TypeVar
from urllib.parse import urlsplit

PROXY_PORT = 3128  # below the ephemeral range, so never a shared registry port
CONNECT_TIMEOUT = 30.0
_HEAD_LIMIT = 64 * 1024
_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)
_libc.setns.argtypes = (ctypes.c_int, ctypes.c_int)

T = TypeVar("T")

_lock = threading.Lock()
_shared_ports: set[int] = set()
_gateways: set[Gateway] = set()


def run_in_netns(netns: str, fn: Callable[[], T]) -> T:
    """``fn()`` in a new thread that first joined the network namespace file ``netns``."""
    outcome: list[T] = []
    failure: list[BaseException] = []

    def target() -> None:
        try:
            fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
            try:
                if _libc.setns(fd, _CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, os.strerror(err), netns)
            finally:
                os.close(fd)
            outcome.append(fn())
        except BaseException as exc:  # handed to the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=target, name="setns")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return outcome[0]


def _listen(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(64)
    return sock


def _pump(src: socket.socket, dst: socket.socket) -> None:
    """Copy ``src`` to ``dst`` until EOF or an error, then half-close ``dst``."""
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


def _relay(a: socket.socket, b: socket.socket) -> None:
    back = threading.Thread(target=_pump, args=(b, a), daemon=True)
    back.start()
    _pump(a, b)
    back.join()


class Gateway:
    """The proxy and the shared ports for one namespace; :meth:`close` undoes it all."""

    def __init__(self, netns: str) -> None:
        self.netns = netns
        self._listeners: dict[int, socket.socket] = {}
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closed = False

    def start(self) -> Gateway:
        """Open the proxy and every port shared so far; later shares follow."""
        self._open(PROXY_PORT, self._serve_proxy)
        with _lock:
            _gateways.add(self)
            ports = sorted(_shared_ports)
        for port in ports:
            self.forward(port)
        return self

    def forward(self, port: int) -> None:
        """``127.0.0.1:port`` in the namespace now reaches ``127.0.0.1:port`` here."""

        def serve(conn: socket.socket) -> None:
            try:
                upstream = socket.create_connection(("127.0.0.1", port), CONNECT_TIMEOUT)
            except OSError:
                return
            with self._track(upstream):
                _relay(conn, upstream)

        self._open(port, serve)

    def unforward(self, port: int) -> None:
        with self._lock:
            listener = self._listeners.pop(port, None)
        if listener is not None:
            _close_listener(listener)

    def close(self) -> None:
        """Close every listener and connection (the namespace is then free to go)."""
        with _lock:
            _gateways.discard(self)
        with self._lock:
            self._closed = True
            listeners = list(self._listeners.values())
            self._listeners.clear()
            conns = list(self._conns)
        for listener in listeners:
            _close_listener(listener)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def _open(self, port: int, handler: Callable[[socket.socket], None]) -> None:
        with self._lock:
            if self._closed or port in self._listeners:
                return
        listener = run_in_netns(self.netns, lambda: _listen(port))
        with self._lock:
            self._listeners[port] = listener
        threading.Thread(
            target=self._accept, args=(listener, handler), name=f"gw-{port}", daemon=True
        ).start()

    def _accept(self, listener: socket.socket, handler: Callable[[socket.socket], None]) -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:  # closed
                return
            threading.Thread(target=self._handle, args=(conn, handler), daemon=True).start()

    def _handle(self, conn: socket.socket, handler: Callable[[socket.socket], None]) -> None:
        with self._track(conn):
            handler(conn)

    @contextlib.contextmanager
    def _track(self, sock: socket.socket) -> Iterator[None]:
        with self._lock:
            self._conns.add(sock)
        try:
            yield
        finally:
            with self._lock:
                self._conns.discard(sock)
            sock.close()

    def _serve_proxy(self, conn: socket.socket) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = conn.recv(4096)
            if not chunk or len(head) > _HEAD_LIMIT:
                return
            head += chunk
        method, _, rest = head.split(b"\r\n", 1)[0].decode("latin-1").partition(" ")
        target = rest.partition(" ")[0]
        if method == "CONNECT":
            host, _, port = target.rpartition(":")
            address = (host.strip("[]"), int(port or 443))
        else:
            url = urlsplit(target)
            if url.scheme != "http" or not url.hostname:
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n")
                return
            address = (url.hostname, url.port or 80)
        try:
            upstream = socket.create_connection(address, CONNECT_TIMEOUT)
        except OSError as exc:
            reason = f"HTTP/1.1 502 Bad Gateway\r\nConnection: close\r\n\r\n{exc}\n"
            conn.sendall(reason.encode())
            return
        with self._track(upstream):
            if method == "CONNECT":
                conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                upstream.sendall(head[head.index(b"\r\n\r\n") + 4 :])
            else:  # origin servers must accept the absolute form (RFC 9112, 3.2.2)
                upstream.sendall(head)
            _relay(conn, upstream)


def _close_listener(listener: socket.socket) -> None:
    with contextlib.suppress(OSError):
        listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() of its thread
    listener.close()


@contextlib.contextmanager
def shared_loopback_port(port: int) -> Iterator[None]:
    """While inside, ``127.0.0.1:port`` of this machine is reachable from every gateway."""
    with _lock:
        _shared_ports.add(port)
        gateways = list(_gateways)
    for gateway in gateways:
        gateway.forward(port)
    try:
        yield
    finally:
        with _lock:
            _shared_ports.discard(port)
            gateways = list(_gateways)
        for gateway in gateways:
            gateway.unforward(port)
