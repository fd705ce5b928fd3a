"""The nested daemon end to end (issues 8 and 9): the image as a CI service, restarts,
``--with-dockerd``, ``--ready``, certificates, bad input, and the network and storage
decisions (iptables backend, MTU, data root), each against the real Docker engine.

The outer engine is the private test daemon (tests/e2e/conftest.py); its containers
talk to each other by IP on user-defined networks of their own subnet (it has no
working embedded DNS), with the proxy variables emptied (tests/e2e/helpers.py).
Where a dind step is what makes something work, a control run with that step
skipped (or dind's duty turned off) shows the difference, so a test fails when the
step stops working.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import json
import re
import shlex
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import CACHE, FIGURES, NESTED_BASE_TAR, REPO, Env, Outer, mb
from tests.e2e.helpers import (
    NO_PROXY,
    PERL_GET,
    PERL_HTTP,
    PY_GET,
    Network,
    json_lines,
    load_base,
    logs,
    one_error_line,
    process_states,
    remove_all,
    run_rm,
    token,
    wait_ready,
)
from tests.support.dockerd import build_dev_image, debian_slim

REGISTRY_BIN = "/usr/bin/docker-registry"
SEED = "dind-e2e-base:1"
"""A Docker Hub name only the test registry holds (as ``library/dind-e2e-base:1``): a
nested daemon can only have it through its registry mirror."""
DAEMON_STEPS = ("stale-pid", "data-root", "tls", "hosts", "iptables", "mtu")
HTTP_GET = (
    "import sys, urllib.request\n"
    "print(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())"
)


Done = subprocess.CompletedProcess[str]


def ok(done: Done) -> str:
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def dockerd_argv(outer: Outer) -> list[str]:
    pid = outer.exec("cat", "/run/docker.pid").stdout.strip()
    return outer.exec("cat", f"/proc/{pid}/cmdline").stdout.split("\0")[:-1]


# --- the CI-service scenario ---------------------------------------------------------


@dataclass
class Service:
    """``docker run -d --privileged IMAGE --registry-mirror ... --insecure-registry ...``
    on a user-defined network, its client certificates in a named volume."""

    outer: Outer
    ip: str
    certs: str
    registry: str
    net: Network


@pytest.fixture(scope="module")
def ci_net(e2e: Env) -> Iterator[Network]:
    net = Network.create(e2e, 0)
    try:
        yield net
    finally:
        net.remove()


@pytest.fixture(scope="module")
def registry(e2e: Env, ci_net: Network) -> Iterator[str]:
    """Debian's docker-registry as a container on the CI network (``IP:5000``), holding
    the base image as ``library/dind-e2e-base:1``.

    It is seeded from the test daemon through a port published on the daemon's own
    loopback (``-p 127.0.0.1::5000``): loopback registries are insecure by default, so
    the test daemon needs no ``--insecure-registry``, and nothing leaves its netns.
    """
    config = e2e.scratch("registry") / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log: {level: error, accesslog: {disabled: true}}\n"
        "storage: {filesystem: {rootdirectory: /var/lib/registry}, delete: {enabled: true}}\n"
        "http: {addr: ':5000'}\n"
    )
    name = f"dind-e2e-registry-{token()}"
    ip = ci_net.ip(2)
    try:
        e2e.daemon.docker(
            "run", "-d", "--name", name, "--network", ci_net.name, "--ip", ip,
            "-p", "127.0.0.1::5000",
            "-v", f"{REGISTRY_BIN}:{REGISTRY_BIN}:ro",
            "-v", f"{config}:/etc/docker-registry.yml:ro",
            e2e.base, REGISTRY_BIN, "serve", "/etc/docker-registry.yml",
        )  # fmt: skip
        published = e2e.daemon.docker("port", name, "5000/tcp").stdout.split()[0]
        seed = f"{published}/library/{SEED}"
        e2e.daemon.docker("tag", e2e.base, seed)
        try:
            deadline = time.monotonic() + 30
            while (push := e2e.daemon.docker("push", seed, check=False)).returncode != 0:
                assert time.monotonic() < deadline, f"cannot seed the registry: {push.stderr}"
                time.sleep(0.5)
        finally:
            e2e.daemon.docker("rmi", seed, check=False)
        yield f"{ip}:5000"
    finally:
        e2e.daemon.docker("rm", "-f", "-v", name, check=False)


@pytest.fixture(scope="module")
def service(e2e: Env, ci_net: Network, registry: str) -> Iterator[Service]:
    """The image with its defaults (TLS on 2376, certificates in /certs) and a certs
    volume on /certs/client, images from the registry passed the docker:dind way.

    ``-v --log-format json`` are dind's options (its decisions as JSON lines in the
    container's log); from ``--registry-mirror`` on, the arguments are dockerd's.
    /etc/resolv.conf names 127.0.0.1: the lookups a pull makes (docker.io) then fail
    at once, where the test daemon's embedded DNS (127.0.0.11, which ``--dns`` cannot
    replace on a user-defined network) lets each one wait 5 s for nothing.
    """
    certs = f"dind-e2e-certs-{token()}"
    resolv = e2e.scratch("resolv") / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.1\n")
    ip = ci_net.ip(3)
    outer = None
    try:
        outer = Outer.start(
            e2e, "--network", ci_net.name, "--ip", ip, *NO_PROXY,
            "-v", f"{resolv}:/etc/resolv.conf:ro", "-v", f"{certs}:/certs/client",
            command=(
                "-v", "--log-format", "json",
                "--registry-mirror", f"http://{registry}", "--insecure-registry", registry,
            ),
        )  # fmt: skip
        FIGURES["CI service: docker run -d to ready"] = f"{wait_ready(outer):.2f} s (after run)"
        yield Service(outer, ip, certs, registry, ci_net)
    finally:
        if outer is not None:
            outer.remove()
        e2e.daemon.docker("volume", "rm", certs, check=False)


def client(e2e: Env, svc: Service, *argv: str, entrypoint: str = "docker") -> Done:
    """A client container on the service's network, as a CI job's would be:
    ``DOCKER_HOST=tcp://<service>:2376``, TLS verified with the certs volume."""
    return run_rm(
        e2e, "--network", svc.net.name, *NO_PROXY,
        "-e", f"DOCKER_HOST=tcp://{svc.ip}:2376", "-e", "DOCKER_TLS_VERIFY=1",
        "-e", "DOCKER_CERT_PATH=/certs/client", "-v", f"{svc.certs}:/certs/client:ro",
        "--entrypoint", entrypoint, e2e.image, *argv,
    )  # fmt: skip


