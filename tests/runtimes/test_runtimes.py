"""dind as PID 1 of a privileged container under ctr, podman, LXC and systemd-nspawn.

Each runtime runs the dev image once (``dind -- sh -c SCRIPT``, the image's
ENTRYPOINT and what a user would do): the script starts a nested dockerd, loads
the base image, runs a container, a 120 MB allocation under ``--memory 64m``
(must be OOM-killed: 137), a fork loop under ``--pids-limit 50`` (must stop), a
container that shows its cgroups, and ``dind --check``. The tests assert the
outcome dind is for: all of it works in every runtime, nested containers land
inside the outer container's cgroup (so its limits hold), ``container`` is the
runtime's, and ``dind --check`` tells the truth about it.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.runtimes.conftest import TABLE, Setup
from tests.support.runtimes import CONTAINER_ID, RUNTIMES, Bind, Result, Spec

NESTED_BASE_TAR = "/images/base.tar"
OUTER_MEMORY = 2 * 1024**3
# What `container` must be for the command: the runtime's own, else dind's "docker".
CONTAINER = {"ctr": "docker", "podman": "podman", "lxc": "lxc", "nspawn": "systemd-nspawn"}
# nspawn's seccomp filter denies the keyring calls runc makes for every container
# ("unable to join session keyring"); only nspawn's own option lifts that. The
# measured command line without it is the "nspawn-no-keyring" configuration.
KEYRING_OPTION = "--system-call-filter=@keyring"
CONFIGS: dict[str, tuple[str, tuple[str, ...]]] = {
    "ctr": ("ctr", ()),
    "podman": ("podman", ()),
    "lxc": ("lxc", ()),
    "nspawn": ("nspawn", (KEYRING_OPTION,)),
    "nspawn-no-keyring": ("nspawn", ()),
}

# Run by dind as PID 1's command; reports on stdout as @@key=value lines.
SCRIPT = r"""
echo "@@pid1=$(cat /proc/1/comm)"
echo "@@container=${container-}"
dockerd >/tmp/nested-dockerd.log 2>&1 &
tries=0
until docker version >/dev/null 2>&1; do
    tries=$((tries + 1))
    if [ "$tries" -gt 120 ]; then
        echo "@@nested_dockerd=no"
        tail -n 15 /tmp/nested-dockerd.log | sed 's/^/@@dockerd_log=/'
        exit 0
    fi
    sleep 0.5
done
echo "@@nested_dockerd=yes"
img=$(docker load -q -i /images/base.tar | sed -n 's/^Loaded image: //p' | head -n 1)
echo "@@image=$img"
docker run --rm "$img" true
echo "@@run_rc=$?"
docker run --name oom --memory 64m "$img" dd if=/dev/zero of=/dev/null bs=120M count=1
echo "@@oom_rc=$?"
echo "@@oom_killed=$(docker inspect -f '{{.State.OOMKilled}}' oom)"
docker rm oom >/dev/null
docker run --rm --pids-limit 50 "$img" sh -c \
    'n=0; while [ $n -lt 200 ]; do sleep 60 & n=$((n + 1)); done; echo forked-all-$n'
echo "@@pids_rc=$?"
docker run --rm "$img" sh -c \
    'sed "s/^/@@nested_cgroup=/" /proc/self/cgroup; sed "s/^/@@nested_host=/" /etc/hostname
     sleep 1'
