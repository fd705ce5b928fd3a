"""Planning: facts about the system in, the ordered list of actions out. Pure.

This is the one place that decides which cgroup layout applies: /proc/1/cgroup
says which hierarchies exist (v1, hybrid or pure v2) and so what to mount; the
filesystem type of /sys/fs/cgroup says whether it is in unified mode and so
whether nesting is needed.
"""

from __future__ import annotations

from dind import cgroup1, cgroup2
from dind.actions import MS_REC, MS_SHARED, PENDING, SATISFIED, Action, Mount, Propagation, SetEnv
from dind.record import Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from dind.mountinfo import MountTable
    from dind.proccgroup import Hierarchy

SECURITYFS = "/sys/kernel/security"
TMP = "/tmp"
SYS_FS_CGROUP = "/sys/fs/cgroup"


class Facts(Record):
    """What detection found; everything planning depends on, and nothing else."""

    __slots__ = (
        "cgroup2_controllers",
        "cgroup2_subtree",
        "cgroup_root",
        "container",
        "hierarchies",
        "mounts",
        "proc_cgroup",
        "root_entries",
        "securityfs_dir",
        "sys_fs_cgroup",
        "tmp_entries",
    )

    def __init__(
        self,
        *,
        hierarchies: list[Hierarchy],
        mounts: MountTable,
        proc_cgroup: str = "/proc/1/cgroup",
        cgroup_root: str = "/cgroup",
        root_entries: dict[str, str] | None = None,
        sys_fs_cgroup: str | None = "tmpfs",
        cgroup2_controllers: tuple[str, ...] | None = None,
        cgroup2_subtree: tuple[str, ...] | None = None,
        securityfs_dir: bool = True,
        tmp_entries: tuple[str, ...] = (),
        container: str | None = None,
    ) -> None:
        self.hierarchies = hierarchies
        self.mounts = mounts
        self.proc_cgroup = proc_cgroup
        self.cgroup_root = cgroup_root
        self.root_entries = root_entries
        self.sys_fs_cgroup = sys_fs_cgroup
        self.cgroup2_controllers = cgroup2_controllers
        self.cgroup2_subtree = cgroup2_subtree
        self.securityfs_dir = securityfs_dir
        self.tmp_entries = tmp_entries
        self.container = container

    @property
    def pure_v2(self) -> bool:
        """/proc/1/cgroup has only the ``0::`` line: no v1 hierarchy to mount."""
        return all(h.unified for h in self.hierarchies)


class Plan(Record):
    """Ordered actions plus the warnings planning found, each tied to its step.

    A step's warnings are shown when that step starts, so a run that stops
    earlier does not warn about what it never did.
    """

    __slots__ = ("actions", "warnings")

    def __init__(self, actions: list[Action], warnings: list[tuple[str, str]]) -> None:
        self.actions = actions
        self.warnings = warnings


def _mounted(facts: Facts, path: str) -> str:
    top = facts.mounts.at(path)
    return "" if top is None else f"{top.fstype} already mounted"


def make_plan(facts: Facts, skip: frozenset[str] = frozenset()) -> Plan:
    """Every step's actions in execution order; skipped steps contribute nothing."""
    actions: list[Action] = []
    warnings: list[tuple[str, str]] = []

    if facts.container:
        actions.append(
            SetEnv(
                "environment",
                "container",
                "docker",
                SATISFIED,
                f"container={facts.container} already set",
            )
        )
    else:
        actions.append(SetEnv("environment", "container", "docker"))

    if "securityfs" not in skip and facts.securityfs_dir:
        note = _mounted(facts, SECURITYFS)
        actions.append(
            Mount(
                "securityfs",
                "securityfs",
                SECURITYFS,
                "securityfs",
                status=SATISFIED if note else PENDING,
                note=note,
            )
        )

    if "tmp" not in skip:
        note = _mounted(facts, TMP)
        actions.append(
            Mount(
                "tmp",
                "tmpfs",
                TMP,
                "tmpfs",
                "mode=1777",
                status=SATISFIED if note else PENDING,
                note=note,
            )
        )
        if not note and facts.tmp_entries:
            shown = ", ".join(facts.tmp_entries[:3])
            warnings.append(
                (
                    "tmp",
                    f"the tmpfs on /tmp hides what /tmp holds now ({shown}"
                    f"{', ...' if len(facts.tmp_entries) > 3 else ''}); "
                    "--skip tmp keeps it visible",
                )
            )

    if "cgroup-mounts" not in skip:
        root = facts.cgroup_root
        if facts.pure_v2:
            actions += cgroup2.plan_mount(root, facts.mounts, facts.root_entries is not None)
        else:
            actions += cgroup1.plan_mounts(
                facts.hierarchies, root, facts.mounts, facts.root_entries, facts.proc_cgroup
            )
            warnings += [("cgroup-mounts", w) for w in cgroup1.devices_warnings(facts.hierarchies)]

    if "cgroup-nesting" not in skip and facts.sys_fs_cgroup == "cgroup2":
        actions.append(
            cgroup2.plan_nesting(SYS_FS_CGROUP, facts.cgroup2_controllers, facts.cgroup2_subtree)
        )

    if "rshared" not in skip:
        every = facts.mounts.mounts
        done = bool(every) and all(m.shared for m in every)
        actions.append(
            Propagation(
                "rshared",
                "/",
                MS_REC | MS_SHARED,
                SATISFIED if done else PENDING,
                "every mount is already shared" if done else "",
            )
        )
    return Plan(actions, warnings)


def render(plan: Plan, command: list[str], fmt: str = "text") -> str:
    """The plan as ``--dry-run`` prints it: one line (or JSON object) per action, in order."""
    if fmt == "json":
        import json

        rows = [a.fields() for a in plan.actions]
        if command:
            rows.append({"step": "exec", "action": "exec", "argv": command, "status": PENDING})
        return "".join(json.dumps(r) + "\n" for r in rows)
    lines = []
    for a in plan.actions:
        note = f"  # {a.note}" if a.note else ""
        lines.append(f"{a.step:<15} {a.status:<10} {a.describe()}{note}\n")
    if command:
        import shlex

        lines.append(f"{'exec':<15} {PENDING:<10} {shlex.join(command)}\n")
    return "".join(lines)
