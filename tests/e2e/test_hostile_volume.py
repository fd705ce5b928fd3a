"""Issue 21 with the real engine: the certificate volume a CI service shares with job
containers is written by a container nobody vetted, and ``dind --ready`` still keeps its
bound and says why in one line.

A service container of the image makes docker:dind's layout in a host directory; a
client container with ``/certs/client`` reaches it with ``dind --ready``; then an
attacker container with the same directory mounted read-write replaces ``ca.pem``
(then ``key.pem``) by a FIFO. Before the fix, ``--ready`` opened the FIFO and hung
forever with every terminating signal blocked.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.e2e.conftest import Env, Outer
from tests.e2e.helpers import NO_PROXY, Network, one_error_line, run_rm, wait_ready

SUBNET = 21
"""Third octet of this module's network (each module of the suite has its own)."""


@dataclass
class Shared:
    service: Outer
    net: Network
    certs: str
    ip: str


@pytest.fixture(scope="module")
def shared(e2e: Env) -> Iterator[Shared]:
    net = Network.create(e2e, SUBNET)
    certs = e2e.scratch("shared-certs")
    ip = net.ip(2)
    service = Outer.start(e2e, "--network", net.name, "--ip", ip, "-v", f"{certs}:/certs")
    try:
        wait_ready(service)
        yield Shared(service, net, str(certs), ip)
    finally:
        service.remove()
        net.remove()


def probe(e2e: Env, shared: Shared) -> tuple[int, str, float]:
    """``dind --ready --timeout 5`` from a client container with the shared client certs."""
    started = time.monotonic()
    done = run_rm(
        e2e, "--network", shared.net.name, *NO_PROXY,
        "-v", f"{shared.certs}/client:/certs/client:ro",
        "-e", f"DOCKER_HOST=tcp://{shared.ip}:2376", "-e", "DOCKER_TLS_VERIFY=1",
        "-e", "DOCKER_CERT_PATH=/certs/client",
        "--entrypoint", "dind", e2e.image, "--ready", "--timeout", "5",
        timeout=120,
    )  # fmt: skip
    return done.returncode, done.stderr, time.monotonic() - started


def plant(e2e: Env, shared: Shared, script: str) -> None:
    """Another container, with the shared directory mounted read-write, runs ``script``."""
    done = run_rm(
        e2e, "--network", "none", "-v", f"{shared.certs}/client:/certs/client",
        "--entrypoint", "sh", e2e.image, "-euc", script,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("name", ["ca.pem", "key.pem"])
def test_a_fifo_planted_in_the_shared_volume_does_not_wedge_ready(
    e2e: Env, shared: Shared, name: str
) -> None:
    status, err, took = probe(e2e, shared)
    assert status == 0, err  # the premise: the client reaches the service over TLS
    path = f"/certs/client/{name}"
    plant(e2e, shared, f"cp {path} {path}.saved && rm {path} && mkfifo {path}")
    try:
        status, err, took = probe(e2e, shared)
        assert status == 1, err
        line = one_error_line(err)
        assert f"TLS files: {path}: is not a regular file" in line, line
        assert took < 30, took  # the 5-second bound, plus a container's start and stop
    finally:
        plant(e2e, shared, f"rm -f {path} && mv {path}.saved {path}")
    status, err, _ = probe(e2e, shared)
    assert status == 0, err
