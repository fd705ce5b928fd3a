"""Shared test helpers: fixture paths, root-only marking, and namespace sandboxes.

Tests that mount run dind inside ``unshare --mount --cgroup --propagation private``
so nothing reaches the machine's own mount namespace.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
DIND = str(Path(sys.executable).with_name("dind"))
ALL_STEPS = "securityfs,tmp,cgroup-mounts,cgroup-nesting,rshared"
IS_ROOT = os.geteuid() == 0

root_only = pytest.mark.skipif(not IS_ROOT, reason="needs root (CI runs as root)")


def fixture_text(name: str, file: str) -> str:
    return (FIXTURES / name / file).read_text(encoding="utf-8", errors="surrogateescape")


def clean_env(**extra: str) -> dict[str, str]:
    """The test process's environment without DIND_* and ``container``, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIND_")}
    env.pop("container", None)
    env.update(extra)
    return env


def run_dind(
    *args: str,
    env: dict[str, str] | None = None,
    sandbox: bool = False,
    timeout: float = 60,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the installed ``dind`` script; in a private mount+cgroup namespace if ``sandbox``."""
    full_env = clean_env(**(env or {}))
    argv = [DIND, *args]
    if sandbox:
        argv = ["unshare", "--mount", "--cgroup", "--propagation", "private", *argv]
    return subprocess.run(
        argv,
        env=full_env,
        capture_output=True,
        text=True,
        errors="surrogateescape",
        timeout=timeout,
        input=input,
        check=False,
    )


@pytest.fixture
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A directory on the real filesystem (not /tmp, which dind covers with a tmpfs)."""
    base = Path("/run") if IS_ROOT else Path(tmp_path_factory.mktemp("dind"))
    path = base / f"dind-test-{os.getpid()}-{os.urandom(3).hex()}"
    path.mkdir(parents=True)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(autouse=True)
def _restore_environ() -> Iterator[None]:
    """Actions export variables (container=docker); keep that out of other tests."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)
