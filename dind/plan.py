"""Planning: facts in, the ordered actions (and the command to run) out. Pure.

This is the one place that decides which steps apply and in what order: the
cgroup layout (/proc/1/cgroup says which hierarchies exist, the filesystem type
of /sys/fs/cgroup whether it is in unified mode), confinement, and in dockerd
mode the daemon's own steps and command line (``dind.daemon.plan``).
"""

from __future__ import annotations

from dind import cgroup1, cgroup2, confine, paths, steps
from dind.actions import (
    PENDING,
    REFUSED,
    SATISFIED,
    SKIPPED,
    Action,
    Decision,
    Mount,
    Propagation,
    SetEnv,
)
from dind.record import Record
from dind.sysctl import plan_net_sysctls

TYPE_CHECKING = False
if TYPE_CHECKING:
    from dind.facts import Facts
    from dind.launch import Launch
    from dind.settings import Settings


class Plan(Record):
    """Ordered actions, the warnings planning found (each tied to its step), and what to run.

    A step's warnings are shown when that step starts, so a run that stops earlier
    does not warn about what it never did. ``command`` is what dind execs (or runs
    as init); ``dockerd`` the daemon ``--with-dockerd`` starts first; dockerd finds
    ``dockerd_path`` first on its PATH; ``launch`` says how the daemon starts when it
    runs as another user (rootless).
    """

    __slots__ = ("actions", "command", "decided", "dockerd", "dockerd_path", "launch", "warnings")

    def __init__(
        self,
        actions: list[Action],
        warnings: list[tuple[str, str]],
        command: list[str] | None = None,
        dockerd: list[str] | None = None,
        dockerd_path: list[str] | None = None,
        launch: Launch | None = None,
    ) -> None:
        self.actions = actions
        self.warnings = warnings
        self.command = command or []
        self.dockerd = dockerd
        self.dockerd_path = dockerd_path or []
        self.decided: dict[str, str] = {}
        """Decisions for the start-up summary beyond the daemon steps' own (``dind.summary``):
        a JSON field name and its few words, e.g. the privilege level."""
        self.launch = launch

    @property
    def refused(self) -> Action | None:
        """The first refusal: dind stops there before changing anything."""
        return next((a for a in self.actions if a.status == REFUSED), None)


def _mounted(facts: Facts, path: str) -> str:
    top = facts.mounts.at(path)
    return "" if top is None else f"{top.fstype} already mounted"


def _host(facts: Facts, allow: bool, actions: list[Action]) -> Plan:
    """The plan, refused when it would change the host's own mount namespace.

    Typed on a host by mistake, ``dind CMD`` would hide the host's /tmp under a
    tmpfs, mount securityfs and make / shared. A plan that changes nothing
    (every step skipped or already done) is harmless there.
    """
    changes = any(a.status == PENDING and not isinstance(a, SetEnv | Decision) for a in actions)
    text = "run on the host itself"
    if facts.host is True and changes:
        if allow:
            return Plan(
                [Decision(steps.HOST, text, "host", SATISFIED, "--allow-host"), *actions], []
            )
        why = (
            f"this is the host's own mount namespace ({facts.host_evidence}): dind would change "
            "it (a tmpfs over /tmp, securityfs, / made shared...); run dind inside a container, "
            "or pass --allow-host"
        )
        return Plan([Decision(steps.HOST, text, "host", REFUSED, why), *actions], [])
    unknown = facts.host is None and facts.host_evidence.startswith("the initial PID")
    if unknown and changes and not allow:
        warning = f"cannot tell whether this is the host: {facts.host_evidence}"
        return Plan(actions, [(steps.HOST, warning)])
    return Plan(actions, [])


def _securityfs(facts: Facts) -> Action:
    """securityfs, unless mounted already; skipped in a user namespace (the kernel refuses it
    there: the securityfs type has no FS_USERNS_MOUNT)."""
    note = _mounted(facts, paths.SECURITYFS)
    status = SATISFIED if note else PENDING
    if not note and facts.privilege is not None and facts.privilege.user_ns:
        status = SKIPPED
        note = (
            "securityfs cannot be mounted in a user namespace: nested containers get no "
            "AppArmor profile"
        )
    return Mount(
        steps.SECURITYFS, "securityfs", paths.SECURITYFS, "securityfs", "", 0, status, note
    )


def _tmp(facts: Facts) -> tuple[list[Action], list[tuple[str, str]]]:
    note = _mounted(facts, paths.TMP)
    action = Mount(
        steps.TMP,
        "tmpfs",
        paths.TMP,
        "tmpfs",
        "mode=1777",
        status=SATISFIED if note else PENDING,
        note=note,
    )
    if note or not facts.tmp_entries:
        return [action], []
    shown = ", ".join(facts.tmp_entries[:3])
    more = ", ..." if len(facts.tmp_entries) > 3 else ""
    warning = (
        f"the tmpfs on /tmp hides what /tmp holds now ({shown}{more}); --skip tmp keeps it visible"
    )
    return [action], [(steps.TMP, warning)]


def _skip(facts: Facts, settings: Settings) -> tuple[frozenset[str], list[Action]]:
    """The steps to skip: ``--skip``'s, and the kernel steps a rootless daemon without
    CAP_SYS_ADMIN cannot have (said by the action returned)."""
    if facts.rootless is None or not settings.rootless:
        return settings.skip, []
    from dind.rootless.plan import kernel_steps

    return kernel_steps(facts.rootless, settings.skip)


