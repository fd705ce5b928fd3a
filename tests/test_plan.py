"""Planning on real captures and documented layouts: the expected plans, exactly."""

from __future__ import annotations

import pytest

from dind import mountinfo, proccgroup
from dind.errors import ParseError
from dind.facts import Facts
from dind.plan import Plan, make_plan, render
from dind.settings import Settings
from tests.conftest import fixture_text

ROOT_TMPFS = "mount -t tmpfs -o uid=0,gid=0,mode=0755 cgroup /cgroup"
HEAD = [
    ("environment", "pending", "export container=docker"),
    ("securityfs", "pending", "mount -t securityfs securityfs /sys/kernel/security"),
    ("tmp", "pending", "mount -t tmpfs -o mode=1777 tmpfs /tmp"),
]
RSHARED = ("rshared", "pending", "mount --make-rshared /")
CONFINED = ("cgroup-confine", "pending", "unshare --cgroup")
NO_CONFINE = frozenset({"cgroup-confine"})
AT_ROOT = ("cgroup-confine", "satisfied", "unshare --cgroup")


def facts_for(name: str, **overrides: object) -> Facts:
    """Facts as detection would gather them on the captured system."""
    source = f"{name}/proc_1_cgroup"
    table = mountinfo.MountTable(mountinfo.parse(fixture_text(name, "mountinfo")))
    top = table.at("/sys/fs/cgroup")
    hierarchies = proccgroup.parse(fixture_text(name, "proc_1_cgroup"), source)
    values: dict[str, object] = {
        "hierarchies": hierarchies,
        "own_cgroups": hierarchies,  # a capture's PID 1 stands for dind, as in captured runs
        "mounts": table,
        "proc_cgroup": source,
        "sys_fs_cgroup": None if top is None else top.fstype,
    }
    values.update(overrides)
    return Facts(**values)  # type: ignore[arg-type]


def plan(facts: Facts, skip: frozenset[str] = frozenset()) -> Plan:
    return make_plan(facts, Settings(command=[], skip=skip))


def rows(facts: Facts, skip: frozenset[str] = frozenset()) -> list[tuple[str, str, str]]:
    return [(a.step, a.status, a.describe()) for a in plan(facts, skip).actions]


def v1(directory: str, options: str, status: str = "pending") -> list[tuple[str, str, str]]:
    return [
        ("cgroup-mounts", status, f"mkdir /cgroup/{directory}"),
        ("cgroup-mounts", status, f"mount -t cgroup -o {options} cgroup /cgroup/{directory}"),
    ]


DOCKER_V1 = [
    *v1("systemd", "name=systemd"),
    *v1("pids", "pids"),
    *v1("blkio", "blkio"),
    *v1("freezer", "freezer"),
    *v1("devices", "devices"),
    *v1("memory", "memory"),
    *v1("cpuset", "cpuset"),
    *v1("cpuacct", "cpuacct"),
    *v1("cpu", "cpu"),
    ("cgroup-mounts", "pending", "mkdir /cgroup/unified"),
    ("cgroup-mounts", "pending", "mount -t cgroup2 cgroup2 /cgroup/unified"),
]


@pytest.mark.parametrize(
    ("name", "confine"), [("container-v1-hostns", CONFINED), ("container-v1-privatens", AT_ROOT)]
)
def test_privileged_container_on_this_host(name: str, confine: tuple[str, str, str]) -> None:
    """The host's cgroup namespace (paths /docker/<id>) is unshared; the private one is not.

    Docker bind-mounts each hierarchy from the container's own group: nothing to replace.
    """
    assert rows(facts_for(name)) == [
        *HEAD,
        confine,
        ("cgroup-mounts", "pending", "mkdir /cgroup"),
        ("cgroup-mounts", "pending", ROOT_TMPFS),
        *DOCKER_V1,
        RSHARED,
    ]
    assert plan(facts_for(name)).warnings == []  # devices has a hierarchy of its own


