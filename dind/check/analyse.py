"""From a ``Snapshot`` to a ``Report``: one function per area, in report order. Pure.

Each area returns its facts (a JSON-ready section) and adds findings: ``ok``,
``warning`` (limits nested Docker, with the consequence), or ``blocker`` (dind or
a nested dockerd cannot work). Where the snapshot cannot tell, the value is
"unknown" rather than a guess.
"""

from __future__ import annotations

from dind import abilities, cgroup1, confine, procfs, requirements, steps
from dind.actions import CONFLICT, REFUSED, SATISFIED
from dind.check.env import Env, active_lsms, denies_mount
from dind.check.gather import KERNEL_CONFIG, TABLE_NAMES
from dind.check.model import Snapshot
from dind.check.predict import plan_area
from dind.check.report import AREAS, Findings, Report
from dind.errors import DindError
from dind.facts import Facts, from_evidence
from dind.namespaces import is_initial
from dind.paths import (
    ATTR_CURRENT,
    IP_FORWARD,
    PROC_SELF_STATUS,
    PROC_SELF_UID_MAP,
    SECURITYFS,
    SYS_FS_CGROUP,
    TMP,
    UNIFIED,
)
from dind.plan import Plan, plan_kernel
from dind.policy import DONE
from dind.settings import Settings

MOUNT_PROC = "run the check where /proc is mounted (docker does)"


def _v1_writable(env: Env) -> bool | None:
    """Whether every v1 hierarchy under /sys/fs/cgroup is mounted read-write."""
    if env.mounts is None:
        return None
    options = [
        m.mount_options.split(",")
        for m in env.mounts.mounts
        if m.fstype == "cgroup" and m.mountpoint.startswith(SYS_FS_CGROUP + "/")
    ]
    return None if not options else all("rw" in o for o in options)


