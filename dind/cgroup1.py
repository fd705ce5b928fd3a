"""cgroup v1 (and hybrid): each hierarchy of /proc/1/cgroup mounted under the cgroup root.

The 2015 hack/dind mounted hierarchies exactly as the host had them, because
nested runtimes (LXC then, runc now) look controllers up by directory name:
``cpu,cpuacct`` co-mounted needs ``cpu`` and ``cpuacct`` symlinks, and systemd's
inverted ``cpuacct,cpu`` also needs ``cpu,cpuacct``.
"""

from __future__ import annotations

from dind import steps
from dind.actions import CONFLICT, PENDING, SATISFIED, Action, MakeDir, Mount, Remount, Symlink
from dind.errors import ParseError
from dind.status import dir_status, mount_status
from dind.syscalls import MS_NODEV, MS_NOEXEC, MS_NOSUID

TYPE_CHECKING = False
if TYPE_CHECKING:
    from dind.mountinfo import MountTable
    from dind.proccgroup import Hierarchy

STEP = steps.CGROUP_MOUNTS
ROOT_OPTIONS = "uid=0,gid=0,mode=0755"
UNIFIED_DIR = "unified"


def plan_mounts(
    hierarchies: list[Hierarchy],
    root: str,
    mounts: MountTable,
    root_entries: dict[str, str] | None,
    source: str,
) -> list[Action]:
    """Actions for a v1 or hybrid layout, in /proc/1/cgroup order.

    ``root_entries`` lists what already is in the cgroup root (``dir``,
    ``link:TARGET`` or ``other``), or is None when the root does not exist.
    """
    actions: list[Action] = [MakeDir(STEP, root, PENDING if root_entries is None else SATISFIED)]
    top = mounts.at(root)
    entries = root_entries or {}
    if top is None:
        status, note = PENDING, ""
        entries = {}  # the new tmpfs hides whatever is there now
    elif top.fstype in ("cgroup", "cgroup2"):
        # Directories made inside a cgroup filesystem are cgroups, not mount points.
        status = CONFLICT
        note = (
            f"{top.fstype} is mounted there; v1 hierarchies need a plain directory tree "
            "(choose another --cgroup-root)"
        )
    else:
        status, note = SATISFIED, f"{top.fstype} already mounted"
    actions.append(Mount(STEP, "cgroup", root, "tmpfs", ROOT_OPTIONS, status=status, note=note))
    if status == CONFLICT:
        return actions

    claimed: dict[str, int] = {}

    def claim(name: str, lineno: int) -> str:
        if name in claimed:
            raise ParseError(source, lineno, f"{root}/{name} would also serve line {claimed[name]}")
        claimed[name] = lineno
        return f"{root}/{name}"

    for h in hierarchies:
        if h.unified:
            continue
        name = h.directory
        target = claim(name, h.lineno)
        status, note = dir_status(name, entries)
        actions.append(MakeDir(STEP, target, status, note))
        if status == CONFLICT:
            continue
        items = frozenset(h.options.split(","))
        status, note = mount_status(mounts, target, "cgroup", items)
        actions.append(Mount(STEP, "cgroup", target, "cgroup", h.options, status=status, note=note))
        links = [c for c in h.controllers if c != name]
        if name == "cpuacct,cpu":
            links.append("cpu,cpuacct")
        for link in links:
            path = claim(link, h.lineno)
            kind = entries.get(link)
            if kind is None:
                actions.append(Symlink(STEP, path, name))
            elif kind == f"link:{name}":
                actions.append(Symlink(STEP, path, name, SATISFIED, "link already there"))
            else:
                actions.append(
                    Symlink(
                        STEP,
                        path,
                        name,
                        CONFLICT,
                        f"{path} already exists and is not a link to {name}",
                    )
                )

    unified = [h for h in hierarchies if h.unified]
    if unified:
        target = claim(UNIFIED_DIR, unified[0].lineno)
        status, note = dir_status(UNIFIED_DIR, entries)
        actions.append(MakeDir(STEP, target, status, note))
        if status != CONFLICT:
            status, note = mount_status(mounts, target, "cgroup2", frozenset())
            actions.append(Mount(STEP, "cgroup2", target, "cgroup2", status=status, note=note))
    return actions


def devices_warnings(hierarchies: list[Hierarchy]) -> list[str]:
    """The 2015 script's warnings: nested runtimes need ``devices`` in a hierarchy of its own."""
    for h in hierarchies:
        if "devices" in h.controllers:
            if len(h.options.split(",")) > 1:
                return [
                    f'the "devices" cgroup should be in its own hierarchy (it shares {h.options})'
                ]
            return []
    return [
        'it looks like the "devices" cgroup is not mounted (no devices hierarchy in '
        "/proc/1/cgroup); nested containers cannot be confined"
    ]


_KEPT_FLAGS = {"nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC}
"""Per-mount flags a bind remount must repeat, or it clears them (atime flags are kept)."""


def kept_flags(options: list[str]) -> tuple[int, list[str]]:
    """The flags and names of ``options`` (a mount's, from mountinfo) a bind remount repeats."""
    kept = [o for o in options if o in _KEPT_FLAGS]
    flags = 0
    for o in kept:
        flags |= _KEPT_FLAGS[o]
    return flags, kept


def plan_remount(mounts: MountTable, under: str) -> list[Action]:
    """Read-only cgroup mounts at or below ``under``, remounted read-write.

    systemd-nspawn mounts the v1 controllers read-only under /sys/fs/cgroup, and
    runc uses the first mount of each controller it finds in mountinfo: writable
    copies elsewhere (the cgroup root) do not help it.
    """
    actions: list[Action] = []
    for m in mounts.mounts:
        if m.fstype not in ("cgroup", "cgroup2") or not mounts.visible(m):
            continue
        if not (m.mountpoint == under or m.mountpoint.startswith(under + "/")):
            continue
        options = m.mount_options.split(",")
        if "ro" not in options:
            continue
        flags, kept = kept_flags(options)
        actions.append(
            Remount(
                steps.CGROUP_REMOUNT,
                m.mountpoint,
                flags,
                ",".join(["remount", "bind", "rw", *kept]),
                note=f"{m.fstype} ({m.super_options}) is mounted read-only",
            )
        )
    return actions
