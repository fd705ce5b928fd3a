"""Confinement end to end (issue 10, the Docker parts): nested containers stay inside
the outer container's cgroup, its limits hold for them, and the outer runtime can
still `docker exec` into it.

Where a nested process landed is read from the machine's side: the test runs in the
machine's PID and cgroup namespaces, so /proc/<pid>/cgroup of a nested process (found
by a unique `sleep` argument) gives its full path, compared with the outer
container's PID 1's.

This machine is hybrid: v1 hierarchies carry the controllers, its cgroup2 carries
only ``hugetlb`` (and has no huge pages reserved, so a hugetlb limit can be set and
read but never exercised).
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import FIGURES, NESTED_BASE_TAR, Env, Outer
from tests.e2e.helpers import (
    cgroups_of,
    container_pid,
    json_lines,
    load_base,
    logs,
    marker,
    remove_all,
    run_rm,
    under,
    wait_host_pid,
    wait_ready,
)

# --- the host's v1 view: `docker run --privileged --cgroupns host --memory 300m` -------------


@pytest.fixture(scope="module")
def limited(e2e: Env) -> Iterator[Outer]:
    outer = Outer.start(e2e, "--cgroupns", "host", "--memory", "300m", "--network", "none")
    try:
        wait_ready(outer)
        load_base(outer)
        yield outer
    finally:
        outer.remove()


def v1_paths(paths: dict[str, str]) -> dict[str, str]:
    return {controllers: path for controllers, path in paths.items() if controllers}


def test_v1_nested_containers_land_under_the_outer_containers_group(
    e2e: Env, limited: Outer
) -> None:
    mark = marker()
    cid = limited.exec("docker", "run", "-d", e2e.base, "sleep", mark).stdout.strip()
    try:
        nested = cgroups_of(wait_host_pid("sleep", mark))
        outer = v1_paths(cgroups_of(container_pid(e2e, limited.name)))
        assert len(outer) >= 2, outer
        for controllers, path in outer.items():
            assert nested[controllers] == f"{path}/docker/{cid}", (controllers, nested)
        FIGURES["v1 --cgroupns host: a nested container's memory cgroup"] = nested["memory"]
        # Seen from inside, the nested container's tree starts at the outer container's
        # group: dind made it the root of the nested daemon's cgroup namespace.
        seen = limited.exec("docker", "exec", cid, "cat", "/proc/self/cgroup").stdout
        for line in seen.splitlines():
            _id, controllers, path = line.split(":", 2)
            if controllers:
                assert path == f"/docker/{cid}", line
    finally:
        limited.exec("docker", "rm", "-f", cid, check=False)


OOM_CONTROL = "/sys/fs/cgroup/memory/memory.oom_control"


def test_v1_a_nested_process_over_the_outer_limit_is_oom_killed(limited: Outer) -> None:
    """The nested container has no limit of its own; the outer's 300 MB is what kills
    a nested allocation of 400 MB, while 50 MB is fine and the outer dockerd lives on."""
    tag = load_base(limited)
    limit = limited.exec("cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes").stdout
    assert int(limit) == 300 * 2**20
    own = limited.exec(
        "docker", "run", "--rm", tag, "cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes"
    ).stdout
    assert int(own) > 2**40  # unlimited at its own level
    allocate = 'my $x = "a" x ({} << 20); print "survived\\n";'
    small = limited.exec("docker", "run", "--rm", tag, "perl", "-e", allocate.format(50))
    assert small.stdout == "survived\n"
    # The kernel's count in the nested container's own memory cgroup, read inside it
    # afterwards: v1 counts a kill in the victim's group, whichever limit was hit
    # (Docker's OOMKilled comes from an event that can land after the exit: false
    # once under load).
    report = 'perl -e "$0"; echo "status $?"; sed -n "s/^oom_kill //p" ' + OOM_CONTROL
    big = limited.exec("docker", "run", "--rm", tag, "sh", "-c", report, allocate.format(400))
    assert big.stdout.split() == ["status", "137", "1"], big.stdout + big.stderr
    assert limited.exec("docker", "version", check=False).returncode == 0


def test_v1_docker_exec_still_joins_the_outer_container_after_confinement(
    e2e: Env, limited: Outer
) -> None:
    """dind moved itself and dockerd into a new cgroup namespace; `docker exec` (runc,
    from the outer engine) still works, and its process joins the outer container's
    groups in the engine's namespace."""
    dockerd = limited.exec("cat", "/run/docker.pid").stdout.strip()
    links = limited.exec(
        "readlink", "/proc/self/ns/cgroup", "/proc/1/ns/cgroup", f"/proc/{dockerd}/ns/cgroup"
    ).stdout.split()
    exec_ns, dind_ns, dockerd_ns = links
    assert dind_ns == dockerd_ns != exec_ns
    outer = v1_paths(cgroups_of(container_pid(e2e, limited.name)))
    joined = {}
    for line in limited.exec("cat", "/proc/self/cgroup").stdout.splitlines():
        _id, controllers, path = line.split(":", 2)
        if controllers:
            joined[controllers] = path
    assert joined == outer