def _cgroup(env: Env, found: Findings, skip: frozenset[str]) -> dict[str, object]:
    snap = env.snap
    v2_root = {"v2": SYS_FS_CGROUP, "hybrid": UNIFIED}.get(env.mode)
    v2 = None if v2_root is None else snap.text(f"{v2_root}/cgroup.controllers")
    v2_controllers = None if v2 is None else v2.split()
    v1 = [
        c
        for h in env.hierarchies or []
        for c in (*h.controllers, *(["name=" + h.name] if h.name else []))
    ]
    writable = snap.writable.get(SYS_FS_CGROUP) if env.mode == "v2" else _v1_writable(env)
    section: dict[str, object] = {
        "mode": env.mode,
        "sys_fs_cgroup": env.sys_fs_cgroup,
        "unified": env.unified,
        "hierarchies": [
            {
                "id": h.hierarchy_id,
                "controllers": list(h.controllers),
                "name": h.name,
                "path": h.path,
            }
            for h in env.hierarchies or []
        ],
        "controllers": {"v1": v1, "v2": v2_controllers},
        "writable": writable,
    }

    if env.hierarchies is None:
        found.blocker(
            "mode",
            env.mode,
            f"{env.hierarchies_error}: dind reads it to plan its cgroup mounts",
            MOUNT_PROC + ", or fix --proc-cgroup",
        )
    elif env.mode == "none":
        what = (
            "nothing mounted on /sys/fs/cgroup"
            if env.sys_fs_cgroup == "sysfs"
            else "/sys/fs/cgroup does not exist"
        )
        if steps.CGROUP_MOUNTS in skip:
            found.warning(
                "mode",
                "none",
                f"{what}, and cgroup-mounts is skipped: a nested dockerd finds no cgroup "
                '("Devices cgroup isn\'t mounted")',
                "do not --skip cgroup-mounts",
            )
        else:
            found.ok(
                "mode",
                "none",
                f"{what}: a nested runtime finds the hierarchies dind mounts under the cgroup "
                "root (it looks them up in mountinfo)",
            )
    else:
        kernel_v1 = sum(not h.unified for h in env.hierarchies)
        meaning = {
            "v2": "/sys/fs/cgroup is cgroup2 (unified mode): a nested dockerd creates its "
            "groups there, and dind's cgroup-nesting step delegates the controllers"
            + (
                f"; the kernel also has {kernel_v1} v1 hierarchies, which dind mounts"
                if kernel_v1
                else ""
            ),
            "hybrid": "/sys/fs/cgroup is a tmpfs of v1 hierarchies, with cgroup2 at "
            "/sys/fs/cgroup/unified; dind mounts every hierarchy of /proc/1/cgroup under "
            "the cgroup root for nested runtimes",
            "v1": "/sys/fs/cgroup holds v1 hierarchies only; dind mounts every hierarchy of "
            "/proc/1/cgroup under the cgroup root for nested runtimes",
        }[env.mode]
        found.ok("mode", env.mode, meaning)

    shown = ([f"v1: {' '.join(v1)}"] if v1 else []) + (
        [f"v2: {' '.join(v2_controllers) or '(none)'}"] if v2_controllers is not None else []
    )
    if env.mode == "v2" and v2_controllers == []:
        found.warning(
            "controllers",
            "; ".join(shown),
            "no controller is delegated to this cgroup2 tree: nested containers get no "
            "resource limits (docker run --memory or --cpus fail)",
            "enable controllers in the parent group's cgroup.subtree_control (outside)",
        )
    else:
        found.ok(
            "controllers", "; ".join(shown) or "unknown", "what nested containers can be limited by"
        )

    if writable is None:
        found.ok("writable", "unknown", "no cgroup filesystem is mounted under /sys/fs/cgroup")
    elif writable:
        found.ok("writable", "yes", "the cgroups under /sys/fs/cgroup can be written")
    elif (
        steps.CGROUP_REMOUNT not in skip
        and env.mounts is not None
        and cgroup1.plan_remount(env.mounts, SYS_FS_CGROUP)
    ):
        found.ok(
            "writable",
            "no (read-only)",
            "the cgroups under /sys/fs/cgroup are mounted read-only (systemd-nspawn does, and "
            "a nested runtime uses the first mount of each controller it finds); dind's "
            "cgroup-remount step remounts them read-write (outcome: see the plan)",
        )
    elif env.mode == "v2":
        found.blocker(
            "writable",
            "no (read-only)",
            "/sys/fs/cgroup is cgroup2 and read-only: neither dind's nesting nor a nested "
            "dockerd can create groups or move processes",
            env.fix(requirements.SYS_ADMIN.key) + ", and do not --skip cgroup-remount",
        )
    else:
        found.warning(
            "writable",
            "no (read-only)",
            "the v1 hierarchies under /sys/fs/cgroup are mounted read-only; dind mounts "
            "writable ones under the cgroup root, but a nested runtime that finds these "
            "first in mountinfo cannot create its groups",
            env.fix(requirements.SYS_ADMIN.key) + ", and do not --skip cgroup-remount",
        )
    return section


def _namespaces(
    env: Env, found: Findings, facts: Facts | None, skip: frozenset[str]
) -> dict[str, object]:
    snap = env.snap
    pid_initial = is_initial("pid", env.link("pid"))
    pid = {None: "unknown", True: "host", False: "private"}[pid_initial]
    user = {None: "unknown", True: "child", False: "initial"}[env.user_ns]
    inside, landing = (None, "no plan could be made") if facts is None else confine.landing(facts)
    section: dict[str, object] = {
        "cgroup": env.cgroupns,
        "cgroup_evidence": env.cgroupns_evidence,
        "pid": pid,
        "user": user,
        "links": {k: v.link for k, v in snap.namespaces.items()},
        "owners": {k: v.owner for k, v in snap.namespaces.items() if k != "user"},
        "nested_cgroups": {None: "unknown", True: "inside", False: "outside"}[inside],
        "nested_cgroups_evidence": landing,
    }
    found.ok("cgroup", env.cgroupns, env.cgroupns_evidence)
    confines = steps.CGROUP_CONFINE not in skip and facts is not None and facts.cgroupns
    if inside is False and confines:
        found.ok(
            "nested_cgroups",
            "outside, confined by dind",
            f"nested containers would land outside this container's cgroup ({landing}); "
            "dind's cgroup-confine step gives itself a cgroup namespace rooted at this "
            "container's group, so they land inside it (outcome: see the plan)",
        )
    elif inside is False:
        why = "--skip cgroup-confine" if steps.CGROUP_CONFINE in skip else "no cgroup namespaces"
        found.warning(
            "nested_cgroups",
            f"outside ({why})",
            f"nested containers would land outside this container's cgroup ({landing}): "
            "outside its limits, unseen by its accounting",
            "do not --skip cgroup-confine"
            if steps.CGROUP_CONFINE in skip
            else "a kernel with cgroup namespaces; dind dockerd then passes --cgroup-parent",
        )
    elif inside is None:
        found.warning(
            "nested_cgroups",
            "unknown",
            f"where nested containers' cgroups would land cannot be told: {landing}",
            "run the check where /proc is mounted",
        )
    else:
        found.ok("nested_cgroups", "inside", landing)
    meaning = {
        "host": "the initial PID namespace (the host itself, or docker run --pid host): "
        "the host's processes are visible here",
        "private": "a PID namespace of its own: only this container's processes are visible",
        "unknown": "/proc/self/ns/pid could not be read",
    }[pid]
    found.ok("pid", pid, meaning)
    return section