# The CI job: one client container running the steps one after the other (one
# container start instead of fifteen), each result on a `key=value` line.
CI_JOB = """
set -eu
echo "version=$(docker version --format '{{{{.Server.Version}}}}')"
echo "registry=$(docker info --format '{{{{json .RegistryConfig}}}}')"
for i in 1 2 3; do echo "run$i=$(docker run --rm {seed} cat /etc/debian_version)"; done
cid=$(docker create {seed} sleep 600)
docker start "$cid" >/dev/null
echo "started=$(docker inspect -f '{{{{.State.Running}}}}' "$cid")"
docker stop -t 1 "$cid" >/dev/null
echo "stopped=$(docker inspect -f '{{{{.State.Running}}}} {{{{.State.ExitCode}}}}' "$cid")"
docker rm "$cid" >/dev/null
echo "left=$(docker ps -aq | wc -l)"
docker tag {seed} {ref}
docker push {ref} >/dev/null
docker rmi {ref} >/dev/null
if docker image inspect {ref} >/dev/null 2>&1; then echo "gone=no"; else echo "gone=yes"; fi
docker pull -q {ref} >/dev/null
echo "pulled=$(docker run --rm {ref} cat /etc/debian_version)"
"""


def test_ci_service_scenario(e2e: Env, service: Service) -> None:
    """version; `run --rm` three times with the image from the mirror; create, start,
    stop, rm; a push to and a pull from the insecure registry; all over TLS by IP."""
    ref = f"{service.registry}/e2e/pushed:{token()}"
    job = client(e2e, service, "-c", CI_JOB.format(seed=SEED, ref=ref), entrypoint="sh")
    assert job.returncode == 0, f"{job.stdout}\n{job.stderr}"
    out = dict(line.split("=", 1) for line in job.stdout.splitlines() if "=" in line)
    assert out["version"] and out["version"] in service.outer.exec("dockerd", "--version").stdout
    config = json.loads(out["registry"])
    assert config["Mirrors"] == [f"http://{service.registry}/"]
    assert config["IndexConfigs"][service.registry]["Secure"] is False
    debian = e2e.daemon.docker("run", "--rm", e2e.base, "cat", "/etc/debian_version").stdout
    # The first run pulls SEED: only the registry has it, and only as a mirror.
    assert [out[f"run{i}"] for i in (1, 2, 3)] == [debian.strip()] * 3
    assert out["started"] == "true"
    assert out["stopped"] == "false 137"  # sleep as PID 1 ignores SIGTERM: killed after 1 s
    assert out["left"] == "0"
    assert out["gone"] == "yes"
    assert out["pulled"] == debian.strip()
    # The registry holds both: the seed and what the nested daemon pushed.
    catalog = service.outer.exec(
        "python3", "-c", HTTP_GET, f"http://{service.registry}/v2/_catalog"
    ).stdout
    assert set(json.loads(catalog)["repositories"]) >= {"library/dind-e2e-base", "e2e/pushed"}


def test_service_is_healthy_and_ready_over_tls(e2e: Env, service: Service) -> None:
    """The image's HEALTHCHECK (`dind --ready`) turns healthy; `--ready` answers 0 on the
    unix socket inside and over TCP+TLS from a client container with the client certs."""
    deadline = time.monotonic() + 60
    while True:
        health = e2e.daemon.docker(
            "inspect", "-f", "{{.State.Health.Status}}", service.outer.name
        ).stdout.strip()
        if health == "healthy" or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert health == "healthy", logs(service.outer)
    assert service.outer.exec("dind", "--ready", check=False).returncode == 0
    over_tls = client(e2e, service, "--ready", entrypoint="dind")
    assert over_tls.returncode == 0, over_tls.stderr
    # Without the client certificate the TLS daemon refuses, and --ready says so.
    refused = run_rm(
        e2e, "--network", service.net.name, *NO_PROXY,
        "-e", f"DOCKER_HOST=tcp://{service.ip}:2376", "-e", "DOCKER_TLS=1",
        "-e", "DOCKER_CERT_PATH=/nonexistent", "--entrypoint", "dind", e2e.image, "--ready",
    )  # fmt: skip
    assert refused.returncode == 1
    assert one_error_line(refused.stderr).startswith(
        f"dind: error: not ready: https://{service.ip}"
    )


def test_no_zombie_in_the_service_after_20_nested_runs(service: Service) -> None:
    for _ in range(20):
        service.outer.exec("docker", "run", "--rm", SEED, "true")
    states = process_states(service.outer)
    assert states[1][0] == "dind"  # the init that reaps the shims
    assert [pid for pid, (_, state) in states.items() if state == "Z"] == [], states


def test_zombies_pile_up_when_dind_does_not_stay_init(e2e: Env) -> None:
    """The control: DIND_INIT=0 makes dockerd PID 1, which reaps no orphaned shim."""
    outer = Outer.start(e2e, "--network", "none", "-e", "DIND_INIT=0")
    try:
        wait_ready(outer)
        tag = load_base(outer)
        for _ in range(5):
            outer.exec("docker", "run", "--rm", tag, "true")
        states = process_states(outer)
        assert states[1][0] == "dockerd"
        zombies = [pid for pid, (_, state) in states.items() if state == "Z"]
        assert len(zombies) >= 1, states
    finally:
        outer.remove()


def test_restart_after_kill_is_ready_with_the_ca_key_kept_and_new_certificates(
    e2e: Env, service: Service
) -> None:
    """`docker kill` then `docker start`: the old pid file is still there (stale), dind
    removes it, dockerd answers again; the CA and server keys are reused, the
    certificates are new, and the client volume's new ones work."""
    outer = service.outer
    layout = ("ca/key.pem", "ca/cert.pem", "server/key.pem", "server/cert.pem", "client/cert.pem")

    def digests() -> dict[str, str]:
        return {
            f: hashlib.sha256(outer.exec("cat", f"/certs/{f}").stdout.encode()).hexdigest()
            for f in layout
        }

    before = digests()
    assert outer.exec("cat", "/run/docker.pid").stdout.strip().isdigit()
    e2e.daemon.docker("kill", outer.name)
    e2e.daemon.docker("start", outer.name)
    FIGURES["CI service: docker start after kill to ready"] = f"{wait_ready(outer):.2f} s"
    after = digests()
    assert after["ca/key.pem"] == before["ca/key.pem"]
    assert after["server/key.pem"] == before["server/key.pem"]
    assert after["server/cert.pem"] != before["server/cert.pem"]
    assert after["client/cert.pem"] != before["client/cert.pem"]
    removed = [
        r for r in json_lines(logs(outer, tail=5000))
        if r.get("step") == "stale-pid" and r.get("message") == "rm /run/docker.pid"
    ]  # fmt: skip
    assert removed, logs(outer)
    server = ok(client(e2e, service, "version", "--format", "{{.Server.Version}}")).strip()
    assert server


