"""Confinement under ``ctr run --privileged`` (issue 10): the outer limit holds for nested ones.

ctr starts the container in the host's cgroup namespace and mounts no cgroup
filesystem: the hierarchies dind mounts would show the host's whole tree, and a
nested dockerd would put its containers at the host's ``/docker``. Here the ctr
container gets a 300 MB memory limit; dind runs as its PID 1 with ``--with-dockerd``
and a nested container, given no limit of its own, allocates 400 MB. Confined, it
lands below the ctr container's group and the outer limit OOM-kills the allocation;
with ``--skip cgroup-confine`` (the control) it lands at the host's ``/docker`` and
the allocation succeeds. The harness removes the groups a run made on the host.
"""

from __future__ import annotations

import re

import pytest

from tests.runtimes.conftest import Setup
from tests.support.runtimes import Bind, Result, Spec

OUTER_MEMORY = 300 * 1024**2
SCRIPT = r"""
img=$(docker load -q -i /images/base.tar | sed -n 's/^Loaded image: //p' | head -n 1)
docker run --rm "$img" sh -c '
    sed "s/^/@@nested_cgroup=/" /proc/self/cgroup
    dd if=/dev/zero of=/dev/null bs=400M count=1 2>/dev/null
    echo "@@alloc_rc=$?"'
echo "@@run_rc=$?"
"""
MARKER = re.compile(r"^@@(\w+)=(.*)$", re.M)


def run(setup: Setup, *dind_options: str) -> tuple[Result, dict[str, list[str]]]:
    if "ctr" in setup.unusable:
        pytest.fail(f"ctr cannot run here: {setup.unusable['ctr']}")
    spec = Spec(
        argv=["dind", "-v", *dind_options, "--with-dockerd", "--", "sh", "-c", SCRIPT],
        binds=[Bind(setup.base_tar, "/images/base.tar")],
        memory_limit=OUTER_MEMORY,
        timeout=240,
    )
    result = setup.runtimes.run("ctr", spec)
    values: dict[str, list[str]] = {}
    for key, value in MARKER.findall(result.stdout):
        values.setdefault(key, []).append(value)
    assert values.get("run_rc"), result.output[-3000:]
    return result, values


def memory_path(values: dict[str, list[str]]) -> str:
    for line in values.get("nested_cgroup", []):
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            return path
    raise AssertionError(f"no memory line in {values.get('nested_cgroup')}")


def landed(result: Result, values: dict[str, list[str]]) -> str:
    """Where the host saw the nested container's memory group (named by its ID)."""
    own = memory_path(values).rstrip("/").rsplit("/", 1)[-1]
    (path,) = [p for p in result.new_cgroups if p.endswith("/" + own)]
    return path


def test_ctr_nested_containers_stay_inside_and_the_outer_limit_kills_them(
    runtime_env: Setup,
) -> None:
    result, values = run(runtime_env)
    assert result.returncode == 0, result.output[-3000:]
    assert "unshare --cgroup" in result.output  # -v: the step said what it did
    path = landed(result, values)
    assert path.startswith(result.group + "/"), (path, result.group)
    assert memory_path(values).startswith("/docker/")  # as the container sees it: its own root
    assert values["alloc_rc"] == ["137"], result.output[-3000:]  # OOM-killed by the 300 MB
    assert result.leftovers == []


def test_ctr_without_the_step_nested_containers_escape_to_the_hosts_docker(
    runtime_env: Setup,
) -> None:
    """The control: the same run with --skip cgroup-confine."""
    result, values = run(runtime_env, "--skip", "cgroup-confine")
    assert result.returncode == 0, result.output[-3000:]
    path = landed(result, values)
    assert path.startswith("/docker/") and not path.startswith(result.group), path
    assert values["alloc_rc"] == ["0"]  # no limit above it: the 400 MB were had
    assert result.leftovers == []