dind --check --log-format json >/tmp/check.json
echo "@@check_rc=$?"
python3 -c 'import json; print("@@check=" + json.dumps(json.load(open("/tmp/check.json"))))'
grep -E 'level=(error|fatal)' /tmp/nested-dockerd.log | tail -n 5 | sed 's/^/@@dockerd_log=/'
"""
MARKER = re.compile(r"^@@(\w+)=(.*)$", re.M)
FORKED_ALL = re.compile(r"^forked-all-\d+$", re.M)  # the fork loop was not stopped


@dataclass
class Measurement:
    """One runtime's run, read back from the script's report."""

    runtime: str
    result: Result | None = None
    failure: str = ""  # why the runtime could not run the container at all
    values: dict[str, list[str]] = field(default_factory=dict)

    def get(self, key: str) -> str:
        return (self.values.get(key) or [""])[0]

    @property
    def output(self) -> str:
        return self.result.output if self.result else self.failure

    @property
    def check(self) -> dict[str, Any]:
        try:
            report = json.loads(self.get("check") or "null")
        except ValueError:
            return {}
        return report if isinstance(report, dict) else {}

    @property
    def errors(self) -> list[str]:
        """The nested engine's error lines (docker client and daemon log)."""
        lines = [
            line.removeprefix("@@dockerd_log=").strip()
            for line in self.output.splitlines()
            if line.startswith(("docker: Error", "Error response")) or "level=error" in line
        ]
        return list(dict.fromkeys(lines))

    @property
    def docker_works(self) -> bool:
        return self.get("nested_dockerd") == "yes" and self.get("run_rc") == "0"

    @property
    def limits_hold(self) -> bool:
        oom = self.get("oom_rc") == "137" and self.get("oom_killed") == "true"
        stopped = self.get("pids_rc") not in ("", "0") and not FORKED_ALL.search(self.output)
        return oom and stopped

    @property
    def nested_container(self) -> str:
        """The ID (or its first 12 digits, the hostname) of the container that showed
        its cgroups: its memory line names it unless it has a cgroup namespace of its own."""
        for line in self.values.get("nested_cgroup", []):
            _, controllers, path = line.split(":", 2)
            name = path.rstrip("/").rsplit("/", 1)[-1]
            if "memory" in controllers.split(",") and CONTAINER_ID.fullmatch(name):
                return name
        return self.get("nested_host")

    @property
    def landed(self) -> str:
        """Where the host saw that container's memory cgroup."""
        wanted = self.nested_container
        if not wanted or self.result is None:
            return ""
        return next(
            (p for p in self.result.new_cgroups if p.rsplit("/", 1)[-1].startswith(wanted)), ""
        )

    @property
    def inside(self) -> bool:
        return bool(self.result and self.landed.startswith(self.result.group + "/"))


_MEASURED: dict[str, Measurement] = {}


def measure(runtime_env: Setup, config: str) -> Measurement:
    """Run the script in configuration ``config`` once per session; record the table row."""
    if config in _MEASURED:
        return _MEASURED[config]
    runtime, options = CONFIGS[config]
    m = Measurement(runtime)
    started = time.monotonic()
    if runtime in runtime_env.unusable:
        m.failure = f"{runtime} cannot run here: {runtime_env.unusable[runtime]}"
    else:
        spec = Spec(
            argv=["dind", "--", "sh", "-c", SCRIPT],
            binds=[Bind(runtime_env.base_tar, NESTED_BASE_TAR)],
            memory_limit=OUTER_MEMORY,
            timeout=240,
            options=options,
        )
        try:
            m.result = runtime_env.runtimes.run(runtime, spec)
        except Exception as exc:  # a runtime that cannot even start: its tests fail with this
            m.failure = f"{runtime}: {type(exc).__name__}: {exc}"
    if m.result is not None:
        for key, value in MARKER.findall(m.result.stdout):
            m.values.setdefault(key, []).append(value)
        if "nested_dockerd" not in m.values:
            m.failure = (
                f"{runtime}: the container did not run the script (exit {m.result.returncode}):\n"
                + m.result.output[-3000:]
            )
    _MEASURED[config] = m
    TABLE[config] = _row(m, time.monotonic() - started)
    return m


def _row(m: Measurement, seconds: float) -> dict[str, str]:
    def why(ok: bool, text: str) -> str:
        if ok or not m.errors:
            return text
        client = [e for e in m.errors if e.startswith("docker: Error")]
        return f"{text}: {(client or m.errors)[0][:300]}"

    if m.failure:
        cell = m.failure.splitlines()[0][:300]
        return {column: cell for column in ("nested dockerd", "run")} | {
            "wall time": f"{seconds:.1f} s"
        }
    check = m.check
    blockers = [
        f"{f['area']}/{f['name']}" for f in check.get("findings", []) if f["level"] == "blocker"
    ]
    verdict = "ok (exit 0)" if check.get("ok") else f"blocked (exit {m.get('check_rc')})"
    group = m.result.group if m.result else ""
    return {
        "nested dockerd": why(m.get("nested_dockerd") == "yes", m.get("nested_dockerd") or "?"),
        "run": why(m.docker_works, "yes" if m.docker_works else f"no (exit {m.get('run_rc')})"),
        "limits": why(
            m.limits_hold,
            f"{'yes' if m.limits_hold else 'no'} (64m alloc: exit {m.get('oom_rc')}, "
            f"OOMKilled={m.get('oom_killed')}; pids 50: exit {m.get('pids_rc')})",
        ),
        "nested cgroups landed": (
            f"{m.landed} ({'inside' if m.inside else 'OUTSIDE'} {group})"
            if m.landed
            else "no nested container ran"
        ),
        "$container": m.get("container") or "(unset)",
        "--check": verdict + (f", blockers: {', '.join(blockers)}" if blockers else ""),
        "wall time": f"{seconds:.1f} s",
    }


