"""The snapshot parsed once into what every area of the report asks about. Pure.

The questions that need care live here: which cgroup layout /sys/fs/cgroup has,
whether the cgroup namespace is the host's, whether mount(2) is allowed at all,
and whether AppArmor is on.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TypeVar

from dind import mountinfo, proccgroup, procfs, requirements
from dind.abilities import Assessment, assess
from dind.check.model import Snapshot
from dind.check.runtime import identify
from dind.errors import DindError
from dind.namespaces import is_initial
from dind.paths import (
    ATTR_APPARMOR,
    ATTR_CURRENT,
    IP_FORWARD,
    MOUNTINFO,
    PROC_1_CGROUP,
    PROC_SELF_CGROUP,
    PROC_SELF_STATUS,
    PROC_SELF_UID_MAP,
    SYS_FS_CGROUP,
    UNIFIED,
)
from dind.privilege import from_evidence as privilege_facts
from dind.procfile import unreadable
from dind.steps import NET_SYSCTLS

T = TypeVar("T")

CGROUP_FS = ("cgroup", "cgroup2")


class Env:
    """What the report knows about the process that gathered the snapshot."""

    def __init__(self, snap: Snapshot) -> None:
        self.snap = snap
        status = procfs.status_fields(snap.text(PROC_SELF_STATUS) or "")
        self.cap_eff = procfs.cap_mask(status.get("CapEff"))
        self.sys_admin = procfs.has_cap(self.cap_eff, "CAP_SYS_ADMIN")

        uid_text = snap.text(PROC_SELF_UID_MAP)
        self.uid_map = None if uid_text is None else procfs.id_map(uid_text)
        initial = is_initial("user", self.link("user"))
        if initial is None and self.uid_map is not None:
            initial = self.uid_map == procfs.FULL_ID_MAP
        self.user_ns: bool | None = None if initial is None else not initial
        """True in a user namespace other than the initial one; None when unknown."""

        self.mounts, self.mounts_error = _mount_table(snap)
        self.hierarchies, self.hierarchies_error = _hierarchies(snap)
        # Only a clue for the namespace verdict: "unknown" covers its absence.
        self.own_cgroups: list[proccgroup.Hierarchy] | None = None
        with contextlib.suppress(DindError):
            self.own_cgroups = proccgroup.parse(snap.text(PROC_SELF_CGROUP) or "", "self")

        fs_text = snap.text("/proc/filesystems")
        self.filesystems = None if fs_text is None else procfs.filesystems(fs_text)
        self.sys_fs_cgroup = snap.evidence.statfs.get(SYS_FS_CGROUP)
        self.unified = snap.evidence.statfs.get(UNIFIED)
        self.mode = cgroup_mode(self.sys_fs_cgroup, self.unified)
        self.init_at_root = bool(self.hierarchies) and all(
            h.path == "/" for h in self.hierarchies or []
        )
        """PID 1 is in the root group of every hierarchy: the host itself, not a container."""
        self.cgroupns, self.cgroupns_evidence = cgroup_namespace(
            self.link("cgroup"), self.own_cgroups, self.mounts, self.init_at_root
        )
        self.runtime, self.runtime_evidence = identify(snap, self.hierarchies, self.mounts)
        """The runtime that started this container (dind.check.runtime), and why we think so."""
        self.apparmor = apparmor_enabled(snap)
        """AppArmor is on: decided here alone (None when it cannot be told)."""
        self.apparmor_profile = apparmor_profile(snap) if self.apparmor else None
        self.privilege = privilege_facts(snap.evidence, self.mounts, self.owner("net"))
        """The facts that decide privilege, read by dind.detect (dind.privilege)."""

    def assess(self, skip: frozenset[str]) -> Assessment:
        """The level and what nested Docker can do at it (with ``--skip`` as a run would)."""
        return assess(
            self.privilege,
            apparmor_denies=denies_mount(self.apparmor_profile),
            limits=self.memory_controller(),
            can_mount=self.can_mount()[0],
            dockerd_stops=self.forward_stuck(skip),
        )

    def forward_stuck(self, skip: frozenset[str]) -> str | None:
        """Why a nested dockerd stops at start on IP forwarding, or None: forwarding is off,
        /proc/sys read-only, and dind's net-sysctls step cannot make it writable."""
        forward = (self.snap.text(IP_FORWARD) or "").strip()
        if forward != "0" or self.snap.writable.get(IP_FORWARD) is not False:
            return None
        if NET_SYSCTLS in skip:
            return "ip_forward is 0 and read-only, and net-sysctls is skipped"
        if self.privilege.net_host is True:
            return "ip_forward is 0 and read-only in the host's network namespace"
        if self.can_mount()[0] is False:
            return "ip_forward is 0 and read-only, and dind cannot mount to make it writable"
        return None

    def fix(self, *keys: str) -> str:
        """The least grants of ``keys`` (dind.requirements) in this runtime's words: the
        least option that fixes the finding, never ``--privileged`` where less does."""
        return requirements.fix(self.runtime, keys)

    def memory_controller(self) -> bool | None:
        """Whether nested containers can be given a memory limit here (a memory controller
        in /proc/1/cgroup, or in cgroup.controllers of a unified /sys/fs/cgroup)."""
        if self.mode == "v2":
            text = self.snap.text(f"{SYS_FS_CGROUP}/cgroup.controllers")
            return None if text is None else "memory" in text.split()
        if self.hierarchies is None:
            return None
        return any("memory" in h.controllers for h in self.hierarchies)

    def link(self, kind: str) -> str | None:
        ns = self.snap.namespaces.get(kind)
        return None if ns is None else ns.link

    def owner(self, kind: str) -> str | None:
        ns = self.snap.namespaces.get(kind)
        return None if ns is None else ns.owner

    def can_mount(self) -> tuple[bool | None, str]:
        """Whether mount(2) is allowed here at all, and if not (or unknown), why."""
        if self.sys_admin is False:
            return False, "no CAP_SYS_ADMIN"
        if self.user_ns and self.owner("mnt") == "ancestor":
            return False, (
                "the mount namespace belongs to an ancestor user namespace, where this "
                "root has no capabilities"
            )
        if self.sys_admin is None:
            return None, "CapEff could not be read"
        if self.user_ns is None or (self.user_ns and self.owner("mnt") is None):
            return None, "the owner of the mount namespace could not be determined"
        return True, ""