@pytest.mark.parametrize("skip", [False, True], ids=["stale-pid", "skipped"])
def test_a_pid_file_naming_another_live_process_is_stale(e2e: Env, skip: bool) -> None:
    """A restarted container reuses PIDs: /run/docker.pid may name a live process that
    is not dockerd (here a `sleep`): dind removes it and dockerd starts; with the step
    skipped dockerd refuses ("process with PID N is still running") and the container
    stops."""
    options = ["-e", "DIND_SKIP=stale-pid"] if skip else []
    script = "sleep 600 & echo $! >/run/docker.pid && exec dind dockerd"
    outer = Outer.start(
        e2e, "--network", "none", *options, "--entrypoint", "sh", command=("-c", script)
    )
    try:
        if not skip:
            wait_ready(outer)
            return
        status = e2e.daemon.docker("wait", outer.name, timeout=90).stdout.strip()
        assert status == "1"
        # Docker 26's words (20.10 said "pid file found, ensure docker is not running").
        refusal = re.search(
            r"failed to start daemon, ensure docker is not running or delete "
            r"/var/run/docker.pid: process with PID \d+ is still running",
            logs(outer),
        )
        assert refusal, logs(outer)
    finally:
        outer.remove()


def test_docker_stop_ends_the_nested_dockerd_through_dind(e2e: Env, service: Service) -> None:
    """dind forwards `docker stop`'s SIGTERM to dockerd, which shuts down cleanly: exit
    0 in seconds, not the grace period's SIGKILL (137)."""
    started = time.monotonic()
    e2e.daemon.docker("stop", "-t", "30", service.outer.name, timeout=90)
    took = time.monotonic() - started
    FIGURES["CI service: docker stop"] = f"{took:.2f} s"
    code = e2e.daemon.docker("inspect", "-f", "{{.State.ExitCode}}", service.outer.name).stdout
    assert int(code) == 0
    assert took < 15
    assert "Processing signal 'terminated'" in logs(service.outer)


# --- --with-dockerd and --ready --------------------------------------------------------


def test_with_dockerd_passes_the_exit_status_through(e2e: Env) -> None:
    done = run_rm(
        e2e, "--privileged", "--network", "none", "-v", "/var/lib/docker", e2e.image,
        "--with-dockerd", "sh", "-c", 'docker version --format "{{.Server.Version}}" && exit 7',
    )  # fmt: skip
    assert done.returncode == 7, done.stderr
    assert done.stdout.strip()  # the daemon answered before the command ran


def test_with_dockerd_leaves_no_daemon_behind(e2e: Env) -> None:
    """dind not as PID 1 (under sh): statuses 7 and 0 pass through, and after each run
    no dockerd, containerd or shim is left."""
    script = """
        dind --with-dockerd -- sh -c 'exit 7'; echo "status=$?"
        dind --with-dockerd -- docker info --format '{{.ServerVersion}}'; echo "status=$?"
        echo "left: $(cat /proc/[0-9]*/comm | tr '\\n' ' ')"
    """
    done = run_rm(
        e2e, "--privileged", "--network", "none", "-v", "/var/lib/docker",
        "--entrypoint", "sh", e2e.image, "-c", script,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line for line in lines if line.startswith("status=")] == ["status=7", "status=0"]
    left = next(line for line in lines if line.startswith("left: ")).split()[1:]
    assert not [c for c in left if c.startswith(("dockerd", "containerd", "docker-proxy"))], left


def test_with_dockerd_invalid_flag_is_125_with_dockerds_log_lines(e2e: Env) -> None:
    done = run_rm(
        e2e, "--privileged", "--network", "none", "-v", "/var/lib/docker", e2e.image,
        "--with-dockerd", "--dockerd-arg=--no-such-flag", "--", "true",
    )  # fmt: skip
    assert done.returncode == 125
    said, first, *tail = done.stderr.splitlines()
    assert said.startswith("dind: dockerd: TLS on 2376, /certs")  # what dind decided, first
    assert first == (
        "dind: error: dockerd exited (status 1) before answering at "
        "unix:///var/run/docker.sock; its last lines in /var/log/dockerd.log:"
    )
    assert 1 <= len(tail) <= 20
    assert any("unknown flag: --no-such-flag" in line for line in tail), tail


# `dind --ready` against nothing (no socket) and against a listener that never answers
# (accepted by the backlog, no reply), timed inside one container, all at once.
READY_PROBES = """
import json, socket, subprocess, threading, time
silent = socket.socket()
silent.bind(("127.0.0.1", 2399))
silent.listen(16)
results = {}

def probe(name, host, *args):
    started = time.monotonic()
    done = subprocess.run(
        ["dind", "--ready", *args], env={"PATH": "/opt/dind/bin:/usr/bin:/bin",
        "DOCKER_HOST": host}, capture_output=True, text=True, timeout=60)
    results[name] = {"status": done.returncode, "seconds": time.monotonic() - started,
                     "stderr": done.stderr}

probes = [
    ("missing", "unix:///var/run/docker.sock"),
    ("missing, --timeout 2", "unix:///var/run/docker.sock", "--timeout", "2"),
    ("silent", "tcp://127.0.0.1:2399"),
    ("silent, --timeout 1", "tcp://127.0.0.1:2399", "--timeout", "1"),
]
threads = [threading.Thread(target=probe, args=p) for p in probes]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def ready_probes(e2e: Env) -> dict[str, dict[str, Any]]:
    done = run_rm(
        e2e, "--network", "none", "--entrypoint", "python3", e2e.image, "-c", READY_PROBES
    )
    assert done.returncode == 0, done.stderr
    probes: dict[str, dict[str, Any]] = json.loads(done.stdout)
    FIGURES["--ready when down (s)"] = ", ".join(
        f"{name}: {p['seconds']:.2f}" for name, p in probes.items()
    )
    return probes


def test_ready_is_1_when_down_within_its_bound(ready_probes: dict[str, dict[str, Any]]) -> None:
    """Never past its bound: --timeout S retries until S; without it one request is
    bounded at 5 s (a silent daemon)."""
    for probe in ready_probes.values():
        assert probe["status"] == 1
        assert one_error_line(probe["stderr"]).startswith("dind: error: not ready: ")
    assert 1.9 <= ready_probes["missing, --timeout 2"]["seconds"] < 3.5
    assert 4.9 <= ready_probes["silent"]["seconds"] < 6.5
    assert 0.9 <= ready_probes["silent, --timeout 1"]["seconds"] < 2.5
    assert "ReadTimeout" in ready_probes["silent"]["stderr"]


def test_ready_without_timeout_is_one_attempt(ready_probes: dict[str, dict[str, Any]]) -> None:
    """README: "With --timeout S it retries until then; without, one attempt bounded at
    5 s". A refused connection (no socket) fails at once, so one attempt is quick."""
    missing = ready_probes["missing"]
    assert missing["status"] == 1
    assert missing["seconds"] < 2, f"--ready without --timeout retried: {missing}"


