"""Shared test helpers: fixture paths, root-only marking, and namespace sandboxes.

Tests that mount run dind inside ``unshare --mount --cgroup --propagation private``
so nothing reaches the machine's own mount namespace.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from dind.steps import KERNEL_STEPS
from tests.support.machine import MachineGuard

FIXTURES = Path(__file__).parent / "fixtures"
DIND = str(Path(sys.executable).with_name("dind"))
ALL_STEPS = ",".join(KERNEL_STEPS)
IS_ROOT = os.geteuid() == 0

root_only = pytest.mark.skipif(not IS_ROOT, reason="needs root (CI runs as root)")


def pytest_configure(config: pytest.Config) -> None:
    """Every run under tests/ fails if it leaves the machine changed (issue 12).

    Not a test item, so no -k, -m or path selection can leave it out; see
    tests/support/machine.py for what is compared and what is volatile.
    """
    if not config.pluginmanager.has_plugin("dind-machine-guard"):
        config.pluginmanager.register(MachineGuard(), "dind-machine-guard")


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


UNIFIED = Path("/sys/fs/cgroup/unified")


@contextlib.contextmanager
def hugetlb_group() -> Iterator[Path]:
    """A child of the host's unified hierarchy with hugetlb available, removed afterwards.

    Enables hugetlb in the unified root's subtree_control if needed (and disables it
    again, unless something else took to using it meanwhile).
    """
    if not (UNIFIED / "cgroup.controllers").exists():
        pytest.skip("no cgroup2 hierarchy at /sys/fs/cgroup/unified on this machine")
    if "hugetlb" not in (UNIFIED / "cgroup.controllers").read_text().split():
        pytest.skip("hugetlb is not on the unified hierarchy here")
    enabled_here = "hugetlb" not in (UNIFIED / "cgroup.subtree_control").read_text().split()
    if enabled_here:
        (UNIFIED / "cgroup.subtree_control").write_text("+hugetlb")
    group = UNIFIED / f"dind-test-{os.getpid()}-{os.urandom(2).hex()}"
    group.mkdir()
    try:
        yield group
    finally:
        for child in sorted(group.glob("**/"), key=lambda p: len(p.parts), reverse=True):
            if child != group and child.is_dir():
                with contextlib.suppress(OSError):
                    child.rmdir()
        with contextlib.suppress(OSError):
            group.rmdir()
        if enabled_here:
            with contextlib.suppress(OSError):  # EBUSY if someone else started using it
                (UNIFIED / "cgroup.subtree_control").write_text("-hugetlb")


@pytest.fixture(scope="session")
def standalone_dind() -> Iterator[str]:
    """dind runnable after dind's own tmpfs covers /tmp, wherever the checkout is.

    A run nested in another (``dind -- dind -- CMD``) starts after the first one
    mounted /tmp; a checkout or venv under /tmp is then out of sight. This copy of
    dind and its pure-Python dependencies lives under /run, started by the real
    interpreter with -S (no site: nothing read from the venv).
    """
    import click
    import pythonjsonlogger

    base = Path(tempfile.mkdtemp(prefix="dind-standalone-", dir="/run" if IS_ROOT else None))
    ignore = shutil.ignore_patterns("__pycache__")
    for module in (Path(__file__).parent.parent / "dind", click, pythonjsonlogger):
        source = module if isinstance(module, Path) else Path(module.__file__ or "").parent
        shutil.copytree(source, base / "lib" / source.name, ignore=ignore)
    launcher = base / "dind"
    launcher.write_text(
        f"#!{os.path.realpath(sys.executable)} -S\n"
        f"import sys\nsys.path.insert(0, {str(base / 'lib')!r})\n"
        "from dind.entry import main\nsys.argv[0] = 'dind'\nmain()\n"
    )
    launcher.chmod(0o755)
    yield str(launcher)
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def capsh() -> str:
    """capsh, for runs without CAP_SYS_ADMIN; installed (libcap2-bin) when missing."""
    if shutil.which("capsh") is None:
        from tests.support.dockerd import ensure_engine

        ensure_engine()
    return "capsh"
