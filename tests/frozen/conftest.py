"""Fixtures for the frozen-images tests: the fault-injecting test registry, a real
``docker-registry`` on loopback (open, behind htpasswd, behind a token server), and
a CLI runner.

The real registry and docker tests run for real as root (CI is root), installing
docker.io, docker-registry, skopeo and apache2-utils (htpasswd) with apt when
missing; without root they skip.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dind.frozen.cli import main
from tests.frozen.server import RegistryServer
from tests.frozen.tokens import TokenIssuer
from tests.support.dockerd import Dockerd, ensure_engine
from tests.support.registry import REGISTRY_BIN, LocalRegistry, run_registry

CACHE = Path("/var/cache/dind-e2e")
HELLO = "frozen images work\n"
USER = "alice"
PASSWORD = "s3cret-Pa55-for-frozen-tests"
"""The one login of the protected registries; tests look for it in every output."""


@dataclass
class Run:
    status: int
    err: str
    out: str = ""

    @property
    def lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.strip()]

    @property
    def errors(self) -> list[str]:
        """The error records: a failed run must say what failed in exactly one."""
        return [line for line in self.lines if line.startswith("dind-frozen-images: error: ")]


def partial(root: Path, digest: str, source_url: str) -> Path:
    """Where a partial download of ``digest`` from ``source_url`` lives in a store
    (each source has its own: see dind.frozen.blobs)."""
    tag = hashlib.sha256(source_url.encode()).hexdigest()[:16]
    return root / ".incomplete" / f"{digest.replace(':', '-')}.{tag}"


@pytest.fixture
def freeze(capsys: pytest.CaptureFixture[str]) -> Iterator[object]:
    """Run the CLI in this process: ``freeze(dir, *args) -> Run`` (stderr captured)."""

    def run(*args: str | Path) -> Run:
        capsys.readouterr()
        status = main([str(a) for a in args])
        captured = capsys.readouterr()
        return Run(status, captured.err, captured.out)

    yield run


@pytest.fixture
def fake() -> Iterator[RegistryServer]:
    """The in-memory test registry (no auth; see ``RegistryServer`` for faults)."""
    with RegistryServer() as server:
        yield server


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRegistry]:
    """Debian's ``docker-registry`` (distribution 2.x) on 127.0.0.1, for this session."""
    if not Path(REGISTRY_BIN).exists():
        if os.geteuid() != 0:
            pytest.skip(f"{REGISTRY_BIN} missing, and installing it needs root (CI is root)")
        ensure_engine()  # installs docker-registry with the engine
    root = tmp_path_factory.mktemp("registry")
    try:
        with run_registry(root) as reg:
            yield reg
    finally:
        shutil.rmtree(root, ignore_errors=True)


def need_program(program: str, package: str) -> str:
    """``program``'s path, installing Debian's ``package`` when it is missing (as CI does)."""
    found = shutil.which(program)
    if found:
        return found
    if os.geteuid() != 0:
        pytest.skip(f"{program} missing, and installing {package} needs root (CI is root)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    wait = ("-o", "DPkg::Lock::Timeout=300")
    subprocess.run(["apt-get", *wait, "update", "-q"], env=env, check=True, capture_output=True)
    subprocess.run(
        ["apt-get", *wait, "install", "-y", "-q", "--no-install-recommends", package],
        env=env,
        check=True,
        capture_output=True,
    )
    found = shutil.which(program)
    assert found, f"{program} still missing after installing {package}"
    return found


@pytest.fixture(scope="session")
def htpasswd_registry(
    registry: LocalRegistry, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalRegistry]:
    """The session registry's content behind htpasswd (Basic) auth: alice / PASSWORD."""
    htpasswd = need_program("htpasswd", "apache2-utils")
    root = tmp_path_factory.mktemp("htpasswd-registry")
    users = root / "htpasswd"
    subprocess.run([htpasswd, "-Bbc", str(users), USER, PASSWORD], check=True, capture_output=True)
    auth = f"{{htpasswd: {{realm: dind-test, path: '{users}'}}}}"
    with run_registry(root, auth=auth, storage=registry.root / "data") as reg:
        yield reg


@dataclass
class TokenRegistry:
    registry: LocalRegistry
    issuer: TokenIssuer


@pytest.fixture(scope="session")
def token_registry(
    registry: LocalRegistry, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TokenRegistry]:
    """The session registry's content behind token auth: distribution checks the JWTs of
    a test token server that knows alice / PASSWORD."""
    root = tmp_path_factory.mktemp("token-registry")
    with (
        TokenIssuer(root, {USER: PASSWORD}) as issuer,
        run_registry(root, auth=issuer.registry_auth(), storage=registry.root / "data") as reg,
    ):
        yield TokenRegistry(reg, issuer)


@dataclass
class EngineImages:
    """Runnable images in the session registry, pushed by a real docker client."""

    registry: LocalRegistry
    base_id: str
    app_id: str


@pytest.fixture(scope="session")
def engine_images(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineImages]:
    """A Debian base (1 layer) as ``library/debian:bookworm`` and an app on it (2 layers,
    the first shared, ``CMD cat /hello.txt``) as ``library/app:1``, pushed by a private
    daemon with the docker client to a loopback registry of their own (other tests
    push synthetic images under the same names to the session's)."""
    if os.geteuid() != 0:
        pytest.skip("needs root for a docker daemon (CI runs as root)")
    ensure_engine()
    work = tmp_path_factory.mktemp("pusher")
    (work / "registry").mkdir()
    with run_registry(work / "registry") as registry:
        yield from _push_engine_images(registry, work)


def _push_engine_images(registry: LocalRegistry, work: Path) -> Iterator[EngineImages]:
    from tests.support.dockerd import base_image, start_dockerd

    d = start_dockerd(work / "d")
    try:
        base = base_image(d, CACHE)
        cid = d.docker("create", base, "true").stdout.strip()
        (work / "hello.txt").write_text(HELLO)
        d.docker("cp", work / "hello.txt", f"{cid}:/hello.txt")
        d.docker("commit", "--change", 'CMD ["cat", "/hello.txt"]', cid, "local/app:1")
        d.docker("rm", cid)
        host = registry.hostport
        for src, dst in (
            (base, f"{host}/library/debian:bookworm"),
            ("local/app:1", f"{host}/library/app:1"),
        ):
            d.docker("tag", src, dst)
            d.docker("push", dst)
        ids = [
            d.docker("image", "inspect", "-f", "{{.Id}}", ref).stdout.strip()
            for ref in (base, "local/app:1")
        ]
        yield EngineImages(registry, ids[0], ids[1])
    finally:
        d.stop(remove_workdir=True)


@pytest.fixture
def loader(tmp_path: Path) -> Iterator[Dockerd]:
    """An empty private daemon (Debian 12's Docker 20.10) to `docker load` into."""
    if os.geteuid() != 0:
        pytest.skip("needs root for a docker daemon (CI runs as root)")
    from tests.support.dockerd import start_dockerd

    d = start_dockerd(tmp_path / "loader")
    try:
        yield d
    finally:
        d.stop(remove_workdir=True)


@pytest.fixture
def upstream_proxy(registry: LocalRegistry) -> Iterator[RegistryServer]:
    """The test server in front of the real registry: faults and token auth on top."""
    with RegistryServer(upstream=registry.url) as server:
        yield server


@pytest.fixture
def token_proxy(registry: LocalRegistry) -> Iterator[RegistryServer]:
    """A token-auth front (WWW-Authenticate: Bearer, /token) over the real registry."""
    with RegistryServer(upstream=registry.url, token_auth=True) as server:
        yield server