def _privilege(env: Env, found: Findings, judged: abilities.Assessment) -> dict[str, object]:
    """The level this container runs at, what nested Docker can do there, and each missing
    piece with the least option that grants it in this runtime's words (dind.privilege)."""
    snap = env.snap
    facts = env.privilege
    root_outside = facts.root_outside
    rootless = snap.euid != 0
    sysbox = env.mounts is not None and any(
        m.source == "sysboxfs" or "sysboxfs" in m.fstype for m in env.mounts.mounts
    )
    can_mount, why = env.can_mount()
    uid_text = snap.text(PROC_SELF_UID_MAP)
    uid_map = None if uid_text is None else " ".join(uid_text.split())
    section: dict[str, object] = {
        "level": judged.level,
        "level_evidence": judged.why,
        "nested": {
            a.name: {"can": a.can, "why": a.why, "missing": list(a.missing), "host": a.host}
            for a in judged.abilities
        },
        "euid": snap.euid,
        "cap_sys_admin": env.sys_admin,
        **facts.to_json(),  # effective and bounding capabilities by name among them
        "uid_map": uid_map,
        "rootless": rootless,
        "sysbox": sysbox,
        "can_mount": can_mount,
    }
    found.ok("level", judged.level, judged.why)

    if env.sys_admin is None:
        found.warning(
            "cap_sys_admin", "unknown", f"{PROC_SELF_STATUS} could not be read", MOUNT_PROC
        )
    elif not env.sys_admin:
        found.blocker(
            "cap_sys_admin",
            "CAP_SYS_ADMIN missing",
            "dind mounts filesystems (cgroup hierarchies, tmpfs, securityfs), and a nested "
            "dockerd mounts and creates namespaces: both need CAP_SYS_ADMIN",
            env.fix(requirements.SYS_ADMIN.key),
        )
    for blocker in judged.blockers:
        if blocker.name in ("cap_sys_admin", "apparmor", "ip_forward"):
            continue  # said above, by the lsm area with the profile, by the network area
        requirement = requirements.BY_KEY[blocker.key]
        fix = requirements.fix(env.runtime, (blocker.key,), {blocker.key: blocker.items})
        found.blocker(blocker.name, blocker.what, requirement.why, fix)

    nested = judged.ability(abilities.NESTED_PRIVILEGED)
    if nested.can is False and judged.ability(abilities.RUN).can is not False:
        if nested.host:
            fix = (
                "nothing outside this container helps: the host lacks them; make the nested "
                "runtime drop them (a runc wrapper)"
            )
        elif nested.missing:
            fix = env.fix(*nested.missing)
            last = requirements.last_resort(env.runtime)
            if fix != last:
                fix += f" (every capability and every device: {last} in all but name)"
        else:
            fix = "a container outside a user namespace, with every capability and device"
        found.warning(
            "nested_privileged",
            "no",
            f"nested `docker run --privileged` fails here: {nested.why}",
            fix,
        )
    limits = judged.ability(abilities.LIMITS)
    if limits.can is False and judged.ability(abilities.RUN).can is not False:
        found.warning(
            "resource_limits",
            "no",
            limits.why,
            "mount or delegate a memory controller to this container (outside)",
        )

    if env.user_ns:
        found.warning(
            "user_namespace",
            f"yes (uid_map {uid_map})",
            "root here is root only in a user namespace: nested containers get no host "
            "devices, no host-wide sysctls and no AppArmor profile (securityfs cannot be "
            "mounted); nested --privileged containers are privileged within it at most",
            "nothing, for nested run, build, ports and limits; host devices and nested "
            "privileged containers exist only outside a user namespace: "
            + requirements.last_resort(env.runtime),
        )
        if env.owner("mnt") == "ancestor":
            found.blocker(
                "mount_namespace",
                "owned by an ancestor user namespace",
                "this mount namespace was created outside the current user namespace: no "
                "mount is allowed here, whatever the capabilities",
                "create the mount (and cgroup) namespace inside the user namespace "
                "(unshare --user --mount --cgroup ...)",
            )
    elif env.user_ns is None:
        found.warning(
            "user_namespace",
            "unknown",
            "neither /proc/self/ns/user nor uid_map could be read",
            MOUNT_PROC,
        )
    if sysbox:
        found.warning(
            "sysbox",
            "yes (sysboxfs mounts)",
            "a Sysbox system container: Sysbox prepares cgroups, /proc and /sys for a nested "
            "dockerd itself, and dind's steps do not apply",
            "run dockerd directly, without dind",
        )
    if rootless:
        where = f", root is UID {root_outside} outside" if env.user_ns else ""
        found.warning(
            "rootless",
            f"yes (euid {snap.euid}{where})",
            "an unprivileged (rootless) setup: dind's steps need root and do not apply",
            "use dockerd-rootless.sh (rootlesskit) instead of dind, or run dind as root",
        )
    if can_mount is None:
        found.warning("can_mount", "unknown", why, MOUNT_PROC)
    return section