def _mount_table(snap: Snapshot) -> tuple[mountinfo.MountTable | None, str]:
    source = snap.evidence.mountinfo_source
    return _parsed(
        snap, MOUNTINFO, source, "mountinfo file", mountinfo.MAX_SIZE,
        lambda text: mountinfo.MountTable(mountinfo.parse(text, source)),
    )  # fmt: skip


def _hierarchies(snap: Snapshot) -> tuple[list[proccgroup.Hierarchy] | None, str]:
    source = snap.evidence.proc_cgroup_source
    return _parsed(
        snap, PROC_1_CGROUP, source, "cgroup file", proccgroup.MAX_SIZE,
        lambda text: proccgroup.parse(text, source),
    )  # fmt: skip


def _parsed(
    snap: Snapshot, path: str, source: str, kind: str, limit: int, parse: Callable[[str], T]
) -> tuple[T | None, str]:
    """``parse`` of the captured ``path``, or None and the one line that says why not."""
    text = snap.text(path)
    if text is None:
        why = snap.errors.get(path, "ENOENT")
        return None, str(unreadable(source, why, kind, limit))
    try:
        return parse(text), ""
    except DindError as err:
        return None, str(err)


def cgroup_mode(sys_fs_cgroup: str | None, unified: str | None) -> str:
    """``v2`` when /sys/fs/cgroup is cgroup2, ``hybrid`` with cgroup2 at .../unified, else ``v1``.

    ``none`` when nothing is mounted there (statfs shows sysfs itself, as under ``ctr
    run`` or LXC here) or it does not exist. This is the view of this mount namespace:
    a hybrid kernel can show a pure v2 view (container-v2-view).
    """
    if sys_fs_cgroup == "cgroup2":
        return "v2"
    if sys_fs_cgroup in (None, "sysfs"):
        return "none"
    return "hybrid" if unified == "cgroup2" else "v1"


