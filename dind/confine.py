"""cgroup confinement: where nested containers' cgroups would land, and keeping them inside. Pure.

A nested runtime puts its containers at ``<mount>/docker/<id>`` of the first
mount of each controller it finds in mountinfo (runc's rule); the group that is
is the mount's root plus that path. When that root lies above dind's own group
(the host's cgroup namespace with hierarchies mounted from the host's root, as
under ``ctr run`` or in privileged Kubernetes pods), nested containers land
beside the container, outside its limits.

dind's answer: ``unshare --cgroup`` before the cgroup mounts, so every hierarchy
mounted afterwards has dind's own group as its root; mounts already on
/sys/fs/cgroup that show a tree above it are replaced (detached, then mounted
again in the new namespace). Without cgroup namespaces, dockerd mode passes
``--cgroup-parent`` instead.
"""

from __future__ import annotations

from dind import paths, steps
from dind.actions import CONFLICT, SATISFIED, Action, Mount, Umount, UnshareCgroup
from dind.cgroup2 import NEST_GROUP

TYPE_CHECKING = False
if TYPE_CHECKING:
    from dind.facts import Facts
    from dind.mountinfo import MountEntry
    from dind.proccgroup import Hierarchy


def container_group(h: Hierarchy) -> str:
    """The container's group in hierarchy ``h``: dind's own, less the nesting group.

    cgroup v2 nesting moves every process (dind too) into ``init/`` of the
    container's group; that group is still the container's, not a new place to
    confine to (``dind -- dind`` must confine once).
    """
    suffix = "/" + NEST_GROUP
    if h.unified and h.path.endswith(suffix):
        return h.path[: -len(suffix)] or "/"
    return h.path


def inside(root: str, own: str) -> bool:
    """A group made below ``root`` lies inside ``own``: ``root`` is ``own`` or below it."""
    return paths.under(root, own)


def _own_for(m: MountEntry, own: list[Hierarchy]) -> Hierarchy | None:
    """The line of /proc/self/cgroup that a cgroup mount belongs to."""
    if m.fstype == "cgroup2":
        return next((h for h in own if h.unified), None)
    tokens = set(m.super_options.split(","))
    return next((h for h in own if not h.unified and set(h.options.split(",")) <= tokens), None)


def _found_first(facts: Facts) -> list[MountEntry]:
    """The mounts a nested runtime would use: the first visible one of each hierarchy."""
    found: list[MountEntry] = []
    seen: set[str] = set()
    for m in facts.mounts.mounts:
        if m.fstype not in ("cgroup", "cgroup2") or not facts.mounts.visible(m):
            continue
        key = m.fstype if m.fstype == "cgroup2" else m.super_options
        if key not in seen:
            seen.add(key)
            found.append(m)
    return found


def landing(facts: Facts) -> tuple[bool | None, str]:
    """Whether nested containers' cgroups would land inside dind's own group (before dind acts).

    None when it cannot be told (no /proc/self/cgroup). With no cgroup mounted yet,
    the hierarchies dind mounts under the cgroup root are what the runtime finds:
    their root is the root of this cgroup namespace.
    """
    own = facts.own_cgroups
    if own is None:
        return None, "/proc/self/cgroup could not be read"
    away = [h for h in own if container_group(h) != "/"]
    if not away:
        return True, "dind is at the root of its cgroup namespace (/proc/self/cgroup: /)"
    for m in _found_first(facts):
        h = _own_for(m, own)
        if h is not None and not inside(m.root, container_group(h)):
            return False, (
                f"{m.mountpoint} shows the tree from {m.root}, above this container's "
                f"group {container_group(h)}: nested containers would land at "
                f"{m.root.rstrip('/')}/docker/..."
            )
    if not _found_first(facts):
        return False, (
            "no cgroup filesystem is mounted yet and this container's group is "
            f"{container_group(away[0])}: the hierarchies mounted here would show the whole "
            "tree from its root"
        )
    return True, f"the cgroup mounts here start at this container's group ({away[0].path})"


def plan_confine(facts: Facts) -> list[Action]:
    """``unshare --cgroup`` when nested cgroups could land outside, and the mounts to replace."""
    step = steps.CGROUP_CONFINE
    own = facts.own_cgroups
    if own is None:
        return [
            UnshareCgroup(
                step,
                CONFLICT,
                "/proc/self/cgroup could not be read: where nested cgroups "
                "land cannot be told, so the cgroup namespace is left as it is",
            )
        ]
    away = [h for h in own if h.path != "/"]
    if not away:
        return [UnshareCgroup(step, SATISFIED, "already at the root of its cgroup namespace")]
    if not facts.cgroupns:
        return [
            UnshareCgroup(
                step,
                CONFLICT,
                "this kernel has no cgroup namespaces (/proc/self/ns/cgroup); "
                "in dockerd mode dind passes --cgroup-parent instead",
            )
        ]
    actions: list[Action] = [
        UnshareCgroup(
            step, note=f"this container's group {container_group(away[0])} becomes the root"
        )
    ]
    for m in facts.mounts.mounts:
        if m.fstype not in ("cgroup", "cgroup2") or not facts.mounts.visible(m):
            continue
        if not paths.under(m.mountpoint, paths.SYS_FS_CGROUP):
            continue
        h = _own_for(m, own)
        if h is None or inside(m.root, container_group(h)):
            continue
        note = f"shows the tree from {m.root}, above {container_group(h)}"
        actions.append(Umount(step, m.mountpoint, note=note))
        data = "" if h.unified else h.options
        actions.append(Mount(step, m.fstype, m.mountpoint, m.fstype, data))
    return actions


def replaces_sys_fs_cgroup(actions: list[Action]) -> bool:
    """Whether the plan mounts /sys/fs/cgroup anew (what was read of it no longer holds)."""
    return any(
        isinstance(a, Mount) and a.target == paths.SYS_FS_CGROUP and a.step == steps.CGROUP_CONFINE
        for a in actions
    )


def cgroup_parent(facts: Facts) -> str | None:
    """``--cgroup-parent`` for dockerd when no namespace can be had: below dind's own group."""
    own = facts.own_cgroups or []
    path = next((h.path for h in own if "memory" in h.controllers), None)
    path = path or next((h.path for h in own if h.path != "/"), None)
    if path is None or path == "/":
        return None
    return path.rstrip("/") + "/docker"