def _rootless_privilege(
    env: Env, found: Findings, judged: abilities.Assessment
) -> dict[str, object]:
    """The privilege area for the rootless daemon (``--rootless``): the same facts and level,
    but a rootful daemon's requirements are not judged: the rootless area
    (dind.rootless.check) says what the rootless daemon needs, and its limits."""
    section = _privilege(env, Findings(found.area), judged)  # the rootful findings, unsaid
    found.ok("level", judged.level, judged.why)
    if env.sys_admin is False:
        found.ok(
            "cap_sys_admin",
            "CAP_SYS_ADMIN missing",
            "not needed by the rootless daemon: dind skips its mount steps, and the daemon "
            "mounts in rootlesskit's namespaces",
        )
    if env.snap.euid != 0:
        found.ok("rootless", f"yes (euid {env.snap.euid})", "the rootless daemon: see its area")
    return section


def _mounts(
    env: Env, found: Findings, plan: Plan | None, skip: frozenset[str]
) -> dict[str, object]:
    mounts = env.mounts
    if mounts is None:
        found.blocker(
            "mountinfo",
            "unreadable",
            f"{env.mounts_error}: dind decides what is mounted from it",
            MOUNT_PROC + ", or fix --mountinfo",
        )
        return {"root_propagation": None, "securityfs": None, "securityfs_dir": None, "tmp": None}
    root = mounts.covering("/")
    propagation = None if root is None else root.propagation
    sec = mounts.at(SECURITYFS)
    securityfs = sec is not None and sec.fstype == "securityfs"
    tmp = mounts.at(TMP)
    section: dict[str, object] = {
        "root_propagation": propagation,
        "securityfs": securityfs,
        "securityfs_dir": env.snap.evidence.securityfs_dir,
        "tmp": None if tmp is None else tmp.fstype,
    }
    planned_steps = {a.step for a in ([] if plan is None else plan.actions)}

    if root is not None and root.shared:
        found.ok(
            "root_propagation",
            propagation or "",
            "/ is shared: mounts propagate to nested containers",
        )
    elif steps.RSHARED in planned_steps:
        found.ok(
            "root_propagation",
            propagation or "unknown",
            "/ is not shared; dind's rshared step makes it shared (outcome: see the plan)",
        )
    else:
        found.warning(
            "root_propagation",
            propagation or "unknown",
            "/ is not shared and the rshared step is skipped: `docker run -v SRC:DST:rshared` "
            "fails inside, and mounts do not propagate to nested containers",
            f"do not --skip {steps.RSHARED}",
        )

    apparmor = env.apparmor
    if securityfs:
        found.ok("securityfs", "mounted", "a nested dockerd can load AppArmor profiles through it")
    elif steps.SECURITYFS in planned_steps:
        found.ok(
            "securityfs",
            "not mounted",
            "dind's securityfs step mounts it (outcome: see the plan)",
        )
    else:
        why = f"--skip {steps.SECURITYFS}" if steps.SECURITYFS in skip else f"no {SECURITYFS}"
        if apparmor:
            found.warning(
                "securityfs",
                f"not mounted ({why})",
                "AppArmor is enabled, but a nested dockerd cannot see it without securityfs: "
                "nested containers run without an AppArmor profile",
                f"do not --skip {steps.SECURITYFS}"
                if steps.SECURITYFS in skip
                else env.fix(requirements.SYS_ADMIN.key),
            )
        else:
            found.ok(
                "securityfs",
                f"not mounted ({why})",
                "only AppArmor needs it, and it is not enabled",
            )

    if tmp is not None:
        found.ok("tmp", f"mount point ({tmp.fstype})", "/tmp is a filesystem of its own")
    else:
        step = (
            "; dind's tmp step mounts a tmpfs there (outcome: see the plan)"
            if steps.TMP in planned_steps
            else ""
        )
        found.ok("tmp", "not a mount point", f"/tmp is on the root filesystem{step}")
    return section


