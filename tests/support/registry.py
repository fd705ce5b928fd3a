"""Run Debian's ``docker-registry`` (distribution 2.x) on 127.0.0.1 for tests and the bench."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.netns import shared_loopback_port

REGISTRY_BIN = "/usr/bin/docker-registry"


@dataclass
class LocalRegistry:
    url: str
    hostport: str
    root: Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def run_registry(
    root: Path, *, auth: str = "", storage: Path | None = None
) -> Iterator[LocalRegistry]:
    """Start the registry with its storage under ``root``; stop it (by PID) on exit.

    Its port is shared with the test daemons' network namespaces (tests.support.netns),
    so they push to and pull from ``127.0.0.1:PORT`` as if they were on this host.
    ``auth``: the config's ``auth`` section in YAML flow style (htpasswd, token);
    ``storage``: another registry's data directory, to serve its content.
    """
    port = _free_port()
    config = root / "config.yml"
    data = storage or root / "data"
    config.write_text(
        "version: 0.1\n"
        "log: {level: error, accesslog: {disabled: true}}\n"
        f"storage: {{filesystem: {{rootdirectory: {data}}}, delete: {{enabled: true}}}}\n"
        f"http: {{addr: '127.0.0.1:{port}'}}\n" + (f"auth: {auth}\n" if auth else "")
    )
    log_path = root / "registry.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [REGISTRY_BIN, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/v2/", timeout=1).status_code in (200, 401):
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"docker-registry did not start:\n{log_path.read_text()}")
            time.sleep(0.1)
        with shared_loopback_port(port):
            yield LocalRegistry(url, f"127.0.0.1:{port}", root)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