def test_this_host_with_dind_already_applied() -> None:
    """The host's own mountinfo, with /sys/fs/cgroup as root: everything is there already."""
    entries = {
        d: "dir"
        for d in (
            "systemd",
            "pids",
            "blkio",
            "freezer",
            "devices",
            "memory",
            "cpuset",
            "cpuacct",
            "cpu",
            "unified",
        )
    }
    facts = facts_for(
        "host-hybrid", cgroup_root="/sys/fs/cgroup", root_entries=entries, securityfs_dir=False
    )
    planned = plan(facts)
    statuses = {(a.describe(), a.status) for a in planned.actions if a.step == "cgroup-mounts"}
    assert all(status == "satisfied" for _, status in statuses), statuses
    assert len(statuses) == 2 + 2 * 10
    assert [a.step for a in planned.actions if a.status == "pending"] == [
        "environment",
        "tmp",
        "rshared",
    ]


def test_systemd_v1_comounted_controllers_get_symlinks() -> None:
    facts = facts_for("systemd-v1")
    link = "cgroup-mounts"
    assert rows(facts, NO_CONFINE) == [
        ("environment", "pending", "export container=docker"),
        ("securityfs", "satisfied", "mount -t securityfs securityfs /sys/kernel/security"),
        ("tmp", "pending", "mount -t tmpfs -o mode=1777 tmpfs /tmp"),
        (link, "pending", "mkdir /cgroup"),
        (link, "pending", ROOT_TMPFS),
        *v1("cpuset", "cpuset"),
        *v1("rdma", "rdma"),
        *v1("memory", "memory"),
        *v1("hugetlb", "hugetlb"),
        *v1("perf_event", "perf_event"),
        *v1("freezer", "freezer"),
        *v1("pids", "pids"),
        *v1("devices", "devices"),
        *v1("blkio", "blkio"),
        *v1("net_cls,net_prio", "net_cls,net_prio"),
        (link, "pending", "ln -s net_cls,net_prio /cgroup/net_cls"),
        (link, "pending", "ln -s net_cls,net_prio /cgroup/net_prio"),
        *v1("cpu,cpuacct", "cpu,cpuacct"),
        (link, "pending", "ln -s cpu,cpuacct /cgroup/cpu"),
        (link, "pending", "ln -s cpu,cpuacct /cgroup/cpuacct"),
        *v1("systemd", "name=systemd"),
        (link, "pending", "mkdir /cgroup/unified"),
        (link, "pending", "mount -t cgroup2 cgroup2 /cgroup/unified"),
        ("rshared", "satisfied", "mount --make-rshared /"),
    ]


def test_systemd_v1_in_place_is_recognised_including_its_symlinks() -> None:
    entries = {
        "cpu": "link:cpu,cpuacct",
        "cpuacct": "link:cpu,cpuacct",
        "net_cls": "link:net_cls,net_prio",
        "net_prio": "dir",  # not the link dind would make
    }
    for d in (
        "cpuset",
        "rdma",
        "memory",
        "hugetlb",
        "perf_event",
        "freezer",
        "pids",
        "devices",
        "blkio",
        "net_cls,net_prio",
        "cpu,cpuacct",
        "systemd",
        "unified",
    ):
        entries[d] = "dir"
    facts = facts_for("systemd-v1", cgroup_root="/sys/fs/cgroup", root_entries=entries)
    actions = plan(facts).actions
    links = {a.describe(): (a.status, a.note) for a in actions if a.kind == "symlink"}
    assert links == {
        "ln -s net_cls,net_prio /sys/fs/cgroup/net_cls": ("satisfied", "link already there"),
        "ln -s net_cls,net_prio /sys/fs/cgroup/net_prio": (
            "conflict",
            "/sys/fs/cgroup/net_prio already exists and is not a link to net_cls,net_prio",
        ),
        "ln -s cpu,cpuacct /sys/fs/cgroup/cpu": ("satisfied", "link already there"),
        "ln -s cpu,cpuacct /sys/fs/cgroup/cpuacct": ("satisfied", "link already there"),
    }
    mounts = [a for a in actions if a.kind == "mount" and a.step == "cgroup-mounts"]
    assert all(a.status == "satisfied" for a in mounts)
    assert len(mounts) == 1 + 12 + 1


