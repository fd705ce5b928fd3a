"""Helpers for the daemon and confinement end-to-end tests (test_daemon.py, test_confine.py).

Everything runs against the private test daemon of tests/e2e/conftest.py; the
outer containers are ``Outer`` containers of the dev image. Two facts of that
daemon shape what is here:

- its client may hand containers an HTTP proxy (tests/support/netns.py), so a
  container that talks to another container or to a nested daemon gets the proxy
  variables emptied (:data:`NO_PROXY`);
- its embedded DNS does not answer, so containers reach each other by IP address,
  on user-defined networks with a fixed subnet (:class:`Network`).

The test process runs in the machine's PID and cgroup namespaces, so it sees every
nested process under /proc with its full cgroup path: :func:`host_pids` and
:func:`cgroups_of` read where nested containers really landed.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import NESTED_BASE_TAR, Env, Outer

NO_PROXY = ("-e", "HTTP_PROXY=", "-e", "HTTPS_PROXY=", "-e", "http_proxy=", "-e", "https_proxy=")

# A minimal HTTP server for nested containers: the base image (debootstrap minbase)
# has perl-base, whose IO::Socket::INET is enough.
PERL_HTTP = (
    "use IO::Socket::INET;"
    " my $s = IO::Socket::INET->new(LocalPort => 80, Listen => 16, ReuseAddr => 1)"
    ' or die "listen: $!\\n";'
    " while (my $c = $s->accept) { <$c>;"
    ' print $c "HTTP/1.0 200 OK\\r\\n\\r\\nhello-e2e\\n"; close $c }'
)
# Its client, for a nested container: `perl -e PERL_GET HOST:PORT`; dies with the errno
# when it cannot connect within 3 s.
PERL_GET = (
    "use IO::Socket::INET;"
    " my $s = IO::Socket::INET->new(PeerAddr => $ARGV[0], Timeout => 3)"
    ' or die "connect $ARGV[0]: $!\\n";'
    ' print $s "GET / HTTP/1.0\\r\\n\\r\\n"; print <$s>;'
)
# The same from the outer container, with the image's python3 (retried for a few
# seconds: the nested server may still be starting).
PY_GET = """
import socket, sys, time
deadline = time.monotonic() + 10
while True:
    try:
        s = socket.create_connection((sys.argv[1], int(sys.argv[2])), 3)
        s.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")
        data = b""
        while chunk := s.recv(4096):
            data += chunk
        print(data.decode())
        break
    except OSError as err:
        if time.monotonic() > deadline:
            sys.exit(f"{sys.argv[1]}:{sys.argv[2]}: {err}")
        time.sleep(0.2)
"""


def token() -> str:
    return uuid.uuid4().hex[:10]


@dataclass
class Network:
    """A user-defined bridge network of the test daemon with a fixed /24 (IPs by hand)."""

    env: Env
    name: str
    prefix: str  # "10.231.0."

    @classmethod
    def create(cls, env: Env, third_octet: int, *options: str) -> Network:
        prefix = f"10.231.{third_octet}."
        name = f"dind-e2e-net-{token()}"
        env.daemon.docker(
            "network", "create", "--subnet", f"{prefix}0/24", "--gateway", f"{prefix}1",
            *options, name,
        )  # fmt: skip
        return cls(env, name, prefix)

    def ip(self, host: int) -> str:
        return f"{self.prefix}{host}"

    def remove(self) -> None:
        self.env.daemon.docker("network", "rm", self.name, check=False, timeout=60)


def run_rm(env: Env, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """``docker run --rm ARGS`` on the test daemon, not checked."""
    return env.daemon.docker("run", "--rm", *args, check=False, timeout=timeout)


def logs(outer: Outer, tail: int = 60) -> str:
    done = outer.env.daemon.docker("logs", "--tail", str(tail), outer.name, check=False)
    return done.stdout + done.stderr


def wait_ready(outer: Outer, *env: str, timeout: float = 90) -> float:
    """``dind --ready --timeout`` inside ``outer`` (``env``: KEY=VALUE for DOCKER_HOST...);
    seconds it took. Fails the test with the container's log when the daemon never answers."""
    started = time.monotonic()
    probe = outer.exec(
        "env", *env, "dind", "--ready", "--timeout", str(timeout), check=False,
        timeout=timeout + 30,
    )  # fmt: skip
    if probe.returncode != 0:
        pytest.fail(f"nested dockerd of {outer.name} not ready: {probe.stderr}\n{logs(outer)}")
    return time.monotonic() - started


