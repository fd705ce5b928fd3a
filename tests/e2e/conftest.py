"""End-to-end fixtures: a private Docker engine, a registry-free base image, the
dev image built by scripts/build-image, and helpers to run containers in it.

The image is built from the Dockerfile's defaults (no ``--base``): its ``FROM`` names
``debian:<DEBIAN_SUITE>-slim``, which the test daemon holds as a debootstrap image of
that suite (no registry is reachable). The same image, saved, is the nested
containers' base (``/images/base.tar``).

Everything is real: the engine is installed if missing (tests.support.dockerd),
the image is built from the top-level Dockerfile, and nested dockerds run inside
``--privileged`` containers. The tests need root and skip only without it (CI is
root, so they run there). Select or skip them with ``-m e2e`` / ``-m "not e2e"``.

Environment:
  DIND_E2E_CACHE   where the debootstrap rootfs tarball is kept between runs
                   (default /var/cache/dind-e2e; an empty one works, ~40 s slower)
  DIND_E2E_KEEP    set to 1 to keep the daemon's workdir (images, logs) for a look
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.dockerd import (
    Dockerd,
    build_dev_image,
    debian_slim,
    dockerfile_suite,
    ensure_engine,
    start_dockerd,
)

REPO = Path(__file__).resolve().parents[2]
DATA = Path(__file__).resolve().parent / "data"
CACHE = Path(os.environ.get("DIND_E2E_CACHE", "/var/cache/dind-e2e"))
IMAGE_TAG = "dind:e2e"
SUITE = dockerfile_suite(REPO)  # the image's default Debian release (ARG DEBIAN_SUITE)
NESTED_BASE_TAR = "/images/base.tar"  # where outer containers see the saved base image
IS_ROOT = os.geteuid() == 0

# Figures reported at the end of the run (build time, image size, disk use...).
FIGURES: dict[str, str] = {}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "e2e: end-to-end test with a real Docker engine (root; minutes)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests that use the engine (the ``e2e`` fixture) are marked e2e and need root."""
    for item in items:
        if "e2e" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.e2e)
            if not IS_ROOT:
                item.add_marker(pytest.mark.skip(reason="needs root (CI runs as root)"))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if FIGURES:
        terminalreporter.section("dind e2e figures")
        for key, value in FIGURES.items():
            terminalreporter.write_line(f"{key}: {value}")


def du(path: Path) -> int:
    """Bytes used under ``path`` (du -sb), 0 if it is gone."""
    if not path.exists():
        return 0
    out = subprocess.run(
        ["du", "-sb", str(path)], capture_output=True, text=True, timeout=300, check=False
    )
    return int(out.stdout.split()[0]) if out.returncode == 0 else 0


def mb(n: int) -> str:
    return f"{n / 1e6:.0f} MB"


@dataclass
class Env:
    """What the e2e tests share: the daemon, the dev image and the saved base image."""

    daemon: Dockerd
    image: str  # built from the Dockerfile's defaults
    base: str  # local/debian:SUITE: the image's base, and the nested containers'
    base_tar: Path
    workdir: Path
    build_log: str

    def scratch(self, name: str) -> Path:
        """A fresh directory the daemon can bind-mount (not under /run or /tmp tmpfs)."""
        path = self.workdir / "scratch" / f"{name}-{uuid.uuid4().hex[:8]}"
        path.mkdir(parents=True)
        return path