def test_inverted_cpuacct_cpu_also_gets_the_usual_name() -> None:
    facts = facts_for("systemd-inverted", securityfs_dir=False)
    got = [r for r in rows(facts) if r[0] == "cgroup-mounts"]
    link = "cgroup-mounts"
    assert got == [
        (link, "pending", "mkdir /cgroup"),
        (link, "pending", ROOT_TMPFS),
        *v1("systemd", "name=systemd"),
        *v1("devices", "devices"),
        *v1("memory", "memory"),
        *v1("cpuacct,cpu", "cpuacct,cpu"),
        (link, "pending", "ln -s cpuacct,cpu /cgroup/cpuacct"),
        (link, "pending", "ln -s cpuacct,cpu /cgroup/cpu"),
        (link, "pending", "ln -s cpuacct,cpu /cgroup/cpu,cpuacct"),
        *v1("cpuset", "cpuset"),
        *v1("blkio,freezer", "blkio,freezer"),
        (link, "pending", "ln -s blkio,freezer /cgroup/blkio"),
        (link, "pending", "ln -s blkio,freezer /cgroup/freezer"),
    ]


def test_pure_v2_private_namespace_mounts_cgroup2_on_the_root_and_nests() -> None:
    controllers = tuple(fixture_text("v2-privatens", "cgroup.controllers").split())
    facts = facts_for("v2-privatens", cgroup2_controllers=controllers, cgroup2_subtree=())
    assert rows(facts) == [
        *HEAD,
        AT_ROOT,
        ("cgroup-mounts", "pending", "mkdir /cgroup"),
        ("cgroup-mounts", "pending", "mount -t cgroup2 cgroup2 /cgroup"),
        (
            "cgroup-nesting",
            "pending",
            "move processes of /sys/fs/cgroup into init/, enable cpuset cpu io memory "
            "hugetlb pids rdma misc in cgroup.subtree_control",
        ),
        RSHARED,
    ]
    assert plan(facts).warnings == []  # no devices warning on pure v2


def test_pure_v2_host_namespace_with_cgroup2_root_already_mounted() -> None:
    facts = facts_for(
        "v2-hostns",
        cgroup_root="/sys/fs/cgroup",
        root_entries={},
        cgroup2_controllers=("memory", "pids"),
        cgroup2_subtree=("memory", "pids"),
    )
    got = [(s, st, d) for s, st, d in rows(facts, NO_CONFINE) if s.startswith("cgroup")]
    assert got == [
        ("cgroup-mounts", "satisfied", "mkdir /sys/fs/cgroup"),
        ("cgroup-mounts", "satisfied", "mount -t cgroup2 cgroup2 /sys/fs/cgroup"),
        (
            "cgroup-nesting",
            "satisfied",
            "move processes of /sys/fs/cgroup into init/, enable memory pids in "
            "cgroup.subtree_control",
        ),
    ]


def test_v2_view_on_hybrid_kernel_mounts_v1_and_nests() -> None:
    controllers = tuple(fixture_text("container-v2-view", "cgroup.controllers").split())
    facts = facts_for("container-v2-view", cgroup2_controllers=controllers, cgroup2_subtree=())
    assert facts.sys_fs_cgroup == "cgroup2"
    assert rows(facts) == [
        *HEAD,
        AT_ROOT,
        ("cgroup-mounts", "pending", "mkdir /cgroup"),
        ("cgroup-mounts", "pending", ROOT_TMPFS),
        *DOCKER_V1,
        (
            "cgroup-nesting",
            "pending",
            "move processes of /sys/fs/cgroup into init/, enable hugetlb in cgroup.subtree_control",
        ),
        RSHARED,
    ]