def make_plan(facts: Facts, settings: Settings) -> Plan:
    """Every step's actions in execution order; skipped steps contribute nothing."""
    actions, warnings = plan_kernel(facts, settings)
    plan = Plan(actions, warnings, list(settings.command))
    if settings.daemon_mode and facts.daemon is not None:
        _add_daemon(plan, facts, settings)
    checked = _host(facts, settings.allow_host, plan.actions)
    plan.actions = checked.actions
    plan.warnings = checked.warnings + plan.warnings
    return plan


def plan_kernel(facts: Facts, settings: Settings) -> tuple[list[Action], list[tuple[str, str]]]:
    """The kernel steps' actions and warnings (the daemon's follow from them: ``--check``'s
    daemon area plans them too)."""
    skip, skipped = _skip(facts, settings)
    actions: list[Action] = []
    warnings: list[tuple[str, str]] = []

    if facts.container:
        note = f"container={facts.container} already set"
        actions.append(SetEnv(steps.ENVIRONMENT, "container", "docker", SATISFIED, note))
    else:
        actions.append(SetEnv(steps.ENVIRONMENT, "container", "docker"))
    actions += skipped

    if steps.SECURITYFS not in skip and facts.securityfs_dir:
        actions.append(_securityfs(facts))

    if steps.TMP not in skip:
        more, found = _tmp(facts)
        actions += more
        warnings += found

    confined: list[Action] = []
    if steps.CGROUP_CONFINE not in skip:
        confined = confine.plan_confine(facts)
        actions += confined

    if steps.CGROUP_MOUNTS not in skip:
        root = facts.cgroup_root
        if facts.pure_v2:
            actions += cgroup2.plan_mount(root, facts.mounts, facts.root_entries is not None)
        else:
            actions += cgroup1.plan_mounts(
                facts.hierarchies, root, facts.mounts, facts.root_entries, facts.proc_cgroup
            )
            warnings += [
                (steps.CGROUP_MOUNTS, w) for w in cgroup1.devices_warnings(facts.hierarchies)
            ]

    if steps.CGROUP_REMOUNT not in skip:
        replaced = {a.target for a in confined if isinstance(a, Mount)}
        actions += [
            a
            for a in cgroup1.plan_remount(facts.mounts, paths.SYS_FS_CGROUP)
            if getattr(a, "target", None) not in replaced
        ]

    if steps.CGROUP_NESTING not in skip and facts.sys_fs_cgroup == "cgroup2":
        if confine.replaces_sys_fs_cgroup(confined):
            actions.append(cgroup2.plan_nesting(paths.SYS_FS_CGROUP, None, None))
        else:
            actions.append(
                cgroup2.plan_nesting(
                    paths.SYS_FS_CGROUP, facts.cgroup2_controllers, facts.cgroup2_subtree
                )
            )

    if steps.NET_SYSCTLS not in skip:
        known = facts.privilege
        admin = None if known is None else known.has("CAP_SYS_ADMIN")
        actions += plan_net_sysctls(facts.mounts, None if known is None else known.net_host, admin)

    if steps.RSHARED not in skip:
        every = facts.mounts.mounts
        done = bool(every) and all(m.shared for m in every)
        status, note = (SATISFIED, "every mount is already shared") if done else (PENDING, "")
        actions.append(Propagation(steps.RSHARED, "/", status, note))
    return actions, warnings


def _add_daemon(plan: Plan, facts: Facts, settings: Settings) -> None:
    """The daemon steps after the kernel's; dockerd is the command, or starts before it.
    The privilege level joins the decisions said before dockerd starts (dind.summary); the
    rootless daemon says its own (user, network, limits), a rootful level would mislead."""
    from dind.daemon.plan import plan_daemon

    if facts.privilege is not None and not settings.rootless:
        from dind.abilities import assess, said

        plan.decided["privilege"] = said(assess(facts.privilege))

    daemon = plan_daemon(facts, settings, plan.actions)
    plan.actions += daemon.actions
    plan.warnings += daemon.warnings
    plan.dockerd_path = daemon.path
    plan.launch = daemon.launch
    plan.decided.update(daemon.decided)
    if settings.with_dockerd:
        plan.dockerd = daemon.argv
    else:
        plan.command = daemon.argv


def render(plan: Plan, fmt: str = "text") -> str:
    """The plan as ``--dry-run`` prints it: one line (or JSON object) per action, in order."""
    rows: list[tuple[str, str, str, str, dict[str, object]]] = []
    for a in plan.actions:
        rows.append((a.step, a.status, a.describe(), a.note, a.fields()))
    launch = plan.launch
    note = "" if launch is None else launch.describe()
    more: dict[str, object] = {} if launch is None else {"launch": launch.fields()}
    if plan.dockerd is not None:
        text = _shell(plan.dockerd)
        fields: dict[str, object] = {"step": steps.DOCKERD, "action": "start", "argv": plan.dockerd}
        rows.append((steps.DOCKERD, PENDING, text, note, {**fields, **more, "status": PENDING}))
    if plan.command:
        fields = {"step": steps.EXEC, "action": "exec", "argv": plan.command, "status": PENDING}
        if plan.dockerd is None:
            fields.update(more)
        shown = note if plan.dockerd is None else ""
        rows.append((steps.EXEC, PENDING, _shell(plan.command), shown, fields))
    if fmt == "json":
        import json

        return "".join(json.dumps(r[4]) + "\n" for r in rows)
    lines = []
    for step, status, text, note, _ in rows:
        shown = f"  # {note}" if note else ""
        lines.append(f"{step:<15} {status:<10} {text}{shown}\n")
    return "".join(lines)


def _shell(argv: list[str]) -> str:
    import shlex

    return shlex.join(argv)