def _hierarchy_of(
    m: mountinfo.MountEntry, hierarchies: list[proccgroup.Hierarchy]
) -> proccgroup.Hierarchy | None:
    if m.fstype == "cgroup2":
        return next((h for h in hierarchies if h.unified), None)
    tokens = set(m.super_options.split(","))
    return next(
        (h for h in hierarchies if not h.unified and set(h.options.split(",")) <= tokens), None
    )


def cgroup_namespace(
    link: str | None,
    own: list[proccgroup.Hierarchy] | None,
    mounts: mountinfo.MountTable | None,
    init_at_root: bool = False,
) -> tuple[str, str]:
    """``host``, ``private`` or ``unknown``, with the evidence in words.

    The kernel's own answer is the namespace's number: the initial cgroup namespace
    always has PROC_CGROUP_INIT_INO. Mounts add two clues. A root shown as ``/..``
    means the mounted tree starts above this namespace's root: private. A root equal
    to this process's own group means the namespace shows the container's place in
    a larger tree (docker's ``--cgroupns host``). ``0::/`` alone proves nothing: the
    host's own root group shows it too.
    """
    escaped: list[mountinfo.MountEntry] = []
    above: list[mountinfo.MountEntry] = []
    for m in [] if mounts is None else mounts.mounts:
        if m.fstype not in CGROUP_FS:
            continue
        if m.root == "/.." or m.root.startswith("/../"):
            escaped.append(m)
            continue
        h = None if own is None else _hierarchy_of(m, own)
        if m.root != "/" and h is not None and (h.path + "/").startswith(m.root + "/"):
            above.append(m)
    initial = is_initial("cgroup", link)
    if initial:
        where = "; PID 1 is in the root group: this is the host itself" if init_at_root else ""
        return "host", f"{link} is the initial cgroup namespace{where}"
    if above:
        m = above[0]
        what = f"{m.mountpoint} is mounted from {m.root}, this process's own group"
        if initial is False:
            return "host", (
                f"{link} is not the initial namespace, but {what}: the namespace is "
                "the one of whoever started this container"
            )
        return "host", f"{what}: the namespace shows groups above this container"
    if initial is False:
        extra = ""
        if escaped:
            m = escaped[0]
            extra = f"; {m.mountpoint} (root {m.root}) was mounted from outside it"
        return "private", f"{link} is not the initial cgroup namespace{extra}"
    if escaped:
        m = escaped[0]
        return "private", f"{m.mountpoint} has root {m.root}: its tree starts above this namespace"
    return "unknown", (
        "/proc/self/ns/cgroup could not be read, and neither mount roots nor "
        "/proc/self/cgroup tell (0::/ is also what the host's own root group shows)"
    )


def _sysfs(snap: Snapshot) -> bool:
    """Whether /sys was there to look at (a missing file under it then means absent)."""
    return snap.evidence.statfs.get(SYS_FS_CGROUP) is not None or bool(snap.sys_modules)


def active_lsms(snap: Snapshot) -> list[str] | None:
    """/sys/kernel/security/lsm, the kernel's own list of active security modules."""
    text = snap.text("/sys/kernel/security/lsm")
    return None if text is None else [s for s in text.strip().split(",") if s]


def apparmor_enabled(snap: Snapshot) -> bool | None:
    """The one answer to "is AppArmor on": the LSM list, else the module's parameter."""
    active = active_lsms(snap)
    if active is not None:
        return "apparmor" in active
    enabled = snap.text("/sys/module/apparmor/parameters/enabled")
    if enabled is not None:
        return enabled.strip() == "Y"
    if "/sys/module/apparmor/parameters/enabled" in snap.errors or not _sysfs(snap):
        return None
    return False  # /sys/module/apparmor exists whenever AppArmor is built in


def apparmor_profile(snap: Snapshot) -> str | None:
    """The AppArmor profile confining this process (AppArmor being on)."""
    own = procfs.security_label(snap.text(ATTR_APPARMOR))
    if own is not None:
        return own
    return procfs.security_label(snap.text(ATTR_CURRENT))


def denies_mount(profile: str | None) -> bool:
    """docker-default, the profile of a non-privileged container, has a ``deny mount,`` rule."""
    return profile is not None and profile.startswith("docker-default") and "(enforce)" in profile