def test_hybrid_host_does_not_nest() -> None:
    kinds = {a.step for a in plan(facts_for("host-hybrid")).actions}
    assert "cgroup-nesting" not in kinds


def test_something_else_on_a_target_is_a_conflict_never_a_stacked_mount() -> None:
    text = fixture_text("container-v1-privatens", "mountinfo") + (
        "200 77 0:90 / /cgroup rw - tmpfs cgroup rw\n"
        "201 200 0:91 / /cgroup/memory rw - tmpfs tmpfs rw\n"
        "202 200 0:29 / /cgroup/cpu rw - cgroup cgroup rw,cpuacct\n"
        "203 200 0:30 / /cgroup/cpuacct rw - cgroup cgroup rw,cpuacct\n"
    )
    table = mountinfo.MountTable(mountinfo.parse(text))
    entries = {"memory": "dir", "cpu": "dir", "cpuacct": "dir", "pids": "link:/etc"}
    facts = facts_for("container-v1-privatens", mounts=table, root_entries=entries)
    by_target = {a.describe(): (a.status, a.note) for a in plan(facts).actions}
    assert by_target[ROOT_TMPFS] == ("satisfied", "tmpfs already mounted")
    assert by_target["mount -t cgroup -o memory cgroup /cgroup/memory"] == (
        "conflict",
        "tmpfs already mounted there; not stacking on top",
    )
    assert by_target["mount -t cgroup -o cpu cgroup /cgroup/cpu"] == (
        "conflict",
        "cgroup (rw,cpuacct) already mounted there; not stacking on top",
    )
    assert by_target["mount -t cgroup -o cpuacct cgroup /cgroup/cpuacct"] == (
        "satisfied",
        "cgroup already mounted",
    )
    assert by_target["mkdir /cgroup/pids"] == (
        "conflict",
        "exists and is a symlink; dind never mounts through it",
    )
    assert "mount -t cgroup -o pids cgroup /cgroup/pids" not in by_target


def test_cgroup_filesystem_at_the_root_stops_v1_planning() -> None:
    text = (
        fixture_text("container-v2-view", "mountinfo")
        + "300 110 0:38 / /cgroup rw - cgroup2 cgroup2 rw\n"
    )
    facts = facts_for(
        "container-v2-view", mounts=mountinfo.MountTable(mountinfo.parse(text)), root_entries={}
    )
    cg = [a for a in plan(facts).actions if a.step == "cgroup-mounts"]
    assert [(a.describe(), a.status) for a in cg] == [
        ("mkdir /cgroup", "satisfied"),
        (ROOT_TMPFS, "conflict"),
    ]


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("2:name=unified:/\n1:cpu:/\n0::/\n", 3),
        ("2:name=cpu:/\n1:cpu,cpuacct:/\n0::/\n", 2),
        ("2:name=net_cls:/\n1:net_cls,net_prio:/\n", 2),
    ],
)
def test_two_lines_claiming_one_name_under_the_root_is_an_error(text: str, line: int) -> None:
    facts = facts_for("host-hybrid", hierarchies=proccgroup.parse(text, "f"), proc_cgroup="f")
    with pytest.raises(ParseError) as err:
        plan(facts)
    assert err.value.source == "f" and err.value.lineno == line


@pytest.mark.parametrize(
    ("text", "warning"),
    [
        ("2:memory:/\n1:cpu:/\n", 'the "devices" cgroup is not mounted'),
        ("2:memory:/\n1:cpu,devices:/\n", "should be in its own hierarchy (it shares cpu,devices)"),
    ],
)
def test_devices_warnings_of_the_2015_script(text: str, warning: str) -> None:
    facts = facts_for("host-hybrid", hierarchies=proccgroup.parse(text))
    ((step, got),) = plan(facts).warnings
    assert step == "cgroup-mounts" and warning in got