def _processes(
    env: Env, found: Findings, rows: list[dict[str, object]] | None
) -> dict[str, object]:
    snap = env.snap
    init = snap.processes.get(1)
    pid1: dict[str, object] | None = None
    if init is not None:
        pid1 = {**init.to_json(), "is_self": snap.pid == 1}
        command = " ".join(init.cmdline) or init.name or init.error or "unknown"
        what = "this check itself" if snap.pid == 1 else repr(command)
        found.ok(
            "pid1",
            init.name or init.error or "unknown",
            f"PID 1 is {what}; a nested dockerd wants an init that reaps orphans "
            "(dind --init, tini, or docker run --init)",
        )
    root_group: dict[str, object] | None = None
    nesting = [r for r in rows or [] if r["step"] == steps.CGROUP_NESTING]
    if nesting:
        outcome = nesting[0]["outcome"]
        pids = [
            int(p)
            for p in procfs.words(snap.text(f"{SYS_FS_CGROUP}/cgroup.procs"))
            if p.isascii() and p.isdigit()
        ]
        outside = pids.count(0)
        described = [snap.processes[p].to_json() for p in pids if p in snap.processes]
        root_group = {
            "path": SYS_FS_CGROUP,
            "count": len(pids),
            "outside_pid_namespace": outside,
            "processes": described,
        }
        names = ", ".join(f"{d['pid']} {d['name']}" for d in described[:5])
        value = f"{len(pids)} process(es)" + (f": {names}" if names else "")
        value += ", ..." if len(described) > 5 else ""
        if outcome == DONE:
            found.ok(
                "root_group",
                value,
                "every controller is already delegated: nesting is done and moves nothing",
            )
        elif outside:
            found.warning(
                "root_group",
                value,
                f"{outside} of them are outside this PID namespace (pid 0): they cannot be "
                "moved from here, so nesting fails with EBUSY",
                "give the container its own PID namespace (no --pid host), or move those "
                "processes out from outside",
            )
        elif env.cgroupns == "host":
            found.warning(
                "root_group",
                value,
                "these are the host's processes: nesting would move them into init/",
                "docker run --cgroupns private, or --skip cgroup-nesting",
            )
        else:
            found.ok(
                "root_group",
                value,
                f"nesting moves them into {SYS_FS_CGROUP}/init, so that the root group can "
                "delegate its controllers",
            )
    else:
        if env.mode != "v2":
            why = "nesting runs only when /sys/fs/cgroup is cgroup2"
        else:
            why = "no plan could be made" if rows is None else "cgroup-nesting is skipped"
        found.ok("root_group", "none to move", f"dind moves no process: {why}")
    return {"pid1": pid1, "root_group": root_group}


