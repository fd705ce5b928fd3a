"""Detection: read /proc, statfs and a few directories into ``Facts`` for planning.

Only reads; never changes anything, so ``--dry-run`` and ``--check`` can share it.
"""

from __future__ import annotations

import os

from dind import mountinfo, proccgroup
from dind.plan import SECURITYFS, SYS_FS_CGROUP, TMP, Facts
from dind.procfile import read_text
from dind.settings import DEFAULT_MOUNTINFO
from dind.syscalls import FS_NAMES, statfs_type

TYPE_CHECKING = False
if TYPE_CHECKING:
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


def _words(path: str) -> tuple[str, ...] | None:
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return tuple(f.read().split())
    except OSError:
        return None


def detect(settings: Settings) -> Facts:
    """Gather what the plan needs; skipped steps are not even looked at."""
    skip = settings.skip
    hierarchies = []
    if "cgroup-mounts" not in skip:
        text = read_text(settings.proc_cgroup, proccgroup.MAX_SIZE, "cgroup file")
        hierarchies = proccgroup.parse(text, settings.proc_cgroup)
    mounts = mountinfo.MountTable([])
    if not skip.issuperset(("securityfs", "tmp", "cgroup-mounts", "rshared")):
        text = read_text(settings.mountinfo, mountinfo.MAX_SIZE, "mountinfo file")
        mounts = mountinfo.MountTable(mountinfo.parse(text, settings.mountinfo))

    if settings.mountinfo == DEFAULT_MOUNTINFO:
        cgroupfs = fs_type(SYS_FS_CGROUP)
    else:
        # A captured system: its own mount table records what /sys/fs/cgroup was.
        top = mounts.at(SYS_FS_CGROUP)
        cgroupfs = None if top is None else top.fstype
    controllers = subtree = None
    if cgroupfs == "cgroup2" and "cgroup-nesting" not in skip:
        controllers = _words(f"{SYS_FS_CGROUP}/cgroup.controllers")
        subtree = _words(f"{SYS_FS_CGROUP}/cgroup.subtree_control")

    root = os.path.realpath(settings.cgroup_root)
    root_entries = None
    if "cgroup-mounts" not in skip:
        root_entries = list_entries(root)

    tmp_entries: tuple[str, ...] = ()
    if "tmp" not in skip and mounts.at(TMP) is None:
        tmp_entries = tuple(sorted(list_entries(TMP, TMP_SHOWN) or ()))

    return Facts(
        hierarchies=hierarchies,
        mounts=mounts,
        proc_cgroup=settings.proc_cgroup,
        cgroup_root=root,
        root_entries=root_entries,
        sys_fs_cgroup=cgroupfs,
        cgroup2_controllers=controllers,
        cgroup2_subtree=subtree,
        securityfs_dir=os.path.isdir(SECURITYFS),
        tmp_entries=tmp_entries,
        container=os.environ.get("container") or None,
    )
