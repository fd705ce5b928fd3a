"""The machine guard (tests/support/machine.py): what it reads, what it reports, and
that a whole pytest session with a leaking test really fails.

The guard itself runs around every session (tests/conftest.py registers it); these
tests prove it is able to fail: its comparison on snapshots built from real
formats, and a real session that leaves a cgroup behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from tests.conftest import root_only
from tests.support.machine import (
    Link,
    Snapshot,
    cgroup_hierarchies,
    compare,
    parse_hierarchies,
    parse_links,
    parse_mounts,
    parse_net_dev,
    take_snapshot,
)

REPO = Path(__file__).resolve().parents[1]

MOUNTINFO = """\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
50 27 0:40 / /mnt/with\\040space rw - tmpfs tmpfs rw
51 27 0:41 / /mnt/with\\040space rw - tmpfs tmpfs rw
"""


def snap(
    links: dict[str, Link] | None = None,
    mounts: Sequence[tuple[str, str]] = (),
    cgroups: set[str] | None = None,
    engines: set[str] | None = None,
    subtree: str = "",
) -> Snapshot:
    return Snapshot(
        links=links or {},
        mounts=Counter(mounts),
        cgroups=cgroups or set(),
        subtree_control=subtree,
        engines=engines or set(),
    )


BASE_LINKS = {
    "lo": Link("lo", "loopback"),
    "eth0": Link("eth0", "ether"),
    "docker0": Link("docker0", "bridge"),
}
DOCKERD = {"dockerd[123]"}


def test_mountinfo_points_are_unescaped_and_counted() -> None:
    mounts = parse_mounts(MOUNTINFO)
    assert mounts[("/mnt/with space", "tmpfs")] == 2
    assert mounts[("/", "ext4")] == 1
    assert cgroup_hierarchies(mounts) == ["/sys/fs/cgroup/cpu", "/sys/fs/cgroup/unified"]


def test_links_come_from_ip_json_with_kind_and_master() -> None:
    out = json.dumps(
        [
            {"ifname": "lo", "link_type": "loopback"},
            {"ifname": "docker0", "link_type": "ether", "linkinfo": {"info_kind": "bridge"}},
            {"ifname": "veth1", "master": "docker0", "linkinfo": {"info_kind": "veth"}},
        ]
    )
    assert parse_links(out) == {
        "lo": Link("lo", "loopback"),
        "docker0": Link("docker0", "bridge"),
        "veth1": Link("veth1", "veth", "docker0"),
    }


def test_links_come_from_proc_net_dev_without_iproute2() -> None:
    text = (
        "Inter-|   Receive\n face |bytes    packets\n"
        "    lo:  100 1 0 0 0 0 0 0 100 1 0 0 0 0 0 0\n"
        "docker0: 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n"
    )
    assert parse_net_dev(text) == {"lo": Link("lo", "?"), "docker0": Link("docker0", "?")}


def test_a_vanished_docker0_is_reported_even_while_the_machines_docker_runs() -> None:
    before = snap(BASE_LINKS, engines=DOCKERD)
    after = snap({k: v for k, v in BASE_LINKS.items() if k != "docker0"}, engines=DOCKERD)
    assert compare(before, after) == ["- link docker0 (bridge)"]


def test_the_machines_docker_containers_are_volatile_only_while_it_runs() -> None:
    veth = Link("veth9", "veth", "docker0")
    merged = ("/var/lib/docker/overlay2/abc/merged", "overlay")
    before = snap(BASE_LINKS, mounts=[("/", "ext4")], cgroups={"cpu/x"})
    after = snap(
        {**BASE_LINKS, "veth9": veth},
        mounts=[("/", "ext4"), merged],
        cgroups={"cpu/x", "cpu/docker"},
    )
    assert compare(before, after) == [
        "+ link veth9 (veth)",
        "+ mount /var/lib/docker/overlay2/abc/merged (overlay)",
        "+ cgroup /sys/fs/cgroup/cpu/docker",
    ]
    before.engines = DOCKERD
    assert compare(before, after) == []


def test_leaks_of_tests_are_reported_whatever_runs() -> None:
    """A veth on a bridge of its own, a mount stacked on /tmp, a cgroup, a controller."""
    before = snap(BASE_LINKS, mounts=[("/tmp", "tmpfs")], cgroups={"pids/a"}, engines=DOCKERD)
    after = snap(
        {**BASE_LINKS, "vethx": Link("vethx", "veth", "lxcbr0")},
        mounts=[("/tmp", "tmpfs"), ("/tmp", "tmpfs")],
        cgroups={"pids/a", "pids/dind-test-1", "unified/lxc.pivot"},
        engines=DOCKERD,
        subtree="hugetlb",
    )
    assert compare(before, after) == [
        "+ link vethx (veth)",
        "+ mount /tmp (tmpfs)",
        "+ cgroup /sys/fs/cgroup/pids/dind-test-1",
        "+ cgroup /sys/fs/cgroup/unified/lxc.pivot",
        "~ cgroup2 root cgroup.subtree_control: '' -> 'hugetlb'",
    ]
    assert compare(after, before)[:2] == ["- link vethx (veth)", "- mount /tmp (tmpfs)"]


def test_a_new_v1_hierarchy_is_reported() -> None:
    """e.g. net_cls,net_prio mounted by a script that mounts every controller."""
    text = "2:cpu,cpuacct:/\n1:name=systemd:/x\n0::/\n"
    assert parse_hierarchies(text) == {"cpu,cpuacct", "name=systemd"}
    before, after = snap(), snap()
    before.hierarchies = parse_hierarchies(text)
    after.hierarchies = parse_hierarchies("3:net_cls,net_prio:/\n" + text)
    assert compare(before, after) == ["+ cgroup hierarchy net_cls,net_prio"]


def test_the_real_machine_reads_cleanly_and_compares_equal_to_itself() -> None:
    first, second = take_snapshot(), take_snapshot()
    if os.geteuid() == 0:
        assert first.errors == []
        assert "lo" in first.links
        assert any(point == "/" for point, _ in first.mounts)
        if Path("/sys/fs/cgroup").is_dir():
            assert cgroup_hierarchies(first.mounts)
    assert compare(first, second) == []


# A session run by the test below, guarded as tests/conftest.py guards this one.
GUARDED_CONFTEST = """
from tests.support.machine import MachineGuard