def load_base(outer: Outer) -> str:
    outer.exec("docker", "load", "-q", "-i", NESTED_BASE_TAR)
    return outer.env.base


def json_lines(text: str) -> list[dict[str, Any]]:
    """The JSON records among mixed log lines (dind's JSON logs beside dockerd's text)."""
    records = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
    return records


def one_error_line(stderr: str) -> str:
    """dind's error: exactly one line on stderr, ``dind: error: ...``."""
    lines = stderr.splitlines()
    assert len(lines) == 1, f"expected one line, got {lines}"
    assert lines[0].startswith("dind: error: "), lines[0]
    return lines[0]


def marker() -> str:
    """A ``sleep`` argument no other process on the machine has: finds a nested process
    from the host by its command line."""
    return f"3600.{secrets.randbelow(10**8):08d}"


def host_pids(*argv: str) -> list[int]:
    """PIDs (machine's namespace) whose command line is exactly ``argv``."""
    wanted = "\0".join(argv).encode() + b"\0"
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "cmdline").read_bytes() == wanted:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def wait_host_pid(*argv: str, timeout: float = 30) -> int:
    deadline = time.monotonic() + timeout
    while not (pids := host_pids(*argv)):
        assert time.monotonic() < deadline, f"no process {argv} on the machine"
        time.sleep(0.1)
    assert len(pids) == 1, pids
    return pids[0]


def cgroups_of(pid: int) -> dict[str, str]:
    """/proc/PID/cgroup as read by the test (the machine's cgroup namespace): controller
    list ("" for the cgroup2 line) → full path."""
    paths = {}
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _id, controllers, path = line.split(":", 2)
        paths[controllers] = path
    return paths


def container_pid(env: Env, name: str) -> int:
    """The machine PID of a container's PID 1 (the test daemon shares the machine's PID
    namespace)."""
    return int(env.daemon.docker("inspect", "-f", "{{.State.Pid}}", name).stdout)


def under(path: str, top: str) -> bool:
    return path == top or path.startswith(top.rstrip("/") + "/")


def process_states(outer: Outer) -> dict[int, tuple[str, str]]:
    """PID → (comm, state letter) of every process in ``outer``."""
    out = outer.sh("cat /proc/[0-9]*/stat 2>/dev/null || true").stdout
    states = {}
    for line in out.splitlines():
        head, _, tail = line.rpartition(")")
        pid, _, comm = head.partition(" (")
        if tail.split() and pid.strip().isdigit():
            states[int(pid)] = (comm, tail.split()[0])
    return states


def remove_all(outers: list[Outer]) -> None:
    """Remove outer containers together: their nested containers first, killed (a nested
    `sleep` or server as PID 1 ignores SIGTERM and would cost the nested dockerd its
    10-second grace, one container after the other), then one parallel `docker stop`
    (dind forwards SIGTERM to dockerd), then `rm -v`."""
    if not outers:
        return
    daemon = outers[0].env.daemon
    for outer in outers:
        outer.exec("sh", "-c", "docker rm -f $(docker ps -aq) >/dev/null 2>&1; true", check=False)
    names = [outer.name for outer in outers]
    daemon.docker("stop", "-t", "20", *names, check=False, timeout=120)
    daemon.docker("rm", "-f", "-v", *names, check=False, timeout=120)
