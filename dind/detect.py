"""Detection: read /proc, statfs and a few directories into ``Facts`` for planning.

Only reads; never changes anything, so ``--dry-run`` and ``--check`` can share it.
"""

from __future__ import annotations

import os

from dind import mountinfo, proccgroup
from dind.mountinfo import MountTable
from dind.plan import SECURITYFS, SYS_FS_CGROUP, TMP, Facts
from dind.procfile import read_text
from dind.settings import DEFAULT_MOUNTINFO
from dind.syscalls import FS_NAMES, statfs_type

TYPE_CHECKING = False
if TYPE_CHECKING:
    from dind.proccgroup import Hierarchy
    from dind.settings import Settings

TMP_SHOWN = 4
"""Names of /tmp entries kept for the warning; counting further is not needed."""


def fs_type(path: str) -> str | None:
    """Filesystem type of ``path`` by statfs magic; None if it does not exist."""
    try:
        magic = statfs_type(path)
    except OSError:
        return None
    return FS_NAMES.get(magic, f"0x{magic:x}")


def list_entries(path: str, limit: int | None = None) -> dict[str, str] | None:
    """Map each entry to ``dir``, ``link:TARGET`` or ``other``; None if ``path`` is missing."""
    try:
        it = os.scandir(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    entries: dict[str, str] = {}
    with it:
        for entry in it:
            if entry.is_symlink():
                try:
                    entries[entry.name] = "link:" + os.readlink(entry.path)
                except OSError:
                    entries[entry.name] = "other"
            else:
                entries[entry.name] = "dir" if entry.is_dir(follow_symlinks=False) else "other"
            if limit is not None and len(entries) >= limit:
                break
    return entries


def _read_optional(path: str) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def filesystem_types(paths: tuple[str, ...], captured: MountTable | None) -> dict[str, str | None]:
    """Filesystem type of each path: statfs magic on the live system; for a captured
    mount table, the type that table records (the kernel's own record of the same thing).
    """
    if captured is None:
        return {path: fs_type(path) for path in paths}
    types: dict[str, str | None] = {}
    for path in paths:
        top = captured.at(path)
        types[path] = None if top is None else top.fstype
    return types


def facts_from(
    skip: frozenset[str],
    *,
    hierarchies: list[Hierarchy],
    mounts: MountTable,
    proc_cgroup: str,
    sys_fs_cgroup: str | None,
    controllers: str | None,
    subtree: str | None,
    cgroup_root: str,
    root_entries: dict[str, str] | None,
    securityfs_dir: bool,
    tmp_entries: tuple[str, ...],
    container: str | None,
) -> Facts:
    """Pure: what was read, reduced to what planning may use under ``skip``.

    ``--check`` calls this with a snapshot's data, so its plan follows the same rules.
    """
    mount_steps = ("securityfs", "tmp", "cgroup-mounts", "rshared")
    nesting = sys_fs_cgroup == "cgroup2" and "cgroup-nesting" not in skip
    return Facts(
        hierarchies=[] if "cgroup-mounts" in skip else hierarchies,
        mounts=MountTable([]) if skip.issuperset(mount_steps) else mounts,
        proc_cgroup=proc_cgroup,
        cgroup_root=cgroup_root,
        root_entries=None if "cgroup-mounts" in skip else root_entries,
        sys_fs_cgroup=sys_fs_cgroup,
        cgroup2_controllers=tuple(controllers.split())
        if nesting and controllers is not None
        else None,
        cgroup2_subtree=tuple(subtree.split()) if nesting and subtree is not None else None,
        securityfs_dir=securityfs_dir,
        tmp_entries=tmp_entries if "tmp" not in skip and mounts.at(TMP) is None else (),
        container=container,
    )


def detect(settings: Settings) -> Facts:
    """Read what the plan needs (skipped steps are not even looked at), then ``facts_from``."""
    skip = settings.skip
    hierarchies: list[Hierarchy] = []
    if "cgroup-mounts" not in skip:
        text = read_text(settings.proc_cgroup, proccgroup.MAX_SIZE, "cgroup file")
        hierarchies = proccgroup.parse(text, settings.proc_cgroup)
    mounts = MountTable([])
    if not skip.issuperset(("securityfs", "tmp", "cgroup-mounts", "rshared")):
        text = read_text(settings.mountinfo, mountinfo.MAX_SIZE, "mountinfo file")
        mounts = MountTable(mountinfo.parse(text, settings.mountinfo))
    captured = mounts if settings.mountinfo != DEFAULT_MOUNTINFO else None
    cgroupfs = filesystem_types((SYS_FS_CGROUP,), captured)[SYS_FS_CGROUP]
    controllers = subtree = None
    if cgroupfs == "cgroup2" and "cgroup-nesting" not in skip:
        controllers = _read_optional(f"{SYS_FS_CGROUP}/cgroup.controllers")
        subtree = _read_optional(f"{SYS_FS_CGROUP}/cgroup.subtree_control")
    root = os.path.realpath(settings.cgroup_root)
    tmp_entries: tuple[str, ...] = ()
    if "tmp" not in skip and mounts.at(TMP) is None:
        tmp_entries = tuple(sorted(list_entries(TMP, TMP_SHOWN) or ()))
    return facts_from(
        skip,
        hierarchies=hierarchies,
        mounts=mounts,
        proc_cgroup=settings.proc_cgroup,
        sys_fs_cgroup=cgroupfs,
        controllers=controllers,
        subtree=subtree,
        cgroup_root=root,
        root_entries=None if "cgroup-mounts" in skip else list_entries(root),
        securityfs_dir=os.path.isdir(SECURITYFS),
        tmp_entries=tmp_entries,
        container=os.environ.get("container") or None,
    )
