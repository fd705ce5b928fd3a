"""What detection read (``Evidence``, raw) and what planning may use (``Facts``, parsed).

``from_evidence`` is pure: ``dind`` calls it on what ``dind.detect`` just read,
``--check`` on the same reader's output or on a capture of another system, so
both plan from the same facts by the same rules.
"""

from __future__ import annotations

from dind import mountinfo, namespaces, paths, proccgroup, steps
from dind.errors import ParseError, SetupError
from dind.mountinfo import MountTable
from dind.procfile import unreadable
from dind.record import Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from dind.daemon.facts import DaemonEvidence, DaemonFacts
    from dind.privilege import Privilege
    from dind.proccgroup import Hierarchy
    from dind.rootless.facts import RootlessEvidence
    from dind.settings import Settings


class Evidence(Record):
    """What detection read, uninterpreted: texts, statfs answers, listings, links.

    ``files`` holds texts by their canonical path (``/proc/1/cgroup`` even when read
    from ``--proc-cgroup``); ``errors`` says why a file could not be read (an errno
    name, ``EFBIG`` or ``not-regular``).
    """

    __slots__ = (
        "captured",
        "cgroup_root",
        "container",
        "daemon",
        "errors",
        "files",
        "links",
        "mountinfo_source",
        "probes",
        "proc_cgroup_source",
        "root_entries",
        "root_symlink",
        "rootless",
        "securityfs_dir",
        "statfs",
        "tmp_entries",
    )

    def __init__(
        self,
        *,
        files: dict[str, str],
        errors: dict[str, str] | None = None,
        statfs: dict[str, str | None] | None = None,
        cgroup_root: str = paths.DEFAULT_CGROUP_ROOT,
        root_entries: dict[str, str] | None = None,
        root_symlink: str | None = None,
        tmp_entries: tuple[str, ...] = (),
        securityfs_dir: bool = True,
        container: str | None = None,
        proc_cgroup_source: str = paths.PROC_1_CGROUP,
        mountinfo_source: str = paths.MOUNTINFO,
        links: dict[str, str | None] | None = None,
        captured: bool = False,
        daemon: DaemonEvidence | None = None,
        probes: dict[str, str | None] | None = None,
        rootless: RootlessEvidence | None = None,
    ) -> None:
        self.files = files
        self.errors = errors or {}
        self.statfs = statfs or {}
        self.cgroup_root = cgroup_root
        self.root_entries = root_entries
        self.root_symlink = root_symlink
        self.tmp_entries = tmp_entries
        self.securityfs_dir = securityfs_dir
        self.container = container
        self.proc_cgroup_source = proc_cgroup_source
        self.mountinfo_source = mountinfo_source
        self.links = links or {}
        self.captured = captured
        self.daemon = daemon
        self.probes = probes or {}
        """Answers that are not files (``--check`` only): the keyring and pivot_root probes,
        /dev/net/tun and /dev/fuse (``char MAJ:MIN``, ``missing``, ``other``), the owner of
        this container's cgroup as seen here (``cgroup_owner``)."""
        self.rootless = rootless

    def text(self, path: str) -> str | None:
        return self.files.get(path)


