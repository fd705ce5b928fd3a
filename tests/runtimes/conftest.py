"""Fixtures for dind under other runtimes (issue 11): a private dockerd that builds the
dev image as tests/e2e does, and tests.support.runtimes around it.

Needs root (skips only without it; CI is root). Installs containerd, podman, lxc
and systemd-container with apt when missing; a runtime that still cannot run makes
its tests fail with the reason. Select or leave out with ``-m runtimes`` /
``-m "not runtimes"``. The measured table is printed at the end of the run.

Environment: DIND_E2E_CACHE (the debootstrap rootfs cache, as in tests/e2e).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
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
from tests.support.runtimes import Runtimes, ensure_runtimes, runtimes

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("DIND_E2E_CACHE", "/var/cache/dind-e2e"))
IMAGE_TAG = "dind:e2e"
IS_ROOT = os.geteuid() == 0
COLUMNS = ("nested dockerd", "run", "limits", "nested cgroups landed", "$container", "--check")

# The measured table (runtime -> column -> cell) and figures, printed at the end.
TABLE: dict[str, dict[str, str]] = {}
FIGURES: dict[str, str] = {}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "runtimes: dind under ctr, podman, LXC and systemd-nspawn (root; minutes)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if item.path.is_relative_to(here):
            item.add_marker(pytest.mark.runtimes)
            if not IS_ROOT:
                item.add_marker(pytest.mark.skip(reason="needs root (CI runs as root)"))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not TABLE and not FIGURES:
        return
    terminalreporter.section("dind under other runtimes (measured)")
    for runtime, row in TABLE.items():
        terminalreporter.write_line(f"{runtime}:")
        for column in (*COLUMNS, "wall time"):
            terminalreporter.write_line(f"    {column:22} {row.get(column, '?')}")
    for key, value in FIGURES.items():
        terminalreporter.write_line(f"{key}: {value}")


@dataclass
class Setup:
    """What the runtime tests share: the daemon with the image, the runtimes, the base tar."""

    daemon: Dockerd
    runtimes: Runtimes
    base: str  # the nested base image's tag
    base_tar: Path  # `docker save` of it, for nested `docker load`
    unusable: dict[str, str]  # runtime -> why it cannot run here


@pytest.fixture(scope="package")
def runtime_env() -> Iterator[Setup]:
    """Engine and runtimes installed if missing, a private dockerd, the dev image."""
    started = time.monotonic()
    ensure_engine()
    unusable = ensure_runtimes()
    workdir = Path(tempfile.mkdtemp(prefix="dind-runtimes-", dir="/var/tmp"))
    daemon = start_dockerd(workdir / "dockerd")
    try:
        base = debian_slim(daemon, CACHE, dockerfile_suite(REPO))  # the image's default
        t = time.monotonic()
        build = build_dev_image(daemon, REPO, tag=IMAGE_TAG)
        if build.returncode != 0:
            pytest.fail(f"scripts/build-image failed:\n{build.stdout[-6000:]}\n{build.stderr}")
        FIGURES["runtimes: image build"] = f"{time.monotonic() - t:.1f} s"
        base_tar = workdir / "base.tar"
        daemon.docker("save", "-o", base_tar, base)
        with runtimes(workdir / "runtimes", daemon, IMAGE_TAG) as rt:
            yield Setup(daemon, rt, base, base_tar, unusable)
    finally:
        daemon.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        FIGURES["runtimes: session wall time"] = f"{time.monotonic() - started:.1f} s"