def pytest_configure(config):
    config.pluginmanager.register(MachineGuard(), "dind-machine-guard")
"""
SESSION_TESTS = """
import os
from pathlib import Path


def test_leaves_a_cgroup():
    Path(os.environ["LEAK"]).mkdir()


def test_cleans_up_after_itself():
    group = Path(os.environ["LEAK"] + "-clean")
    group.mkdir()
    group.rmdir()
"""


def _session(tmp_path: Path, leak: Path, *selection: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "conftest.py").write_text(GUARDED_CONFTEST)
    (tmp_path / "test_session.py").write_text(SESSION_TESTS)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *selection],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO), "LEAK": str(leak)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@root_only
def test_a_session_that_leaves_a_cgroup_behind_fails_and_shows_it(tmp_path: Path) -> None:
    leak = Path(f"/sys/fs/cgroup/pids/dind-guard-leak-{os.getpid()}")
    try:
        clean = _session(tmp_path, leak, "-k", "cleans_up")
        assert clean.returncode == 0, clean.stdout + clean.stderr
        assert "changed the machine" not in clean.stdout
        leaking = _session(tmp_path, leak)
        assert leaking.returncode == 1, leaking.stdout + leaking.stderr
        assert "2 passed, 1 left on the machine" in leaking.stdout  # the guard failed it
        assert "the tests changed the machine" in leaking.stdout
        assert f"+ cgroup {leak}" in leaking.stdout
    finally:
        with contextlib.suppress(FileNotFoundError):
            leak.rmdir()


def test_groups_of_another_test_session_are_its_own_business() -> None:
    """``dind-test-<pid>-``: a concurrent session's groups come and go; a dead one's stay."""
    ended = subprocess.Popen(["true"])  # its PID stands for a session that has ended
    ended.wait(timeout=10)
    before = snap(cgroups={"pids/dind-test-1-old"})
    after = snap(cgroups={"pids/dind-test-1-new", f"pids/dind-test-{ended.pid}-gone"})
    assert compare(before, after) == [f"+ cgroup /sys/fs/cgroup/pids/dind-test-{ended.pid}-gone"]
    # A controller another running session's daemon needs stays on until it stops.
    running = snap(cgroups={"unified/dind-test-1-d"}, subtree="hugetlb")
    assert compare(snap(cgroups={"unified/dind-test-1-d"}), running) == []
    assert compare(snap(), snap(subtree="hugetlb")) != []
    ours = snap(cgroups={f"pids/dind-test-{os.getpid()}-x"})
    assert compare(snap(), ours) == [f"+ cgroup /sys/fs/cgroup/pids/dind-test-{os.getpid()}-x"]
    assert compare(ours, snap()) == [f"- cgroup /sys/fs/cgroup/pids/dind-test-{os.getpid()}-x"]