# --- certificates -----------------------------------------------------------------------


def _user_ca(directory: Path) -> None:
    """A CA the user manages: server/{ca,cert,key}.pem (serverAuth, IP:127.0.0.1) and
    client/{ca,cert,key}.pem signed by it; no ca/key.pem for dind to sign with."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("e2e user CA"))
        .issuer_name(name("e2e user CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    ca_pem = ca.public_bytes(serialization.Encoding.PEM)
    for sub, usage, sans in (
        (
            "server",
            ExtendedKeyUsageOID.SERVER_AUTH,
            [x509.IPAddress(ipaddress.IPv4Address("127.0.0.1"))],
        ),
        ("client", ExtendedKeyUsageOID.CLIENT_AUTH, []),
    ):
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(f"e2e {sub}"))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        (directory / sub).mkdir(parents=True)
        (directory / sub / "ca.pem").write_bytes(ca_pem)
        (directory / sub / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (directory / sub / "key.pem").write_bytes(pem_key(key))
        (directory / sub / "key.pem").chmod(0o644)


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in directory.rglob("*") if p.is_file()
    }


def test_a_user_managed_ca_is_kept_and_used(e2e: Env) -> None:
    """server/{ca,cert,key}.pem without ca/key.pem: dind verifies and uses them, writes
    nothing (the directory is mounted read-write, so it could), and the daemon serves
    the user's certificate: a client that trusts only the user's CA gets in."""
    certs = e2e.scratch("user-ca")
    _user_ca(certs)
    before = _snapshot(certs)
    outer = Outer.start(e2e, "--network", "none", "-v", f"{certs}:/certs", command=("-v",))
    try:
        tls = ("DOCKER_HOST=tcp://127.0.0.1:2376", "DOCKER_TLS_VERIFY=1")
        wait_ready(outer, *tls, "DOCKER_CERT_PATH=/certs/client")
        version = outer.exec(
            "env", *tls, "DOCKER_CERT_PATH=/certs/client", "docker", "version",
            "--format", "{{.Server.Version}}",
        )  # fmt: skip
        assert version.stdout.strip()
        assert "user-managed CA" in logs(outer, tail=1000)
    finally:
        outer.remove()
    assert _snapshot(certs) == before
    assert sorted(p.name for p in certs.iterdir()) == ["client", "server"]


SLOWED_DOWN = "Startup is intentionally being slowed down"
"""dockerd's warning (20.10 and 26 alike) before it sleeps 15 s on a TCP host without
TLS, unless --tls=false or --tlsverify=false says so explicitly."""


def test_tls_off_skips_dockerds_15_second_warning_sleep(e2e: Env) -> None:
    """DOCKER_TLS_CERTDIR set but empty (docker:dind's opt-out): plain TCP on 2375 with
    --tls=false, so dockerd skips its 15-second warning sleep: its log shows the TCP
    listener and no warning. The control: the same host given by hand (dind then adds
    no flag) and dockerd announces the sleep. (Was a 5-second bound on readiness, a
    timing target that Docker 26's slower start crossed under load.)"""
    started = time.monotonic()
    outer = Outer.start(e2e, "--network", "none", "-e", "DOCKER_TLS_CERTDIR=")
    control = None
    try:
        wait_ready(outer, "DOCKER_HOST=tcp://127.0.0.1:2375", timeout=30)
        FIGURES["TLS off: docker run -d to a TCP answer"] = f"{time.monotonic() - started:.2f} s"
        argv = dockerd_argv(outer)
        assert "tcp://0.0.0.0:2375" in argv and "--tls=false" in argv, argv
        log = logs(outer, tail=1000)
        assert "API listen on [::]:2375" in log, log
        assert SLOWED_DOWN not in log, log
        control = Outer.start(
            e2e, "--network", "none", "-e", "DOCKER_TLS_CERTDIR=",
            command=("-H", "tcp://0.0.0.0:2375"),
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while SLOWED_DOWN not in (said := logs(control, tail=1000)):
            assert time.monotonic() < deadline, said
            time.sleep(0.2)
    finally:
        outer.remove()
        if control is not None:  # dockerd asleep: killed, not stopped
            e2e.daemon.docker("rm", "-f", "-v", control.name, check=False, timeout=60)


# --- bad input --------------------------------------------------------------------------

# After dind: its status, then whatever it left behind (certificate files, the
# iptables links, dockerd's log or pid file); stderr is dind's alone.
AFTERMATH = """
dind "$@"
echo "status=$?"
find /certs -type f
ls -d /run/dind /var/log/dockerd.log /run/docker.pid 2>/dev/null
exit 0
"""


@pytest.mark.parametrize(
    ("options", "args", "status", "message"),
    [
        pytest.param(
            ("-v", "{scratch}:/certs:ro"), ("dockerd",), 125,
            "/certs/ca: Read-only file system [EROFS]", id="certs-read-only",
        ),
        pytest.param(
            ("--tmpfs", "/certs:size=4k"), ("dockerd",), 125,
            "No space left on device [ENOSPC]", id="certs-full",
        ),
        pytest.param(
            ("-e", "DOCKER_TLS_SAN=docker IP:999.1.1.1"), ("dockerd",), 2,
            "DOCKER_TLS_SAN: 'IP:999.1.1.1'", id="tls-san-garbage",
        ),
        pytest.param(
            ("-e", "DOCKER_TLS_SAN=bad$name"), ("dockerd",), 2,
            "DOCKER_TLS_SAN: 'bad$name'", id="tls-san-bad-dns",
        ),
        pytest.param((), ("--ready", "--timeout", "-1"), 2, "--timeout: '-1'", id="timeout-neg"),
        pytest.param(
            (), ("--timeout", "-1", "--with-dockerd", "--", "true"), 2,
            "--timeout: '-1'", id="with-dockerd-timeout-neg",
        ),
        pytest.param(
            (), ("--dockerd-stop-timeout", "abc", "--with-dockerd", "--", "true"), 2,
            "--dockerd-stop-timeout: 'abc'", id="stop-timeout-abc",
        ),
        pytest.param(
            ("-e", "DIND_IPTABLES=pf"), ("dockerd",), 2, "DIND_IPTABLES='pf'", id="iptables-pf",
        ),
        pytest.param(
            ("-e", "DIND_MTU=99999"), ("dockerd",), 2, "DIND_MTU='99999'", id="mtu-99999",
        ),
        pytest.param(("-e", "DIND_MTU=-1"), ("dockerd",), 2, "DIND_MTU='-1'", id="mtu-negative"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_a_documented_status_and_nothing_half_written(
    e2e: Env, options: tuple[str, ...], args: tuple[str, ...], status: int, message: str
) -> None:
    """Usage errors are 2, set-up failures 125 (README's table); one line on stderr; no
    certificate file, iptables link, dockerd log or pid file left."""
    scratch = e2e.scratch("certs")
    filled = [o.format(scratch=scratch) for o in options]
    if not any(o.endswith(":/certs:ro") or o.startswith("/certs:") for o in filled):
        filled += ["-v", f"{scratch}:/certs"]
    done = run_rm(
        e2e, "--privileged", "--network", "none", *filled,
        "--entrypoint", "sh", e2e.image, "-c", AFTERMATH, "sh", *args,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    first, *leftovers = done.stdout.splitlines()
    assert first == f"status={status}"
    assert leftovers == []
    assert message in one_error_line(done.stderr)
    assert list(scratch.rglob("*")) == []


def test_hosts_already_given_means_dind_adds_none(e2e: Env) -> None:
    """`IMAGE -H unix:///run/e2e.sock`: dockerd listens there only: no default socket,
    no TCP port, though TLS certificates are configured (DOCKER_TLS_CERTDIR=/certs)."""
    outer = Outer.start(e2e, "--network", "none", command=("-H", "unix:///run/e2e.sock"))
    try:
        wait_ready(outer, "DOCKER_HOST=unix:///run/e2e.sock")
        argv = dockerd_argv(outer)
        hosts = [argv[i + 1] for i, a in enumerate(argv) if a in ("-H", "--host")]
        assert hosts == ["unix:///run/e2e.sock"], argv
        assert not [a for a in argv if a.startswith("--tls")], argv
        assert outer.exec("test", "-e", "/var/run/docker.sock", check=False).returncode == 1
        listening = outer.sh("cat /proc/net/tcp /proc/net/tcp6").stdout.splitlines()
        assert [line for line in listening if line.split()[3:4] == ["0A"]] == []
    finally:
        outer.remove()


# --- iptables: the backend the network namespace already uses (issue 9) -----------------

# Each outer container runs RULES, then records dind's --check report and --dry-run
# plan (before dind acts, so the evidence is the wrapper's alone), then becomes dind.
# --userland-proxy=false: a published port is then reached through the nested
# dockerd's NAT rules only, never through a docker-proxy process.
DOCKERD_ARGS = ("--userland-proxy=false",)
# A firewall of one backend: one rule (the evidence dind counts) and a FORWARD policy
# of DROP. The policy makes a mismatch visible on this kernel: its NAT works with both
# backends at once, but a packet must pass both backends' FORWARD chains.
FIREWALL = "iptables-{0} -P FORWARD DROP && iptables-{0} -t nat -A POSTROUTING -j RETURN"
IPTABLES_CASES: dict[str, tuple[str, tuple[str, ...]]] = {
    "legacy": (FIREWALL.format("legacy"), ()),
    "legacy, step skipped": (FIREWALL.format("legacy"), ("-e", "DIND_SKIP=iptables")),
    "nft": (FIREWALL.format("nft"), ()),
    "no rules": ("true", ()),
}


def start_with_evidence(
    e2e: Env,
    *options: str,
    rules: str = "true",
    dockerd: tuple[str, ...] = (),
    image: str = "",
) -> Outer:
    flags = " ".join(shlex.quote(a) for a in dockerd)
    check_flags = " ".join(shlex.quote(f"--dockerd-arg={a}") for a in dockerd)
    script = (
        f"{rules} || exit 99\n"
        f"dind --check --log-format json {check_flags} >/e2e-check.json 2>/e2e-check.err\n"
        f"dind --dry-run --log-format json dockerd {flags} >/e2e-dry-run.json\n"
        f"exec dind -v dockerd {flags}\n"
    )
    return Outer.start(e2e, *options, "--entrypoint", "sh", command=("-c", script), image=image)


def evidence(outer: Outer) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(the --check report, the --dry-run records) recorded before dind ran."""
    report = json.loads(outer.exec("cat", "/e2e-check.json").stdout)
    plan = [json.loads(line) for line in outer.exec("cat", "/e2e-dry-run.json").stdout.splitlines()]
    return report, plan


def step_of(report: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in report["daemon"]["steps"] if s["step"] == name)


@pytest.fixture(scope="module")
def iptables_cases(e2e: Env) -> Iterator[dict[str, Outer]]:
    """All four outer containers at once (--network none: only the wrapper's rules)."""
    started: dict[str, Outer] = {}
    try:
        for name, (rules, options) in IPTABLES_CASES.items():
            started[name] = start_with_evidence(
                e2e, "--network", "none", *options, rules=rules, dockerd=DOCKERD_ARGS
            )
        yield started
    finally:
        remove_all(list(started.values()))


def chains(outer: Outer) -> dict[str, bool]:
    """Where the nested dockerd made its nat DOCKER chain: backend → present."""
    return {
        backend: outer.exec(
            f"iptables-{backend}", "-t", "nat", "-S", "DOCKER", check=False
        ).returncode
        == 0
        for backend in ("legacy", "nft")
    }


@dataclass
class Web:
    """A nested HTTP server published on 8080 (`docker run -d -p 8080:80`)."""

    tag: str
    gateway: str  # the nested docker0's address: the outer container's own
    address: str  # the server container's address on docker0


def serve(outer: Outer) -> Web:
    tag = load_base(outer)
    outer.exec(
        "docker", "run", "-d", "--name", "web", "-p", "8080:80", tag, "perl", "-e", PERL_HTTP
    )
    gateway, address = outer.exec(
        "docker", "inspect", "-f", "{{.NetworkSettings.Gateway}} {{.NetworkSettings.IPAddress}}",
        "web",
    ).stdout.split()  # fmt: skip
    return Web(tag, gateway, address)


def published_from_outer(outer: Outer, web: Web) -> str:
    """GET the published port from the outer container (python3 of the image)."""
    return outer.exec("python3", "-c", PY_GET, web.gateway, "8080", check=False).stdout


def from_nested_container(outer: Outer, web: Web) -> Done:
    """GET the server from another nested container: bridged traffic, which this kernel
    passes through the FORWARD chains of both backends (bridge-nf-call-iptables)."""
    return outer.exec(
        "docker", "run", "--rm", web.tag, "timeout", "15", "perl", "-e", PERL_GET,
        f"{web.address}:80", check=False, timeout=60,
    )  # fmt: skip


def test_legacy_rules_make_the_nested_dockerd_use_legacy(iptables_cases: dict[str, Outer]) -> None:
    outer = iptables_cases["legacy"]
    wait_ready(outer)
    report, plan = evidence(outer)
    daemon = report["daemon"]
    assert daemon["iptables_rules"] == {"nft": 0, "legacy": 1}
    assert report["network"]["backend"] == "legacy"
    step = step_of(report, "iptables")
    assert step["note"] == "legacy: 1 rule(s) in the legacy tables, 0 in nf_tables"
    assert "iptables -> /usr/sbin/iptables-legacy" in step["describe"]
    links = next(r for r in plan if r["step"] == "iptables")["links"]
    assert set(links.values()) == {f"/usr/sbin/{t}" for t in (
        "iptables-legacy", "iptables-legacy-save", "iptables-legacy-restore",
        "ip6tables-legacy", "ip6tables-legacy-save", "ip6tables-legacy-restore",
    )}  # fmt: skip
    assert outer.exec("readlink", "/run/dind/iptables/iptables").stdout.strip() == (
        "/usr/sbin/iptables-legacy"
    )
    web = serve(outer)
    assert chains(outer) == {"legacy": True, "nft": False}
    assert "hello-e2e" in published_from_outer(outer, web)
    nested = from_nested_container(outer, web)
    assert "hello-e2e" in nested.stdout, nested.stderr


def test_legacy_rules_with_the_step_skipped_break_nested_traffic(
    iptables_cases: dict[str, Outer],
) -> None:
    """The control: the image's default (nf_tables) next to a legacy firewall. dockerd's
    chains land in nf_tables, and the legacy FORWARD policy drops its containers'
    traffic."""
    outer = iptables_cases["legacy, step skipped"]
    wait_ready(outer)
    assert outer.exec("test", "-e", "/run/dind/iptables", check=False).returncode == 1
    web = serve(outer)
    assert chains(outer) == {"legacy": False, "nft": True}
    nested = from_nested_container(outer, web)
    assert nested.returncode != 0
    assert "hello-e2e" not in nested.stdout
    assert f"connect {web.address}:80" in nested.stderr


def test_nf_tables_rules_make_the_nested_dockerd_use_nf_tables(
    iptables_cases: dict[str, Outer],
) -> None:
    outer = iptables_cases["nft"]
    wait_ready(outer)
    report, _ = evidence(outer)
    assert report["daemon"]["iptables_rules"] == {"nft": 1, "legacy": 0}
    step = step_of(report, "iptables")
    assert step["note"] == "nf_tables: 1 rule(s) in nf_tables, 0 in the legacy tables"
    assert outer.exec("readlink", "/run/dind/iptables/iptables").stdout.strip() == (
        "/usr/sbin/iptables-nft"
    )
    web = serve(outer)
    assert chains(outer) == {"legacy": False, "nft": True}
    assert "hello-e2e" in published_from_outer(outer, web)
    nested = from_nested_container(outer, web)
    assert "hello-e2e" in nested.stdout, nested.stderr


def test_no_rules_at_all_takes_the_kernels_working_backend(
    iptables_cases: dict[str, Outer],
) -> None:
    outer = iptables_cases["no rules"]
    wait_ready(outer)
    report, _ = evidence(outer)
    assert report["daemon"]["iptables_rules"] == {"nft": 0, "legacy": 0}
    step = step_of(report, "iptables")
    kernel_default = "nf_tables: no rules in either backend; the kernel's nf_tables works here"
    assert step["note"] == kernel_default
    web = serve(outer)
    assert chains(outer) == {"legacy": False, "nft": True}
    assert "hello-e2e" in published_from_outer(outer, web)
    nested = from_nested_container(outer, web)
    assert "hello-e2e" in nested.stdout, nested.stderr


def test_deciding_the_backend_leaves_the_network_namespace_as_it_was(e2e: Env) -> None:
    """--check "changes nothing", and dind dockerd's evidence must not create evidence:
    with no rules anywhere, no legacy table may appear (/proc/net/ip_tables_names), and
    --check must not report a legacy backend. (The report is kept out of /tmp, which
    the second dind covers with its tmpfs.)"""
    script = """
        echo "start=$(cat /proc/net/ip_tables_names)"
        dind --check --log-format json >/root/check.json
        echo "after check=$(cat /proc/net/ip_tables_names)"
        dind --with-dockerd -- sh -c 'echo "with dockerd=$(cat /proc/net/ip_tables_names)"'
        printf 'check=%s\\n' "$(tr -d '\\n' </root/check.json)"
    """
    done = run_rm(
        e2e, "--privileged", "--network", "none", "-v", "/var/lib/docker",
        "--entrypoint", "sh", e2e.image, "-c", script,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    assert out["start"] == ""
    assert out["after check"] == "", "--check created legacy tables"
    assert out["with dockerd"] == "", "dind dockerd created legacy tables"
    network = json.loads(out["check"])["network"]
    assert network["legacy_tables"]["ip"] == []
    assert network["backend"] != "legacy"


# --- MTU ------------------------------------------------------------------------------


ALTERNATIVE_SUITE = "bookworm"
"""Debian 12: docker.io 20.10 (no ``--default-network-opt``) and Python 3.11, the
image's tested alternative to its default (Debian 13: docker.io 26, Python 3.13)."""
ALTERNATIVE_IP = 200
"""The alternative's outer container on the MTU network: high, clear of the addresses
the test daemon hands out in order to the others."""


@pytest.fixture(scope="module")
def alternative_image(e2e: Env) -> str:
    """The Dockerfile built with ``--build-arg DEBIAN_SUITE=bookworm`` by scripts/build-image,
    as a user would: its FROM becomes debian:bookworm-slim (a debootstrap image here)."""
    started = time.monotonic()
    debian_slim(e2e.daemon, CACHE, ALTERNATIVE_SUITE)
    FIGURES[f"base image {ALTERNATIVE_SUITE} (debootstrap or cache + import)"] = (
        f"{time.monotonic() - started:.1f} s"
    )
    started = time.monotonic()
    tag = f"{e2e.image}-{ALTERNATIVE_SUITE}"
    build = build_dev_image(
        e2e.daemon, REPO, tag=tag, build_args=("--build-arg", f"DEBIAN_SUITE={ALTERNATIVE_SUITE}")
    )
    if build.returncode != 0:
        pytest.fail(
            f"scripts/build-image -- --build-arg DEBIAN_SUITE={ALTERNATIVE_SUITE} failed:\n"
            f"{build.stdout[-6000:]}\n{build.stderr}"
        )
    FIGURES[f"image build on {ALTERNATIVE_SUITE} (scripts/build-image)"] = (
        f"{time.monotonic() - started:.1f} s"
    )
    size = int(e2e.daemon.docker("image", "inspect", "-f", "{{.Size}}", tag).stdout)
    FIGURES[f"image size on {ALTERNATIVE_SUITE}"] = mb(size)
    return tag


@pytest.fixture(scope="module")
def mtu_net(e2e: Env) -> Iterator[Network]:
    """A user-defined network of the test daemon with MTU 1400."""
    net = Network.create(e2e, 1, "-o", "com.docker.network.driver.mtu=1400")
    try:
        yield net
    finally:
        net.remove()


@pytest.fixture(scope="module")
def alternative_certs(e2e: Env) -> Iterator[str]:
    """A volume for the alternative's client certificates (/certs/client), as a CI
    service's would be."""
    name = f"dind-e2e-certs-{token()}"
    try:
        yield name
    finally:
        e2e.daemon.docker("volume", "rm", name, check=False)


@pytest.fixture(scope="module")
def mtu_cases(
    e2e: Env, mtu_net: Network, alternative_image: str, alternative_certs: str
) -> Iterator[dict[str, Outer]]:
    """Outer containers on a network with MTU 1400: dind's default with the image's
    dockerd (26) and with Docker 20.10 (the bookworm alternative, which also serves
    its smoke run: TLS on 2376 at a fixed address, client certificates in a volume),
    and DIND_MTU=off."""
    started: dict[str, Outer] = {}
    try:
        started["auto"] = start_with_evidence(e2e, "--network", mtu_net.name)
        started["auto, Docker 20.10"] = start_with_evidence(
            e2e, "--network", mtu_net.name, "--ip", mtu_net.ip(ALTERNATIVE_IP), *NO_PROXY,
            "-v", f"{alternative_certs}:/certs/client", image=alternative_image,
        )  # fmt: skip
        started["off"] = start_with_evidence(e2e, "--network", mtu_net.name, "-e", "DIND_MTU=off")
        yield started
    finally:
        remove_all(list(started.values()))


def dockerd_version(outer: Outer) -> tuple[int, int]:
    text = outer.exec("dockerd", "--version").stdout
    found = re.search(r"version (\d+)\.(\d+)", text)
    assert found, text
    return int(found.group(1)), int(found.group(2))


def mtus(outer: Outer, tag: str) -> dict[str, str]:
    """docker0 (with a container attached: a bridge takes its ports' smallest MTU), a
    nested container's eth0, and a container's on a nested user-defined network."""
    outer.exec("docker", "run", "-d", "--name", "idle", tag, "sleep", "600")
    outer.exec("docker", "network", "create", "e2e-user")
    return {
        "docker0": outer.exec("cat", "/sys/class/net/docker0/mtu").stdout.strip(),
        "nested eth0": outer.exec(
            "docker", "exec", "idle", "cat", "/sys/class/net/eth0/mtu"
        ).stdout.strip(),
        "nested user network": outer.exec(
            "docker", "run", "--rm", "--network", "e2e-user", tag, "cat", "/sys/class/net/eth0/mtu"
        ).stdout.strip(),
    }


@pytest.mark.parametrize(
    ("case", "newer"),
    [("auto", True), ("auto, Docker 20.10", False)],
    ids=["docker-26", "docker-20.10"],
)
def test_mtu_of_the_default_route_reaches_nested_containers(
    mtu_cases: dict[str, Outer], case: str, newer: bool
) -> None:
    """Behind MTU 1400, docker0 and nested containers get 1400. A nested user-defined
    network needs dockerd's --default-network-opt (Docker 24 and later): with the
    image's Docker 26 it gets 1400 too; the bookworm alternative's docker.io 20.10
    lacks the flag, so there dind adds only --mtu and such networks keep 1500: the
    limit of that dockerd, asserted as such."""
    outer = mtu_cases[case]
    wait_ready(outer)
    assert (dockerd_version(outer) >= (24, 0)) == newer  # the premise of each case
    assert outer.exec("cat", "/sys/class/net/eth0/mtu").stdout.strip() == "1400"  # the premise
    report, plan = evidence(outer)
    assert report["daemon"]["mtu"] == {"eth0": 1400}
    step = step_of(report, "mtu")
    assert step["note"].startswith("the default route leaves by eth0, MTU 1400")
    assert step["describe"].startswith("dockerd --mtu 1400")
    planned = next(r for r in plan if r["step"] == "exec")["argv"]
    argv = dockerd_argv(outer)
    for flags in (planned, argv):
        assert "--mtu" in flags and flags[flags.index("--mtu") + 1] == "1400", flags
        assert ("--default-network-opt" in flags) == newer, flags
    seen = mtus(outer, load_base(outer))
    FIGURES[f"MTU behind a 1400 network (dind {case})"] = str(seen)
    assert seen == {
        "docker0": "1400",
        "nested eth0": "1400",
        "nested user network": "1400" if newer else "1500",
    }
    # The other evidence on a user-defined network: the outer daemon's embedded-DNS
    # rules, in its own backend; dind followed the backend that holds the rules.
    rules = report["daemon"]["iptables_rules"]
    FIGURES[f"iptables evidence on a test-daemon network ({case})"] = (
        f"{rules}: {step_of(report, 'iptables')['note']}"
    )
    holder = "nft" if rules["nft"] >= rules["legacy"] else "legacy"
    assert rules[holder] > 0
    backend = outer.exec("readlink", "/run/dind/iptables/iptables").stdout.strip()
    assert backend == f"/usr/sbin/iptables-{holder}"


def test_mtu_off_leaves_1500(mtu_cases: dict[str, Outer]) -> None:
    outer = mtu_cases["off"]
    wait_ready(outer)
    report, _ = evidence(outer)
    assert step_of(report, "mtu")["note"] == "DIND_MTU=off"
    assert "--mtu" not in dockerd_argv(outer)
    seen = mtus(outer, load_base(outer))
    assert seen == {"docker0": "1500", "nested eth0": "1500", "nested user network": "1500"}


# The bookworm alternative's smoke run, from a client container of that image: its
# own docker CLI against the outer container's dockerd over TCP+TLS by IP.
ALTERNATIVE_JOB = """
set -eu
echo "client=$(docker version --format '{{.Client.Version}}')"
echo "server=$(docker version --format '{{.Server.Version}}')"
docker load -q -i "$2" >/dev/null
echo "run=$(docker run --rm "$1" cat /etc/debian_version)"
"""


def test_alternative_image_serves_a_tls_client_on_a_user_defined_network(
    e2e: Env,
    mtu_cases: dict[str, Outer],
    mtu_net: Network,
    alternative_image: str,
    alternative_certs: str,
) -> None:
    """The bookworm image's smoke run (its nested `docker run` behind MTU 1400 is the
    test above): another container of that image on the same user-defined network, TLS
    verified with the client certificates dind wrote to the volume, loads the base
    image into the nested Docker 20.10 and runs a container there."""
    outer = mtu_cases["auto, Docker 20.10"]
    wait_ready(outer)
    job = run_rm(
        e2e, "--network", mtu_net.name, *NO_PROXY,
        "-e", f"DOCKER_HOST=tcp://{mtu_net.ip(ALTERNATIVE_IP)}:2376", "-e", "DOCKER_TLS_VERIFY=1",
        "-e", "DOCKER_CERT_PATH=/certs/client", "-v", f"{alternative_certs}:/certs/client:ro",
        "-v", f"{e2e.base_tar}:{NESTED_BASE_TAR}:ro",
        "--entrypoint", "sh", alternative_image, "-c", ALTERNATIVE_JOB, "sh", e2e.base,
        NESTED_BASE_TAR,
    )  # fmt: skip
    assert job.returncode == 0, f"{job.stdout}\n{job.stderr}"
    out = dict(line.split("=", 1) for line in job.stdout.splitlines() if "=" in line)
    assert out["server"].startswith("20.10."), out  # Debian 12's docker.io: the premise
    assert out["server"] in outer.exec("dockerd", "--version").stdout
    assert out["client"].startswith("20.10."), out  # bookworm's CLI is in docker.io
    debian = e2e.daemon.docker("run", "--rm", e2e.base, "cat", "/etc/debian_version").stdout
    assert out["run"] == debian.strip()


# --- the data root ----------------------------------------------------------------------


def check_report(
    e2e: Env, *options: str, dockerd: tuple[str, ...] = ()
) -> tuple[int, dict[str, Any]]:
    done = run_rm(
        e2e, "--privileged", "--network", "none", *options, "--entrypoint", "dind", e2e.image,
        "--check", "--log-format", "json", *(f"--dockerd-arg={a}" for a in dockerd),
    )  # fmt: skip
    return done.returncode, json.loads(done.stdout)


def test_data_root_on_the_containers_own_root_is_refused_with_the_hint(e2e: Env) -> None:
    certs = e2e.scratch("certs")
    done = run_rm(
        e2e, "--privileged", "--network", "none", "-v", f"{certs}:/certs", e2e.image,
        "--data-root", "/var/lib/docker2",
    )  # fmt: skip
    assert done.returncode == 125
    line = one_error_line(done.stderr)
    assert "/var/lib/docker2 is on overlayfs" in line
    assert "docker run -v /var/lib/docker2" in line  # the fix
    assert list(certs.iterdir()) == []  # refused before any step acted

    status, report = check_report(e2e, dockerd=("--data-root=/var/lib/docker2",))
    assert status == 1 and report["ok"] is False
    assert report["daemon"]["data_root_fs"] == "overlay"
    assert step_of(report, "data-root")["status"] == "refused"
    blockers = [(f["area"], f["name"]) for f in report["findings"] if f["level"] == "blocker"]
    assert ("daemon", "data-root") in blockers


@pytest.fixture(scope="module")
def data_roots(e2e: Env) -> Iterator[dict[str, Outer]]:
    """`--data-root /var/lib/docker2` with a volume there, and without one but with
    `--storage-driver vfs` (started together)."""
    started: dict[str, Outer] = {}
    try:
        started["volume"] = Outer.start(
            e2e, "--network", "none", "-v", "/var/lib/docker2",
            command=("--data-root", "/var/lib/docker2"),
        )  # fmt: skip
        started["vfs"] = Outer.start(
            e2e, "--network", "none",
            command=("--data-root", "/var/lib/docker2", "--storage-driver", "vfs"),
        )  # fmt: skip
        yield started
    finally:
        remove_all(list(started.values()))


def test_data_root_on_a_volume_is_ready_with_overlay2(
    e2e: Env, data_roots: dict[str, Outer]
) -> None:
    outer = data_roots["volume"]
    wait_ready(outer)
    info = json.loads(outer.exec("docker", "info", "--format", "{{json .}}").stdout)
    assert (info["Driver"], info["DockerRootDir"]) == ("overlay2", "/var/lib/docker2")
    status, report = check_report(
        e2e, "-v", "/var/lib/docker2", dockerd=("--data-root=/var/lib/docker2",)
    )
    assert status == 0
    assert report["daemon"]["data_root_fs"] not in (None, "overlay")
    step = step_of(report, "data-root")
    assert step["status"] == "satisfied"
    assert step["note"] == f"/var/lib/docker2 is on {report['daemon']['data_root_fs']}"


def test_data_root_with_an_explicit_storage_driver_is_left_alone(
    data_roots: dict[str, Outer],
) -> None:
    outer = data_roots["vfs"]
    wait_ready(outer)
    info = json.loads(outer.exec("docker", "info", "--format", "{{json .}}").stdout)
    assert (info["Driver"], info["DockerRootDir"]) == ("vfs", "/var/lib/docker2")
    report = json.loads(
        outer.exec(
            "dind", "--check", "--log-format", "json", "--dockerd-arg=--data-root=/var/lib/docker2",
            "--dockerd-arg=--storage-driver=vfs", check=False,
        ).stdout
    )  # fmt: skip
    assert report["daemon"]["data_root_fs"] == "overlay"
    step = step_of(report, "data-root")
    assert step["status"] == "satisfied"
    assert step["note"] == "storage driver vfs given explicitly (/var/lib/docker2 is on overlay)"


def test_dry_run_lists_the_daemon_steps_in_order(e2e: Env) -> None:
    done = run_rm(
        e2e, "--privileged", "--network", "none", "--entrypoint", "dind", e2e.image,
        "--dry-run", "--log-format", "json", "dockerd",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines()]
    order = [r["step"] for r in records if r["step"] in DAEMON_STEPS]
    assert list(dict.fromkeys(order)) == list(DAEMON_STEPS)
    assert records[-1]["step"] == "exec"
    assert records[-1]["argv"][:3] == ["dockerd", "-H", "unix:///var/run/docker.sock"]