def iptables_support(snap: Snapshot, module: str, config_key: str) -> str:
    """``loaded``, ``built-in``, ``module`` (loadable), ``absent`` or ``unknown``."""
    proc_modules = snap.text("/proc/modules")
    if module in snap.sys_modules or (
        proc_modules is not None and module in procfs.loaded_modules(proc_modules)
    ):
        return "loaded"
    config = procfs.kernel_config(snap.text(KERNEL_CONFIG) or "")
    builtin = snap.text(snap.modules_builtin)
    if config.get(config_key) == "y" or (
        builtin is not None and module in procfs.listed_modules(builtin)
    ):
        return "built-in"
    dep = snap.text(snap.modules_dep)
    if config.get(config_key) == "m" or (dep is not None and module in procfs.listed_modules(dep)):
        return "module"
    return "absent" if config.get(config_key) == "n" else "unknown"


def _network(
    env: Env, found: Findings, skip: frozenset[str], rootless: bool = False
) -> dict[str, object]:
    """The outer network namespace (iptables, forwarding). The rootless daemon
    (``rootless``) forwards in rootlesskit's own namespace instead: its /proc needs are
    judged in the rootless area."""
    snap = env.snap
    legacy = {family: procfs.words(snap.text(path)) for family, path in TABLE_NAMES.items()}
    in_use = [f"{family}/{name}" for family, names in legacy.items() for name in names]
    nf_tables = iptables_support(snap, "nf_tables", "CONFIG_NF_TABLES")
    ip_tables = iptables_support(snap, "ip_tables", "CONFIG_IP_NF_IPTABLES")
    if snap.text(TABLE_NAMES["ip"]) is not None:
        ip_tables = "loaded"  # ip_tables itself creates /proc/net/ip_tables_names
    usable = ("loaded", "built-in", "module")
    if in_use or (nf_tables not in usable and ip_tables in usable):
        backend = "legacy"
    elif nf_tables in usable:
        backend = "nf_tables"
    else:
        backend = "unknown" if "unknown" in (nf_tables, ip_tables) else "none"
    forward = snap.text(IP_FORWARD)
    forward = None if forward is None else forward.strip()
    forward_writable = snap.writable.get(IP_FORWARD)
    section: dict[str, object] = {
        "backend": backend,
        "nf_tables": nf_tables,
        "ip_tables": ip_tables,
        "legacy_tables": legacy,
        "ip_forward": forward,
        "ip_forward_writable": forward_writable,
        "cap_net_admin": procfs.has_cap(env.cap_eff, "CAP_NET_ADMIN"),
    }
    value = f"{backend} (nf_tables {nf_tables}, ip_tables {ip_tables})"
    if in_use and steps.IPTABLES not in skip:
        found.ok(
            "iptables",
            value,
            f"legacy iptables tables exist in this network namespace ({' '.join(in_use)}); "
            "dind dockerd gives dockerd the backend whose tables hold rules (see daemon)",
        )
    elif in_use:
        found.warning(
            "iptables",
            value,
            f"legacy iptables tables are in use in this network namespace ({' '.join(in_use)}): "
            "a nested dockerd must use iptables-legacy too, or its rules and these ignore "
            "each other",
            "do not --skip iptables (dind dockerd then chooses), or point the image's iptables "
            "to iptables-legacy (update-alternatives --set iptables /usr/sbin/iptables-legacy)",
        )
    elif backend in ("none", "unknown"):
        found.warning(
            "iptables",
            value,
            "the kernel has neither nf_tables nor ip_tables: a nested dockerd cannot set up "
            "bridge networking"
            if backend == "none"
            else "neither /proc/modules, the module lists nor the kernel config tell which "
            "iptables backend this kernel has",
            "start the nested dockerd with --iptables=false (and --bridge=none) if it fails",
        )
    else:
        tool = "iptables-nft" if backend == "nf_tables" else "iptables-legacy"
        found.ok("iptables", value, f"a nested dockerd can use {tool}; no legacy tables are in use")
    stuck = env.forward_stuck(skip)
    if forward == "1":
        found.ok("ip_forward", "1", "IP forwarding is on: nested containers can reach out")
    elif forward == "0" and forward_writable:
        found.ok(
            "ip_forward", "0 (writable)", "a nested dockerd turns it on at start (--ip-forward)"
        )
    elif forward == "0" and forward_writable is False and stuck is None:
        found.ok(
            "ip_forward",
            "0 (read-only)",
            "dind's net-sysctls step makes /proc/sys/net writable (this container's own "
            "network namespace); a nested dockerd then turns forwarding on at start "
            "(outcome: see the plan)",
        )
    elif forward == "0" and forward_writable is False and rootless:
        found.ok(
            "ip_forward",
            "0 (read-only)",
            "the rootless daemon forwards in rootlesskit's network namespace, not this one",
        )
    elif forward == "0" and forward_writable is False:
        why = (
            "--skip net-sysctls"
            if steps.NET_SYSCTLS in skip
            else "dind cannot make /proc/sys/net writable here"
        )
        found.blocker(
            "ip_forward",
            f"0 (read-only; {why})",
            "IP forwarding is off and /proc/sys is read-only: a nested dockerd stops at start "
            "('Enabling IP forwarding failed: ... read-only file system')",
            "do not --skip net-sysctls"
            if steps.NET_SYSCTLS in skip
            else env.fix(requirements.SYS_ADMIN.key),
        )
    else:
        found.warning(
            "ip_forward",
            "unknown" if forward is None else f"{forward} (writable: unknown)",
            "whether IP forwarding is on, or can be turned on, could not be read: a nested "
            "dockerd stops at start if it is off and cannot turn it on",
            MOUNT_PROC,
        )
    return section