@pytest.fixture(params=RUNTIMES)
def measured(request: pytest.FixtureRequest, runtime_env: Setup) -> Measurement:
    """The runtime's measurement; a runtime that could not run fails the test with why."""
    m = measure(runtime_env, request.param)
    if m.failure:
        pytest.fail(m.failure, pytrace=False)
    return m


def test_dind_execs_the_command_as_pid1_and_leaves_nothing_behind(measured: Measurement) -> None:
    assert measured.result is not None
    assert measured.get("pid1") == "sh", measured.output[-2000:]  # dind exec'd it
    assert measured.result.returncode is not None, "timed out"
    assert measured.result.leftovers == []


def test_nested_dockerd_starts_and_runs_a_container(measured: Measurement) -> None:
    assert measured.get("nested_dockerd") == "yes", "\n".join(measured.values["dockerd_log"])
    assert measured.get("run_rc") == "0", "\n".join(measured.errors)


def test_nested_memory_and_pids_limits_are_enforced(measured: Measurement) -> None:
    assert (measured.get("oom_rc"), measured.get("oom_killed")) == ("137", "true"), "\n".join(
        measured.errors
    )
    assert measured.get("pids_rc") not in ("", "0"), measured.errors
    assert not FORKED_ALL.search(measured.output)


def test_nested_containers_land_inside_the_outer_containers_cgroup(
    measured: Measurement,
) -> None:
    """Else the outer container's limits (here a 2 GiB memory limit) do not cover them."""
    assert measured.result is not None
    assert measured.nested_container, "no nested container ran:\n" + "\n".join(measured.errors)
    assert measured.landed, f"{measured.nested_container} not seen under the memory hierarchy"
    assert measured.inside, f"{measured.landed} is outside {measured.result.group}"


def test_container_variable_is_the_runtimes_own_or_dinds(measured: Measurement) -> None:
    assert measured.get("container") == CONTAINER[measured.runtime]


def test_check_verdict_matches_what_nested_docker_did(measured: Measurement) -> None:
    """``dind --check`` in the same container says ok exactly when nested Docker works."""
    check = measured.check
    assert check, f"no --check report: exit {measured.get('check_rc')}"
    assert (measured.get("check_rc") == "0") == check["ok"]
    works = measured.docker_works and measured.limits_hold
    findings = [f"{f['level']}: {f['area']}/{f['name']}: {f['value']}" for f in check["findings"]]
    assert check["ok"] == works, (
        f"--check says ok={check['ok']} but nested Docker "
        f"{'works' if works else 'fails: ' + '; '.join(measured.errors[-2:])}\n"
        + "\n".join(f for f in findings if not f.startswith("ok"))
    )


def test_nspawn_without_the_keyring_calls_check_names_the_blocker_and_the_fix(
    runtime_env: Setup,
) -> None:
    """nspawn's measured command line as is: its seccomp filter refuses keyctl, so no
    nested container can start; nothing in the container can change that, and
    ``dind --check`` must say so, with nspawn's own option as the fix."""
    m = measure(runtime_env, "nspawn-no-keyring")
    assert not m.failure, m.failure
    assert m.get("nested_dockerd") == "yes"
    assert m.get("run_rc") == "125"
    assert any("unable to join session keyring" in e for e in m.errors), m.errors
    assert m.check.get("ok") is False, m.get("check")
    blockers = [f for f in m.check["findings"] if f["level"] == "blocker"]
    assert [f["name"] for f in blockers] == ["keyring"], blockers
    assert KEYRING_OPTION in blockers[0]["fix"]