@pytest.fixture(scope="package")
def e2e() -> Iterator[Env]:
    """Install the engine if needed, start a private dockerd, build the images.

    Package-scoped: the daemon is stopped as soon as the last e2e test is done, so
    it does not linger while the rest of the suite runs.
    """
    started = time.monotonic()
    ensure_engine()
    FIGURES["engine install/check"] = f"{time.monotonic() - started:.1f} s"
    workdir = Path(tempfile.mkdtemp(prefix="dind-e2e-", dir="/var/tmp"))
    daemon = start_dockerd(workdir / "dockerd")
    try:
        t = time.monotonic()
        base = debian_slim(daemon, CACHE, SUITE)
        FIGURES[f"base image {SUITE} (debootstrap or cache + import)"] = (
            f"{time.monotonic() - t:.1f} s"
        )
        t = time.monotonic()
        build = build_dev_image(daemon, REPO, tag=IMAGE_TAG)
        if build.returncode != 0:
            pytest.fail(f"scripts/build-image failed:\n{build.stdout[-6000:]}\n{build.stderr}")
        FIGURES[f"image build on {SUITE} (scripts/build-image)"] = f"{time.monotonic() - t:.1f} s"
        size = int(daemon.docker("image", "inspect", "-f", "{{.Size}}", IMAGE_TAG).stdout)
        FIGURES[f"image size on {SUITE}"] = mb(size)
        base_tar = workdir / "base.tar"
        daemon.docker("save", "-o", base_tar, base)
        yield Env(daemon, IMAGE_TAG, base, base_tar, workdir, build.stdout + build.stderr)
    finally:
        FIGURES["disk: daemon workdir at end"] = mb(du(workdir))
        FIGURES["disk: cache dir"] = f"{mb(du(CACHE))} ({CACHE})"
        keep = os.environ.get("DIND_E2E_KEEP") == "1"
        daemon.stop()
        if keep:
            FIGURES["kept workdir"] = str(workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
        FIGURES["e2e session wall time"] = f"{time.monotonic() - started:.1f} s"


@dataclass
class Outer:
    """A detached dev-image container on the test daemon (``docker run -d --privileged``,
    unless started with ``privileged=False``).

    The saved base image is mounted read-only at /images/base.tar and
    /var/lib/docker is a volume, as a nested dockerd needs.
    """

    env: Env
    name: str

    @classmethod
    def start(
        cls,
        env: Env,
        *options: str,
        command: tuple[str, ...] = (),
        image: str = "",
        privileged: bool = True,
    ) -> Outer:
        """``privileged=False``: only ``options`` grant anything (tests/e2e/test_privilege.py)."""
        name = f"dind-e2e-{uuid.uuid4().hex[:10]}"
        env.daemon.docker(
            "run",
            "-d",
            *(["--privileged"] if privileged else []),
            "--name",
            name,
            "-v",
            "/var/lib/docker",
            "-v",
            f"{env.base_tar}:{NESTED_BASE_TAR}:ro",
            *options,
            image or env.image,
            *command,
        )
        return cls(env, name)

    def remove(self) -> None:
        """Stop gracefully (the nested dockerd cleans up its containers), then remove."""
        self.env.daemon.docker("stop", "-t", "20", self.name, check=False, timeout=60)
        self.env.daemon.docker("rm", "-f", "-v", self.name, check=False, timeout=60)

    def exec(
        self, *args: str, check: bool = True, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        return self.env.daemon.docker("exec", self.name, *args, check=check, timeout=timeout)

    def sh(self, script: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.exec("sh", "-euc", script, check=check)

    def wait_nested_docker(self, timeout: float = 90) -> None:
        """Poll the nested daemon until it answers; fail with its logs if it does not."""
        deadline = time.monotonic() + timeout
        while self.exec("docker", "version", check=False, timeout=30).returncode != 0:
            state = self.env.daemon.docker(
                "inspect", "-f", "{{.State.Running}}", self.name
            ).stdout.strip()
            if state != "true" or time.monotonic() > deadline:
                logs = self.env.daemon.docker("logs", "--tail", "40", self.name, check=False)
                pytest.fail(f"nested dockerd not up (running={state}):\n{logs.stderr}")
            time.sleep(0.5)

    def load_base(self) -> str:
        """``docker load`` the saved base image into the nested daemon; returns its tag."""
        self.exec("docker", "load", "-q", "-i", NESTED_BASE_TAR)
        return self.env.base


@pytest.fixture
def outer(e2e: Env) -> Iterator[Callable[..., Outer]]:
    """Start dev-image containers with ``outer(*run_options, command=(...))``; removed after."""
    started: list[Outer] = []

    def start(*options: str, command: tuple[str, ...] = ()) -> Outer:
        started.append(Outer.start(e2e, *options, command=command))
        return started[-1]

    yield start
    for container in started:
        container.remove()