def _lsm(env: Env, found: Findings) -> dict[str, object]:
    snap = env.snap
    active = active_lsms(snap)
    apparmor = env.apparmor
    label = procfs.security_label(snap.text(ATTR_CURRENT))
    enforce = snap.text("/sys/fs/selinux/enforce")
    selinux: bool | None
    if active is not None:
        selinux = "selinux" in active
    elif enforce is not None or (label is not None and label.count(":") >= 3 and not apparmor):
        selinux = True  # selinuxfs, or a context shaped user:role:type:level
    elif ATTR_CURRENT in snap.errors:
        selinux = False  # EINVAL: no LSM provides a current label
    else:
        selinux = None
    enforcing = None if enforce is None else enforce.strip() == "1"
    profile = env.apparmor_profile
    section: dict[str, object] = {
        "active": active,
        "apparmor": {"enabled": apparmor, "profile": profile},
        "selinux": {
            "enabled": selinux,
            "enforcing": enforcing,
            "label": label if selinux else None,
        },
    }

    if apparmor:
        value = f"enabled, profile {profile or 'unknown'}"
        if denies_mount(profile):
            found.blocker(
                "apparmor",
                value,
                f"this process is confined by {profile}, which denies mount(2): every dind "
                "step fails with EACCES",
                env.fix(requirements.APPARMOR.key),
            )
        elif profile not in (None, "unconfined"):
            found.warning(
                "apparmor",
                value,
                f"this process is confined by {profile}, which may deny mounts",
                env.fix(requirements.APPARMOR.key),
            )
        else:
            found.ok(
                "apparmor",
                value,
                "AppArmor is on and this process is unconfined; a nested dockerd loads "
                "docker-default for its containers through securityfs",
            )
    else:
        found.ok(
            "apparmor",
            "unknown" if apparmor is None else "not enabled",
            "whether AppArmor is enabled could not be read"
            if apparmor is None
            else "no AppArmor profile confines mounts here",
        )
    if selinux:
        state = "" if enforcing is None else ", enforcing" if enforcing else ", permissive"
        value = f"enabled{state}" + (f", label {label}" if label else "")
        if label is not None and ":container_t:" in label and enforcing is not False:
            found.warning(
                "selinux",
                value,
                "this process runs as container_t, which denies most mounts and cgroup writes",
                env.fix(requirements.SELINUX.key),
            )
        else:
            found.ok("selinux", value, "SELinux is on; this process's label does not confine dind")
    else:
        found.ok(
            "selinux",
            "unknown" if selinux is None else "not enabled",
            "whether SELinux is enabled could not be read"
            if selinux is None
            else "no SELinux policy confines mounts here",
        )
    return section