def test_skipped_steps_plan_nothing() -> None:
    facts = facts_for("container-v2-view", cgroup2_controllers=("hugetlb",))
    skipped = frozenset({"tmp", "cgroup-mounts", "cgroup-nesting", "cgroup-confine"})
    steps = {a.step for a in plan(facts, skipped).actions}
    assert steps == {"environment", "securityfs", "rshared"}


def test_files_in_tmp_give_a_warning_and_a_set_container_is_kept() -> None:
    facts = facts_for("container-v1-hostns", tmp_entries=("a", "b", "c", "d"), container="podman")
    planned = plan(facts)
    assert planned.warnings == [
        (
            "tmp",
            "the tmpfs on /tmp hides what /tmp holds now (a, b, c, ...); "
            "--skip tmp keeps it visible",
        )
    ]
    assert (planned.actions[0].status, planned.actions[0].note) == (
        "satisfied",
        "container=podman already set",
    )


def test_render_text_and_json_show_the_same_actions_in_order() -> None:
    import json

    planned = plan(facts_for("systemd-inverted", securityfs_dir=False), NO_CONFINE)
    planned.command = ["hack/make.sh", "binary", "a b"]
    text = render(planned)
    lines = text.splitlines()
    assert lines[0].split() == ["environment", "pending", "export", "container=docker"]
    assert lines[-1].split(None, 2) == ["exec", "pending", "hack/make.sh binary 'a b'"]
    planned.command = ["true"]
    objs = [json.loads(x) for x in render(planned, "json").splitlines()]
    assert len(objs) == len(lines)
    assert objs[5] == {
        "step": "cgroup-mounts",
        "action": "mount",
        "target": "/cgroup/systemd",
        "fstype": "cgroup",
        "source": "cgroup",
        "options": "name=systemd",
        "status": "pending",
    }
    assert objs[-1] == {"step": "exec", "action": "exec", "argv": ["true"], "status": "pending"}


def test_pure_v2_host_namespace_is_confined_by_replacing_the_hosts_tree() -> None:
    """cgroup2 on /sys/fs/cgroup shows the host's root: after unshare it is mounted anew,
    rooted at the container's group, and nesting reads that new root when it runs."""
    facts = facts_for(
        "v2-hostns",
        cgroup_root="/sys/fs/cgroup",
        root_entries={},
        cgroup2_controllers=("memory", "pids"),
        cgroup2_subtree=("memory", "pids"),
    )
    got = [r for r in rows(facts) if r[0] in ("cgroup-confine", "cgroup-nesting")]
    assert got == [
        CONFINED,
        ("cgroup-confine", "pending", "umount -l /sys/fs/cgroup"),
        ("cgroup-confine", "pending", "mount -t cgroup2 cgroup2 /sys/fs/cgroup"),
        (
            "cgroup-nesting",
            "pending",
            "move processes of /sys/fs/cgroup into init/, enable all controllers in "
            "cgroup.subtree_control",
        ),
    ]


def test_a_v1_tree_shown_from_above_the_container_is_replaced() -> None:
    """systemd's PID 1 sits in /init.scope of name=systemd: that hierarchy, mounted from /,
    would put nested groups beside it; the co-mounted ones at / are left alone."""
    facts = facts_for("systemd-v1")
    replaced = [r[2] for r in rows(facts) if r[0] == "cgroup-confine" and "umount" in r[2]]
    own = {h.options for h in facts.hierarchies if h.path != "/"}
    assert replaced == [
        f"umount -l /sys/fs/cgroup/{'unified' if o == '' else o.removeprefix('name=')}"
        for o in ["", "name=systemd", "cpu,cpuacct", "blkio", "devices", "pids", "memory"]
        if o in own
    ]
    assert replaced