class Facts(Record):
    """Everything planning depends on, and nothing else."""

    __slots__ = (
        "cgroup2_controllers",
        "cgroup2_subtree",
        "cgroup_root",
        "cgroupns",
        "container",
        "daemon",
        "hierarchies",
        "host",
        "host_evidence",
        "mounts",
        "own_cgroups",
        "privilege",
        "proc_cgroup",
        "root_entries",
        "rootless",
        "securityfs_dir",
        "sys_fs_cgroup",
        "tmp_entries",
    )

    def __init__(
        self,
        *,
        hierarchies: list[Hierarchy],
        mounts: MountTable,
        proc_cgroup: str = paths.PROC_1_CGROUP,
        cgroup_root: str = paths.DEFAULT_CGROUP_ROOT,
        root_entries: dict[str, str] | None = None,
        sys_fs_cgroup: str | None = "tmpfs",
        cgroup2_controllers: tuple[str, ...] | None = None,
        cgroup2_subtree: tuple[str, ...] | None = None,
        securityfs_dir: bool = True,
        tmp_entries: tuple[str, ...] = (),
        container: str | None = None,
        own_cgroups: list[Hierarchy] | None = None,
        cgroupns: bool = True,
        host: bool | None = False,
        host_evidence: str = "",
        daemon: DaemonFacts | None = None,
        privilege: Privilege | None = None,
        rootless: RootlessEvidence | None = None,
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
        self.own_cgroups = own_cgroups
        self.cgroupns = cgroupns
        self.host = host
        self.host_evidence = host_evidence
        self.daemon = daemon
        self.privilege = privilege
        """The facts that decide privilege (dind.privilege); None for a capture of another
        system, whose own were not read."""
        self.rootless = rootless
        """The rootless daemon's evidence (``DIND_ROOTLESS``), judged by ``dind.rootless``."""

    @property
    def pure_v2(self) -> bool:
        """/proc/1/cgroup has only the ``0::`` line: no v1 hierarchy to mount."""
        return all(h.unified for h in self.hierarchies)


def cgroup_root_problem(root: str, symlink: str | None) -> str | None:
    """Why ``root`` cannot be the cgroup root, or None: dind never mounts through a symlink,
    nor over the kernel's own trees (/sys/fs/cgroup, cgroups' own place, excepted)."""
    for tree in paths.KERNEL_TREES:
        if paths.under(root, tree) and not paths.under(root, paths.SYS_FS_CGROUP):
            return f"the cgroup root {root} lies in {tree}, a kernel-provided tree"
    if symlink is not None:
        return (
            f"the cgroup root {root} goes through a symlink ({symlink}); "
            "dind never mounts through a symlink: give the real path"
        )
    return None


def _words(text: str | None) -> tuple[str, ...] | None:
    return None if text is None else tuple(text.split())


def _required(ev: Evidence, key: str, source: str, what: str, limit: int) -> str:
    text = ev.text(key)
    if text is None:
        raise unreadable(source, ev.errors.get(key, "ENOENT"), what, limit)
    return text


def from_evidence(ev: Evidence, settings: Settings, *, everything: bool = False) -> Facts:
    """Pure: the evidence parsed and reduced to what planning may use under ``--skip``.

    Raises ParseError or SetupError for what a real run must stop at (an unreadable
    or malformed /proc/1/cgroup or mountinfo, a cgroup root through a symlink).
    ``everything`` parses what a skipped step would not need (``--check``).
    """
    skip = frozenset() if everything else settings.skip
    mounting = not skip.issuperset(steps.MOUNTING)
    hierarchies: list[Hierarchy] = []
    if steps.CGROUP_MOUNTS not in skip:
        text = _required(
            ev, paths.PROC_1_CGROUP, ev.proc_cgroup_source, "cgroup file", proccgroup.MAX_SIZE
        )
        hierarchies = proccgroup.parse(text, ev.proc_cgroup_source)
    mounts = MountTable([])
    if mounting:
        source = settings.mountinfo
        text = _required(ev, paths.MOUNTINFO, source, "mountinfo file", mountinfo.MAX_SIZE)
        mounts = MountTable(mountinfo.parse(text, source))

    root = ev.cgroup_root
    if steps.CGROUP_MOUNTS not in skip:
        problem = cgroup_root_problem(root, ev.root_symlink)
        if problem:
            raise SetupError(problem, step=steps.CGROUP_MOUNTS)

    cgroupfs = ev.statfs.get(paths.SYS_FS_CGROUP)
    nesting = cgroupfs == "cgroup2" and steps.CGROUP_NESTING not in skip
    own: list[Hierarchy] | None = None
    # A capture of another system has no /proc/self/cgroup of ours: PID 1's stands for it
    # (in a container, dind is PID 1 or shares its group).
    own_text = ev.text(paths.PROC_1_CGROUP if ev.captured else paths.PROC_SELF_CGROUP)
    if own_text is not None and steps.CGROUP_CONFINE not in skip:
        try:
            own = proccgroup.parse(own_text, paths.PROC_SELF_CGROUP)
        except ParseError:
            own = None  # confinement then says it cannot tell; the run goes on
    host, host_evidence = (None, "a capture of another system is planned")
    if not ev.captured:
        host, host_evidence = namespaces.host_mount_namespace(
            ev.links.get("self/pid"),
            ev.links.get("self/mnt"),
            ev.links.get("1/mnt"),
            ev.text(paths.MOUNTINFO),
            ev.text("/proc/1/mountinfo"),
        )
    daemon = None
    if ev.daemon is not None and settings.daemon_mode:
        from dind.daemon.facts import daemon_facts

        daemon = daemon_facts(ev.daemon, settings)
    privilege = None
    if not ev.captured:
        from dind.privilege import from_evidence as privilege_facts

        privilege = privilege_facts(ev, mounts if mounting else None)
    return Facts(
        hierarchies=hierarchies,
        mounts=mounts,
        proc_cgroup=ev.proc_cgroup_source,
        cgroup_root=root,
        root_entries=None if steps.CGROUP_MOUNTS in skip else ev.root_entries,
        sys_fs_cgroup=cgroupfs,
        cgroup2_controllers=_words(ev.text(f"{paths.SYS_FS_CGROUP}/cgroup.controllers"))
        if nesting
        else None,
        cgroup2_subtree=_words(ev.text(f"{paths.SYS_FS_CGROUP}/cgroup.subtree_control"))
        if nesting
        else None,
        securityfs_dir=ev.securityfs_dir,
        tmp_entries=ev.tmp_entries
        if steps.TMP not in skip and mounts.at(paths.TMP) is None
        else (),
        container=ev.container,
        own_cgroups=own,
        cgroupns=ev.links.get("self/cgroup") is not None,
        host=host,
        host_evidence=host_evidence,
        daemon=daemon,
        privilege=privilege,
        rootless=ev.rootless if settings.rootless else None,
    )
