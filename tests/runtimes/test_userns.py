"""Nested Docker where root is not root outside, and podman's recipe (issue 17).

- ``lxc-userns``: a root-run unprivileged LXC container with ``dind --recipe lxc``'s
  keys (``lxc.idmap``, nesting as Proxmox VE sets it up): LXC delegates the container's
  cgroup to its root, so nested Docker works but for what a user namespace cannot have.
- ``podman-userns`` (``--uidmap``, the capabilities of ``--recipe podman``) and
  ``podman-userns-privileged`` (``--uidmap --privileged``): podman does not delegate
  cgroup v1 hierarchies to a user namespace, so every nested run fails; ``--check`` must
  say exactly that.
- ``podman-recipe``: ``dind --recipe podman``'s options, as root, no user namespace.

Each container's PID 1 first runs ``dind --check`` (what a user runs before), then
``dind --with-dockerd`` runs tests.support.nested.PROBE beside a nested dockerd. The
check's verdict and ``nested`` answers must be what the probe then saw.
"""

from __future__ import annotations

import json
import shlex
import time
from dataclasses import dataclass
from typing import Any

import pytest

from tests.runtimes.conftest import FIGURES, Setup
from tests.support.nested import NESTED_BASE_TAR, PROBE, Nested
from tests.support.runtimes import Bind, Spec

USERNS = 100000
ABILITIES = ("run", "build", "ports", "limits", "privileged")
LOOPBACK_UP = (
    "import socket, fcntl, struct; "
    "fcntl.ioctl(socket.socket(), 0x8914, struct.pack('16sH14s', b'lo', 0x49, b''))"
)
"""SIOCSIFFLAGS lo up|running: LXC's 'empty' network leaves lo down (the test's -p needs it)."""
PID1 = f"""
python3 -c {shlex.quote(LOOPBACK_UP)} || echo "@@loopback=down"
dind --check --log-format json > /tmp/check.json
echo "@@check_rc=$?"
python3 -c 'import json; print("@@check=" + json.dumps(json.load(open("/tmp/check.json"))))'
exec dind --with-dockerd --timeout 90 -- sh /probe.sh
"""


def podman_recipe(profile: str) -> list[str]:
    """``dind --recipe podman``'s options line, the profile file in place of its name."""
    from dind.recipe import render

    (line,) = [x for x in render("podman").splitlines() if not x.startswith("#")]
    return [
        f"seccomp={profile}" if w.endswith("=dind-seccomp.json") else w for w in shlex.split(line)
    ]


@dataclass
class Run:
    config: str
    nested: Nested
    check: dict[str, Any]
    check_rc: str
    output: str

    @property
    def answers(self) -> dict[str, bool | None]:
        nested = self.check["privilege"]["nested"]
        return {name: nested[name]["can"] for name in ABILITIES}


_RUNS: dict[str, Run] = {}


def measure(setup: Setup, config: str) -> Run:
    if config in _RUNS:
        return _RUNS[config]
    runtime = config.split("-", 1)[0]
    if runtime in setup.unusable:
        pytest.fail(f"{runtime} cannot run here: {setup.unusable[runtime]}", pytrace=False)
    profile = setup.runtimes.workdir / "dind-seccomp.json"
    probe = setup.runtimes.workdir / "probe.sh"
    if not profile.exists():
        from dind.seccomp import render

        profile.write_text(render())
        probe.write_text(PROBE)
    spec = Spec(
        argv=["sh", "-c", PID1],
        binds=[Bind(setup.base_tar, NESTED_BASE_TAR), Bind(probe, "/probe.sh")],
        timeout=300,
        userns=USERNS if "userns" in config else None,
        privileged=config.endswith("-privileged"),
        options=podman_recipe(str(profile)) if config in ("podman-recipe", "podman-userns") else (),
    )
    started = time.monotonic()
    result = setup.runtimes.run(runtime, spec)
    nested = Nested.parse(result.stdout)
    values = dict(
        line.split("=", 1) for line in result.stdout.splitlines() if line.startswith("@@check")
    )
    check = json.loads(values.get("@@check", "{}") or "{}")
    run = Run(config, nested, check, values.get("@@check_rc", ""), result.output)
    _RUNS[config] = run
    assert result.leftovers == [], result.leftovers
    did = nested.answers()
    blockers = [
        f"{f['area']}/{f['name']}" for f in check.get("findings", []) if f["level"] == "blocker"
    ]
    verdict = "ok" if check.get("ok") else "blocked: " + ", ".join(blockers)
    FIGURES[f"privilege: {config}"] = (
        " ".join(f"{k}={'yes' if did[k] else 'no'}" for k in ABILITIES)
        + f"; --check {check.get('privilege', {}).get('level')}, {verdict}"
        + f" ({time.monotonic() - started:.0f} s)"
    )
    return run


CONFIGS = ("lxc-userns", "podman-userns", "podman-userns-privileged", "podman-recipe")


@pytest.mark.parametrize("config", CONFIGS)
def test_check_verdict_and_answers_match_what_nested_docker_did(
    runtime_env: Setup, config: str
) -> None:
    run = measure(runtime_env, config)
    assert run.check, f"no --check report:\n{run.output[-3000:]}"
    assert run.check_rc == ("0" if run.check["ok"] else "1")
    assert run.check["ok"] == run.nested.run, run.output[-3000:]
    did = run.nested.answers()
    said = {k: v for k, v in run.answers.items() if v is not None}
    assert said == {k: did[k] for k in said}, run.check["privilege"]["nested"]


def test_unprivileged_lxc_runs_nested_docker_at_the_user_namespace_level(
    runtime_env: Setup,
) -> None:
    run = measure(runtime_env, "lxc-userns")
    nested = run.nested
    assert nested.dockerd, run.output[-3000:]
    assert (nested.run, nested.build, nested.ports, nested.limits) == (True,) * 4, nested.output[
        -3000:
    ]
    privilege = run.check["privilege"]
    assert (privilege["level"], privilege["root_outside"]) == ("user-namespace", USERNS)
    # securityfs cannot be mounted in a user namespace: planned skipped, not attempted.
    securityfs = next(r for r in run.check["plan"] if r["step"] == "securityfs")
    assert securityfs["outcome"] == "skipped"
    assert "dind: error" not in run.output


@pytest.mark.parametrize("config", ["podman-userns", "podman-userns-privileged"])
def test_podman_with_a_user_namespace_fails_where_check_said_naming_why(
    runtime_env: Setup, config: str
) -> None:
    """podman leaves a user-namespaced container's v1 cgroups to root outside it."""
    run = measure(runtime_env, config)
    assert run.nested.dockerd, run.output[-3000:]
    assert not run.nested.run
    assert "permission denied" in run.nested.why("run")
    blockers = {f["name"]: f for f in run.check["findings"] if f["level"] == "blocker"}
    assert "cgroup_delegation" in blockers, blockers
    assert "cgroup-manager=systemd" in blockers["cgroup_delegation"]["fix"]
    assert run.check["privilege"]["level"] == "user-namespace"


def test_podman_recipe_runs_nested_docker_without_privileged(runtime_env: Setup) -> None:
    run = measure(runtime_env, "podman-recipe")
    nested = run.nested
    assert (nested.run, nested.build, nested.ports, nested.limits) == (True,) * 4, nested.output[
        -3000:
    ]
    assert not nested.privileged
    assert run.check["ok"] and run.check["privilege"]["level"] == "capabilities"
