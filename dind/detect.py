"""Detection: read what planning needs from the live system into ``Evidence``. Reads only.

``dind`` reads what its steps need (a skipped step's inputs are not even looked
at); ``--check`` reads everything through the same function, so both plan from
the same evidence by the same rules (``dind.facts.from_evidence``).
"""

from __future__ import annotations

import errno
import os

from dind import mountinfo, paths, proccgroup, steps
from dind.errors import DindError
from dind.facts import Evidence
from dind.mountinfo import MountTable
from dind.procfile import try_read
from dind.safepath import first_symlink, open_path
from dind.syscalls import fs_type

TYPE_CHECKING = False
if TYPE_CHECKING:
    from dind.settings import Settings

TMP_SHOWN = 4
"""Names of /tmp entries kept for the warning; counting further is not needed."""
PRIVILEGE_FILES = (
    paths.PROC_SELF_STATUS,
    paths.PROC_SELF_UID_MAP,
    paths.CAP_LAST_CAP,
    paths.DEVICES_LIST,
)
PRIVILEGE_LIMIT = 1 << 20
"""/proc/self/status is a few KiB; a devices list a few lines per device rule."""
MAX_FILE = 16 << 20
"""cgroup.procs of a busy host's root is the largest such file; 16 MiB is far above it."""


def list_entries(path: str, limit: int | None = None) -> dict[str, str] | None:
    """Map each entry to ``dir``, ``link:TARGET`` or ``other``; None if ``path`` is missing.

    The directory is opened without following symlinks (a symlinked ``path`` reads
    as missing: callers refuse it separately).
    """
    try:
        fd = open_path(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return None
    entries: dict[str, str] = {}
    try:
        with os.scandir(fd) as it:
            for entry in it:
                if entry.is_symlink():
                    try:
                        entries[entry.name] = "link:" + os.readlink(entry.name, dir_fd=fd)
                    except OSError:
                        entries[entry.name] = "other"
                else:
                    entries[entry.name] = "dir" if entry.is_dir(follow_symlinks=False) else "other"
                if limit is not None and len(entries) >= limit:
                    break
    finally:
        os.close(fd)
    return entries


def _link(path: str) -> str | None:
    try:
        return os.readlink(path)
    except OSError:
        return None


def _root_symlink(root: str) -> str | None:
    """The symlink on the way to ``root`` if there is one (ELOOP), else None."""
    try:
        os.close(open_path(root))
    except OSError as err:
        if err.errno == errno.ELOOP:
            return first_symlink(root) or root
    return None


def read(settings: Settings, *, everything: bool = False) -> Evidence:
    """Read the live system (and the captures ``--proc-cgroup``/``--mountinfo`` name)."""
    skip = frozenset() if everything else settings.skip
    files: dict[str, str] = {}
    errors: dict[str, str] = {}

    def take(key: str, path: str, limit: int = MAX_FILE) -> None:
        text, why = try_read(path, limit)
        if text is not None:
            files[key] = text
        elif why is not None and why != "ENOENT":
            errors[key] = why  # a missing file is simply absent

    if steps.CGROUP_MOUNTS not in skip:
        take(paths.PROC_1_CGROUP, settings.proc_cgroup, proccgroup.MAX_SIZE)
    captured = settings.mountinfo != paths.MOUNTINFO or settings.proc_cgroup != paths.PROC_1_CGROUP
    if not skip.issuperset(steps.MOUNTING) or everything:
        take(paths.MOUNTINFO, settings.mountinfo, mountinfo.MAX_SIZE)
    statfs = _filesystem_types(files.get(paths.MOUNTINFO), settings.mountinfo)
    if statfs.get(paths.SYS_FS_CGROUP) == "cgroup2" and (
        everything or steps.CGROUP_NESTING not in skip
    ):
        take(
            f"{paths.SYS_FS_CGROUP}/cgroup.controllers", f"{paths.SYS_FS_CGROUP}/cgroup.controllers"
        )
        take(
            f"{paths.SYS_FS_CGROUP}/cgroup.subtree_control",
            f"{paths.SYS_FS_CGROUP}/cgroup.subtree_control",
        )
    if steps.CGROUP_CONFINE not in skip and not captured:
        take(paths.PROC_SELF_CGROUP, paths.PROC_SELF_CGROUP, proccgroup.MAX_SIZE)
    links = {
        "self/cgroup": _link("/proc/self/ns/cgroup"),
        "self/mnt": _link("/proc/self/ns/mnt"),
        "self/pid": _link("/proc/self/ns/pid"),
        "self/user": _link("/proc/self/ns/user"),
        "self/net": _link("/proc/self/ns/net"),
        "1/mnt": _link("/proc/1/ns/mnt"),
    }
    probes: dict[str, str | None] = {}
    if not captured:
        # What decides privilege (dind.privilege): the steps a user namespace rules out, the
        # start-up warning and summary. A few small files; the probes are --check's alone.
        for path in PRIVILEGE_FILES:
            take(path, path, PRIVILEGE_LIMIT)
        if everything:
            for path in (paths.ATTR_APPARMOR, paths.ATTR_CURRENT):
                take(path, path, PRIVILEGE_LIMIT)
            from dind.probes import probe_all

            probes = probe_all()
    if not captured and links["1/mnt"] is None:
        take("/proc/1/mountinfo", "/proc/1/mountinfo", mountinfo.MAX_SIZE)
    root = settings.cgroup_root
    look_at_root = steps.CGROUP_MOUNTS not in skip
    tmp_entries: tuple[str, ...] = ()
    if steps.TMP not in skip:
        tmp_entries = tuple(sorted(list_entries(paths.TMP, TMP_SHOWN) or ()))
    return Evidence(
        files=files,
        errors=errors,
        statfs=statfs,
        cgroup_root=root,
        root_entries=list_entries(root) if look_at_root else None,
        root_symlink=_root_symlink(root) if look_at_root else None,
        tmp_entries=tmp_entries,
        securityfs_dir=os.path.isdir(paths.SECURITYFS),
        container=os.environ.get("container") or None,
        proc_cgroup_source=settings.proc_cgroup,
        mountinfo_source=settings.mountinfo,
        links=links,
        captured=captured,
        probes=probes,
    )


def _filesystem_types(table_text: str | None, source: str) -> dict[str, str | None]:
    """Filesystem types of /sys/fs/cgroup and .../unified: statfs magic on the live system;
    for a captured mount table, the type that table records (the kernel's own record)."""
    wanted = (paths.SYS_FS_CGROUP, paths.UNIFIED)
    if source == paths.MOUNTINFO:
        return {path: fs_type(path) for path in wanted}
    try:
        table = MountTable(mountinfo.parse(table_text or "", source))
    except DindError:
        return dict.fromkeys(wanted)
    types: dict[str, str | None] = {}
    for path in wanted:
        top = table.at(path)
        types[path] = None if top is None else top.fstype
    return types