def _runtime(env: Env, found: Findings) -> dict[str, object]:
    """Which runtime, from what evidence (whether runc can join a session keyring here is the
    privilege area's to judge)."""
    snap = env.snap
    keyring = snap.keyring
    section: dict[str, object] = {
        "name": env.runtime,
        "evidence": env.runtime_evidence,
        "container": snap.runtime.get("pid1_container"),
        "keyring": keyring,
    }
    found.ok("name", env.runtime, "; ".join(env.runtime_evidence))
    return section


def _daemon(env: Env, found: Findings, settings: Settings) -> dict[str, object] | None:
    """What ``dind dockerd`` would decide here, with the evidence: the daemon steps' plan."""
    from dind.daemon.plan import plan_daemon

    evidence = env.snap.evidence.daemon
    if evidence is None:
        return None
    daemon = settings.replace(command=["dockerd", *settings.dockerd_args], dockerd_args=())
    try:
        facts = from_evidence(env.snap.evidence, daemon, everything=True)
    except DindError as err:
        found.blocker("dockerd", "cannot plan", str(err), "see the message")
        return None
    plan = plan_daemon(facts, daemon, plan_kernel(facts, daemon)[0])
    rows = [
        {"step": a.step, "describe": a.describe(), "status": a.status, "note": a.note}
        for a in plan.actions
    ]
    backends = evidence.iptables
    section: dict[str, object] = {
        "dockerd": plan.argv,
        "steps": rows,
        "iptables_rules": {k: b.rules for k, b in backends.items()},
        "data_root_fs": evidence.data_root_fs,
        "mtu": evidence.mtus,
        "tls": evidence.tls_state,
    }
    for step, warning in plan.warnings:  # named as the plan area names them: a step may also
        # have a finding of its own below (iptables: a warning and a conflict)
        found.warning(
            f"{step}-warning", warning, "dind says so before dockerd starts", "see the message"
        )
    reported = set(steps.ROOTLESS_STEPS)  # judged in the rootless area (dind.rootless.check)
    for a in plan.actions:
        if a.step in reported:
            continue
        reported.add(a.step)
        if a.status == REFUSED:
            found.blocker(a.step, a.describe(), a.note, "see the message")
        elif a.status == CONFLICT:
            found.warning(
                a.step, a.describe(), f"{a.note}; dind warns and goes on", "see the message"
            )
        else:
            done = "already so" if a.status == SATISFIED else "dind dockerd does this"
            found.ok(a.step, a.describe(), f"{done}: {a.note}" if a.note else done)
    return section


def analyse(snap: Snapshot, settings: Settings) -> Report:
    """The whole report for ``snap``, honouring ``--skip`` and ``--strict`` as a real run would."""
    env = Env(snap)
    skip = settings.skip
    try:
        facts: Facts | None = from_evidence(snap.evidence, settings, everything=True)
    except DindError:
        facts = None
    found = {area: Findings(area) for area in AREAS}
    sections: dict[str, object] = {}
    sections["runtime"] = _runtime(env, found["runtime"])
    sections["cgroup"] = _cgroup(env, found["cgroup"], skip)
    sections["namespaces"] = _namespaces(env, found["namespaces"], facts, skip)
    judged = env.assess(skip)
    privilege = _rootless_privilege if settings.rootless else _privilege
    sections["privilege"] = privilege(env, found["privilege"], judged)
    rows, plan = plan_area(env, found["plan"], settings)
    sections["mounts"] = _mounts(env, found["mounts"], plan, skip)
    sections["plan"] = rows
    sections["processes"] = _processes(env, found["processes"], rows)
    sections["network"] = _network(env, found["network"], skip, settings.rootless)
    sections["daemon"] = _daemon(env, found["daemon"], settings)
    from dind.rootless.check import rootless_area

    sections["rootless"] = rootless_area(env, found["rootless"], settings)
    sections["lsm"] = _lsm(env, found["lsm"])
    return Report(sections, [f for area in AREAS for f in found[area].items])
