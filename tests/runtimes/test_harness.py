"""tests.support.runtimes itself: a run that hangs is stopped at its timeout, and
nothing of it is left (processes, cgroups, containers, state), in every runtime."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.runtimes.conftest import Setup
from tests.support.runtimes import RUNTIMES, Spec, hierarchies


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_run_that_hangs_is_stopped_at_its_timeout_and_leaves_nothing(
    runtime_env: Setup, runtime: str
) -> None:
    if runtime in runtime_env.unusable:
        pytest.fail(f"{runtime} cannot run here: {runtime_env.unusable[runtime]}", pytrace=False)
    started = time.monotonic()
    spec = Spec(argv=["sh", "-c", "echo started; exec sleep 600"], timeout=8)
    result = runtime_env.runtimes.run(runtime, spec)
    assert result.returncode is None  # timed out, not finished
    assert "started" in result.stdout, result.output
    assert time.monotonic() - started < 90
    assert result.leftovers == []
    assert not [h for h in hierarchies() if (h / result.group.lstrip("/")).exists()]
    assert runtime_env.runtimes.containers(runtime) == []
    assert not list(Path(runtime_env.runtimes.workdir / "runs").iterdir())