def test_v1_without_the_confine_step_nested_containers_see_the_machines_tree(e2e: Env) -> None:
    """The control. On Docker's v1 view runc already bind-mounts each hierarchy from the
    container's own group, so nested containers land inside either way; what the step
    changes there is the namespace: without it a nested container sees (and a nested
    runtime computes from) the machine's full path."""
    outer = Outer.start(
        e2e, "--cgroupns", "host", "--network", "none", "-e", "DIND_SKIP=cgroup-confine"
    )
    try:
        wait_ready(outer)
        tag = load_base(outer)
        seen = outer.exec("docker", "run", "--rm", tag, "cat", "/proc/self/cgroup").stdout
        machine = v1_paths(cgroups_of(container_pid(e2e, outer.name)))
        for line in seen.splitlines():
            _id, controllers, path = line.split(":", 2)
            if controllers:
                assert path.startswith(f"{machine[controllers]}/docker/"), line
    finally:
        outer.remove()


def test_dind_in_dind_confines_once(e2e: Env) -> None:
    """`dind -- dind -- CMD` in the host's cgroup namespace: the first unshares, the
    second finds itself at the root of its namespace and leaves it."""
    done = run_rm(
        e2e, "--privileged", "--cgroupns", "host", "--network", "none", e2e.image,
        "-v", "--", "dind", "-vv", "--log-format", "json", "--", "cat", "/proc/self/cgroup",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    text = [line for line in done.stderr.splitlines() if line.startswith("dind: ")]
    assert text.count("dind: unshare --cgroup") == 1, text
    inner = [r for r in json_lines(done.stderr) if r.get("step") == "cgroup-confine"]
    assert [(r["status"], r.get("note")) for r in inner] == [
        ("satisfied", "already at the root of its cgroup namespace")
    ]
    paths = {line.split(":", 2)[2] for line in done.stdout.splitlines()}
    assert paths == {"/"}


# --- a pure cgroup v2 view, the container below the root of what it sees ----------------

# As the v2 test of test_image.py sets the view up (cgroupns private, cgroup2 mounted on
# /sys/fs/cgroup), then dind's process moves one level down, to /below: dind sees the
# tree from above its own group, as in a pod whose cgroup2 is mounted from the root.
# (Kept in the container's own namespace on purpose: with --cgroupns host a failure of
# the step would create groups at the machine's cgroup2 root.) The parent delegates
# hugetlb to /below, the only controller of this machine's cgroup2.
V2_BELOW = """
umount -R /sys/fs/cgroup
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mkdir /sys/fs/cgroup/below
echo $$ >/sys/fs/cgroup/below/cgroup.procs
echo +hugetlb >/sys/fs/cgroup/cgroup.subtree_control
exec dind -v --with-dockerd -- sh -euc "$1"
"""

# dind's COMMAND: a nested container that the test finds from the machine, what it
# sees, and a hugetlb limit set on its group from the outer container. `docker exec`
# into the outer container fails on this hybrid machine once cgroup v2 nesting has
# enabled controllers in the container's group (runc writes the exec'd process into
# that group: EBUSY), so the results go to /out and the test says when to finish.
NESTED_V2 = """
docker load -q -i {tar} >/dev/null
docker run -d --name probe {image} sleep {mark} >/dev/null
id=$(docker inspect -f '{{{{.Id}}}}' probe)
cat /proc/self/cgroup >/out/self.cgroup
docker exec probe sh -c 'ls /sys/fs/cgroup' >/out/nested.files
echo 0 >/sys/fs/cgroup/docker/$id/hugetlb.2MB.max
docker exec probe cat /sys/fs/cgroup/hugetlb.2MB.max >/out/nested.hugetlb
echo ready >/out/status
tries=0
until [ -e /out/done ] || [ "$tries" -gt 1200 ]; do sleep 0.1; tries=$((tries + 1)); done
docker rm -f probe >/dev/null
"""


class Below:
    def __init__(self, outer: Outer, out: Path, mark: str) -> None:
        self.outer = outer
        self.out = out
        self.mark = mark

    def wait(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not (self.out / "status").exists():
            running = self.outer.env.daemon.docker(
                "inspect", "-f", "{{.State.Running}}", self.outer.name
            ).stdout.strip()
            if running != "true" or time.monotonic() > deadline:
                pytest.fail(f"v2 view did not get ready (running={running}):\n{logs(self.outer)}")
            time.sleep(0.2)

    def finish(self) -> None:
        (self.out / "done").write_text("")


@pytest.fixture(scope="module")
def below(e2e: Env) -> Iterator[dict[str, Below]]:
    """The v2 view with dind's cgroup-confine step, and without it (started together)."""
    started: dict[str, Below] = {}
    try:
        for name, options in (("confined", ()), ("skipped", ("-e", "DIND_SKIP=cgroup-confine"))):
            out = e2e.scratch(f"v2-below-{name}")
            mark = marker()
            script = NESTED_V2.format(tar=NESTED_BASE_TAR, image=shlex.quote(e2e.base), mark=mark)
            outer = Outer.start(
                e2e, "--cgroupns", "private", "--network", "none", "-v", f"{out}:/out",
                *options, "--entrypoint", "sh", command=("-c", V2_BELOW, "sh", script),
            )  # fmt: skip
            started[name] = Below(outer, out, mark)
        yield started
    finally:
        for case in started.values():
            case.finish()
        remove_all([case.outer for case in started.values()])


def container_group_v2(e2e: Env, case: Below, dind_in: str) -> str:
    """The outer container's cgroup2 group on the machine, from where its PID 1 (dind)
    is: ``<group>/below/init`` when the nesting step ran in /below (dind's confined
    root), ``<group>/below`` when it ran at the container's root."""
    dind = cgroups_of(container_pid(e2e, case.outer.name))[""]
    assert dind.endswith(dind_in), dind
    return dind.removesuffix(dind_in)


def test_v2_below_the_root_nested_containers_stay_inside_dinds_group(
    e2e: Env, below: dict[str, Below]
) -> None:
    case = below["confined"]
    case.wait()
    group = container_group_v2(e2e, case, "/below/init")
    nested = cgroups_of(wait_host_pid("sleep", case.mark))[""]
    FIGURES["v2 view below the root: a nested container's cgroup2 group"] = nested
    assert under(nested, f"{group}/below/docker"), (group, nested)
    # dind's own view after confine and nesting: the root is /below, it sits in init/.
    lines = (case.out / "self.cgroup").read_text().splitlines()
    assert [line for line in lines if line.startswith("0::")] == ["0::/init"]
    log = logs(case.outer, tail=200)
    for line in (
        "dind: unshare --cgroup",
        "dind: umount -l /sys/fs/cgroup",
        "dind: mount -t cgroup2 cgroup2 /sys/fs/cgroup",
    ):
        assert line in log.splitlines(), log
    # hugetlb, delegated down to the nested container; a limit set on its group from
    # the outer container is what the nested container reads.
    assert "hugetlb.2MB.max" in (case.out / "nested.files").read_text().split()
    assert (case.out / "nested.hugetlb").read_text() == "0\n"
    case.finish()


def test_v2_below_the_root_without_the_confine_step_nested_containers_leave_dinds_group(
    e2e: Env, below: dict[str, Below]
) -> None:
    """The control: without the step the nested daemon creates its groups at the root
    of the mounted tree, beside dind's group instead of below it."""
    case = below["skipped"]
    case.wait()
    group = container_group_v2(e2e, case, "/below")
    nested = cgroups_of(wait_host_pid("sleep", case.mark))[""]
    assert under(nested, f"{group}/docker"), (group, nested)
    assert not under(nested, f"{group}/below")
    assert "dind: unshare --cgroup" not in logs(case.outer, tail=200).splitlines()
    case.finish()
