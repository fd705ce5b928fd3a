"""The raw inputs of ``--check``: read once from the live system, or loaded from a capture.

``gather`` is the only code that looks at the system: it reads files, statfs types,
access(2) answers, namespace links and processes, and interprets nothing. The
analyser works on the ``Snapshot`` alone, so the fixtures under
tests/fixtures/check/ (written by ``save`` inside real environments, see
``python -m dind.check.capture``) exercise the same code as a live run.

A capture directory holds each file at its own path (``proc/self/status``...) and
everything else in ``probes.json``.
"""

from __future__ import annotations

import errno
import json
import os

from dind.errors import DindError
from dind.record import Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from dind.settings import Settings

PROC_1_CGROUP = "/proc/1/cgroup"
MOUNTINFO = "/proc/self/mountinfo"
KERNEL_CONFIG = "/proc/config"
"""Not a kernel file: /proc/config.gz decompressed, only the options in ``CONFIG_KEYS``."""
SYS_FS_CGROUP = "/sys/fs/cgroup"
UNIFIED = "/sys/fs/cgroup/unified"
IP_FORWARD = "/proc/sys/net/ipv4/ip_forward"
TABLE_NAMES = {
    "ip": "/proc/net/ip_tables_names",
    "ip6": "/proc/net/ip6_tables_names",
    "arp": "/proc/net/arp_tables_names",
}
FILES = (
    "/proc/self/status",
    "/proc/self/uid_map",
    "/proc/self/cgroup",
    "/proc/filesystems",
    "/proc/modules",
    f"{SYS_FS_CGROUP}/cgroup.controllers",
    f"{SYS_FS_CGROUP}/cgroup.subtree_control",
    f"{SYS_FS_CGROUP}/cgroup.procs",
    f"{UNIFIED}/cgroup.controllers",
    *TABLE_NAMES.values(),
    IP_FORWARD,
    "/proc/sys/kernel/cap_last_cap",
    "/sys/kernel/security/lsm",
    "/sys/module/apparmor/parameters/enabled",
    "/sys/fs/selinux/enforce",
    "/proc/self/attr/current",
    "/proc/self/attr/apparmor/current",
)
"""Read as they are (besides /proc/1/cgroup, mountinfo and the filtered module lists)."""

NAMESPACES = ("cgroup", "mnt", "net", "pid", "user")
MODULES = frozenset(
    {"nf_tables", "nft_compat", "ip_tables", "ip6_tables", "x_tables", "apparmor", "selinux"}
)
"""Modules whose presence the report uses; module lists are filtered to these."""
CONFIG_KEYS = (
    "CONFIG_MODULES",
    "CONFIG_NF_TABLES",
    "CONFIG_NFT_COMPAT",
    "CONFIG_NETFILTER_XTABLES",
    "CONFIG_IP_NF_IPTABLES",
    "CONFIG_IP_NF_IPTABLES_LEGACY",
    "CONFIG_IP6_NF_IPTABLES",
    "CONFIG_SECURITYFS",
    "CONFIG_SECURITY_APPARMOR",
    "CONFIG_SECURITY_SELINUX",
    "CONFIG_LSM",
    "CONFIG_USER_NS",
)
MAX_FILE = 16 << 20
"""cgroup.procs of a busy host's root is the largest file read; 16 MiB is far above it."""
MAX_DETAILED = 64
"""Processes described by name; a host's root group may hold thousands."""
NS_GET_USERNS = 0xB701
"""ioctl_ns(2): _IO(0xb7, 0x1), the user namespace owning a namespace."""


class Proc(Record):
    """What psutil tells about one process (``error`` when it could not)."""

    __slots__ = ("cmdline", "error", "name", "pid", "ppid")

    def __init__(
        self,
        pid: int,
        name: str = "",
        cmdline: tuple[str, ...] = (),
        ppid: int | None = None,
        error: str | None = None,
    ) -> None:
        self.pid = pid
        self.name = name
        self.cmdline = cmdline
        self.ppid = ppid
        self.error = error

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"pid": self.pid, "name": self.name, "cmdline": list(self.cmdline)}
        if self.ppid is not None:
            out["ppid"] = self.ppid
        if self.error:
            out["error"] = self.error
        return out


class Namespace(Record):
    """This process's namespace of one kind: its link, and who owns it.

    ``owner`` is the owning user namespace relative to ours (ioctl NS_GET_USERNS):
    ``ours``, ``ancestor`` (EPERM: it lies outside our user namespace, where our
    capabilities do not count), ``descendant``, or None when unknown.
    """

    __slots__ = ("link", "owner")

    def __init__(self, link: str | None, owner: str | None = None) -> None:
        self.link = link
        self.owner = owner


class Snapshot(Record):
    """Everything ``--check`` looks at, uninterpreted."""

    __slots__ = (
        "cgroup_root",
        "container",
        "errors",
        "euid",
        "files",
        "namespaces",
        "pid",
        "proc_cgroup_source",
        "processes",
        "release",
        "root_entries",
        "securityfs_dir",
        "statfs",
        "sys_modules",
        "tmp_entries",
        "writable",
    )

    def __init__(
        self,
        *,
        files: dict[str, str],
        errors: dict[str, str] | None = None,
        statfs: dict[str, str | None] | None = None,
        writable: dict[str, bool] | None = None,
        namespaces: dict[str, Namespace] | None = None,
        euid: int = 0,
        pid: int = 0,
        processes: dict[int, Proc] | None = None,
        container: str | None = None,
        cgroup_root: str = "/cgroup",
        root_entries: dict[str, str] | None = None,
        tmp_entries: tuple[str, ...] = (),
        securityfs_dir: bool = True,
        sys_modules: tuple[str, ...] = (),
        release: str = "",
        proc_cgroup_source: str = PROC_1_CGROUP,
    ) -> None:
        self.files = files
        self.errors = errors or {}
        self.statfs = statfs or {}
        self.writable = writable or {}
        self.namespaces = namespaces or {}
        self.euid = euid
        self.pid = pid
        self.processes = processes or {}
        self.container = container
        self.cgroup_root = cgroup_root
        self.root_entries = root_entries
        self.tmp_entries = tmp_entries
        self.securityfs_dir = securityfs_dir
        self.sys_modules = sys_modules
        self.release = release
        self.proc_cgroup_source = proc_cgroup_source

    def text(self, path: str) -> str | None:
        """The captured text of ``path``; None when missing or unreadable."""
        return self.files.get(path)

    @property
    def modules_builtin(self) -> str:
        return f"/lib/modules/{self.release}/modules.builtin"

    @property
    def modules_dep(self) -> str:
        return f"/lib/modules/{self.release}/modules.dep"


# --- reading the live system -----------------------------------------------------


def _read(path: str, limit: int = MAX_FILE) -> tuple[str | None, str | None]:
    """(text, None), (None, errno name) when unreadable, or (None, None) when missing.

    Read in 64 KiB chunks: /proc/sys files answer ENOMEM to one huge read(2).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None, None
    except OSError as err:
        return None, errno.errorcode.get(err.errno or 0, str(err.errno))
    chunks: list[bytes] = []
    size = 0
    try:
        while chunk := os.read(fd, 65536):
            size += len(chunk)
            if size > limit:
                return None, "EFBIG"
            chunks.append(chunk)
    except OSError as err:
        return None, errno.errorcode.get(err.errno or 0, str(err.errno))
    finally:
        os.close(fd)
    return b"".join(chunks).decode("utf-8", "surrogateescape"), None


def _filtered(text: str, keep: frozenset[str]) -> str:
    """Lines of a modules.builtin/modules.dep whose module is in ``keep`` (the files are MBs)."""
    from dind.check.procfs import listed_modules

    return "".join(line + "\n" for line in text.splitlines() if listed_modules(line) & keep)


def _config() -> tuple[str | None, str | None]:
    import gzip

    try:
        with gzip.open("/proc/config.gz", "rt", encoding="utf-8", errors="replace") as f:
            lines = [
                line
                for line in f
                if any(line.startswith((k + "=", f"# {k} is not set")) for k in CONFIG_KEYS)
            ]
    except FileNotFoundError:
        return None, None
    except (OSError, EOFError) as err:
        return None, errno.errorcode.get(getattr(err, "errno", 0) or 0, "EIO")
    return "".join(lines), None


def _namespace(kind: str, own_user: int | None) -> Namespace:
    import fcntl

    path = f"/proc/self/ns/{kind}"
    try:
        link = os.readlink(path)
    except OSError:
        return Namespace(None)
    if kind == "user":
        return Namespace(link)  # its "owner" would be the parent user namespace
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return Namespace(link)
    try:
        owner_fd = fcntl.ioctl(fd, NS_GET_USERNS)
    except OSError as err:
        return Namespace(link, "ancestor" if err.errno == errno.EPERM else None)
    finally:
        os.close(fd)
    try:
        owner = os.fstat(owner_fd).st_ino
    finally:
        os.close(owner_fd)
    return Namespace(link, "ours" if owner == own_user else "descendant")


def _writable(path: str) -> bool:
    """access(2) W_OK with the effective IDs: False on a read-only mount (EROFS)."""
    effective = os.access in os.supports_effective_ids
    return os.access(path, os.W_OK, effective_ids=effective)


def _existing_ancestor(path: str) -> str:
    while not os.path.lexists(path):
        path = os.path.dirname(path)
    return path


def _processes(pids: list[int]) -> dict[int, Proc]:
    """Name and parent of each process; the command line of PID 1 only.

    The report may end up in CI logs: other processes' command lines (a host's, in
    its root group) are none of its business, while PID 1's is the container's
    identity, as ``ps`` shows it to anyone.
    """
    import psutil

    found: dict[int, Proc] = {}
    for pid in pids:
        try:
            p = psutil.Process(pid)
            with p.oneshot():
                cmdline = tuple(p.cmdline()) if pid == 1 else ()
                found[pid] = Proc(pid, p.name(), cmdline, p.ppid())
        except psutil.Error as err:
            found[pid] = Proc(pid, error=type(err).__name__)
    return found


def _files(settings: Settings) -> tuple[dict[str, str], dict[str, str]]:
    """Texts by path, and the errno names of the files that exist but could not be read."""
    from dind import mountinfo

    files: dict[str, str] = {}
    errors: dict[str, str] = {}
    release = os.uname().release
    sources = [(path, path, MAX_FILE) for path in FILES]
    sources += [
        (PROC_1_CGROUP, settings.proc_cgroup, MAX_FILE),
        (MOUNTINFO, settings.mountinfo, mountinfo.MAX_SIZE),
        (f"/lib/modules/{release}/modules.builtin", "", 64 << 20),
        (f"/lib/modules/{release}/modules.dep", "", 64 << 20),
    ]
    for key, path, limit in sources:
        text, error = _read(path or key, limit)
        if text is not None and key.startswith("/lib/modules/"):
            text = _filtered(text, MODULES)
        if text is not None:
            files[key] = text
        elif error is not None:
            errors[key] = error
    text, error = _config()
    if text is not None:
        files[KERNEL_CONFIG] = text
    elif error is not None:
        errors[KERNEL_CONFIG] = error
    return files, errors


def _statfs(settings: Settings, table_text: str | None) -> dict[str, str | None]:
    """Filesystem types of /sys/fs/cgroup and .../unified, decided as dind.detect decides."""
    from dind import mountinfo
    from dind.detect import filesystem_types
    from dind.settings import DEFAULT_MOUNTINFO

    captured = None
    if settings.mountinfo != DEFAULT_MOUNTINFO:
        try:
            captured = mountinfo.MountTable(mountinfo.parse(table_text or "", settings.mountinfo))
        except DindError:  # the analyser parses it again and reports the error
            captured = mountinfo.MountTable([])
    return filesystem_types((SYS_FS_CGROUP, UNIFIED), captured)


def gather(settings: Settings) -> Snapshot:
    """Read everything the report needs; changes nothing (reads, statfs, access, readlink)."""
    from dind.detect import TMP_SHOWN, list_entries
    from dind.plan import TMP

    files, errors = _files(settings)
    statfs = _statfs(settings, files.get(MOUNTINFO))
    root = os.path.realpath(settings.cgroup_root)
    writable = {}
    for path in (SYS_FS_CGROUP, IP_FORWARD, root, _existing_ancestor(root)):
        if os.path.lexists(path):
            writable[path] = _writable(path)
    try:
        own_user: int | None = os.stat("/proc/self/ns/user").st_ino
    except OSError:
        own_user = None
    pids = [1]
    if statfs.get(SYS_FS_CGROUP) == "cgroup2":
        procs = files.get(f"{SYS_FS_CGROUP}/cgroup.procs", "").split()
        pids += [int(w) for w in procs if w.isdigit() and int(w) > 0][:MAX_DETAILED]
    try:
        modules = tuple(sorted(set(os.listdir("/sys/module")) & MODULES))
    except OSError:
        modules = ()
    return Snapshot(
        files=files,
        errors=errors,
        statfs=statfs,
        writable=writable,
        namespaces={kind: _namespace(kind, own_user) for kind in NAMESPACES},
        euid=os.geteuid(),
        pid=os.getpid(),
        processes=_processes(sorted(set(pids))),
        container=os.environ.get("container") or None,
        cgroup_root=root,
        root_entries=list_entries(root),
        tmp_entries=tuple(sorted(list_entries(TMP, TMP_SHOWN) or ())),
        securityfs_dir=os.path.isdir("/sys/kernel/security"),
        sys_modules=modules,
        release=os.uname().release,
        proc_cgroup_source=settings.proc_cgroup,
    )


# --- captures (test fixtures, bug reports) ---------------------------------------

PROBES = "probes.json"


def save(snapshot: Snapshot, directory: str) -> None:
    """Write ``snapshot`` as a capture directory: each file at its path, the rest in probes.json."""
    for path, text in snapshot.files.items():
        target = os.path.join(directory, path.lstrip("/"))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "w", encoding="utf-8", errors="surrogateescape") as f:
            f.write(text)
    probes = {
        "errors": snapshot.errors,
        "statfs": snapshot.statfs,
        "writable": snapshot.writable,
        "namespaces": {
            k: {"link": v.link, "owner": v.owner} for k, v in snapshot.namespaces.items()
        },
        "euid": snapshot.euid,
        "pid": snapshot.pid,
        "processes": [p.to_json() for p in snapshot.processes.values()],
        "container": snapshot.container,
        "cgroup_root": snapshot.cgroup_root,
        "root_entries": snapshot.root_entries,
        "tmp_entries": list(snapshot.tmp_entries),
        "securityfs_dir": snapshot.securityfs_dir,
        "sys_modules": list(snapshot.sys_modules),
        "release": snapshot.release,
        "proc_cgroup_source": snapshot.proc_cgroup_source,
    }
    with open(os.path.join(directory, PROBES), "w", encoding="utf-8") as f:
        json.dump(probes, f, indent=2, sort_keys=True)
        f.write("\n")


def load(directory: str) -> Snapshot:
    """Read a capture directory written by ``save`` (a README.md there is ignored)."""
    with open(os.path.join(directory, PROBES), encoding="utf-8") as f:
        probes = json.load(f)
    files: dict[str, str] = {}
    for top, _dirs, names in os.walk(directory):
        for name in names:
            full = os.path.join(top, name)
            rel = os.path.relpath(full, directory)
            if rel in (PROBES, "README.md"):
                continue
            with open(full, encoding="utf-8", errors="surrogateescape") as f:
                files["/" + rel] = f.read()
    processes = {}
    for p in probes["processes"]:
        proc = Proc(p["pid"], p["name"], tuple(p["cmdline"]), p.get("ppid"), p.get("error"))
        processes[proc.pid] = proc
    return Snapshot(
        files=files,
        errors=probes["errors"],
        statfs=probes["statfs"],
        writable=probes["writable"],
        namespaces={k: Namespace(v["link"], v["owner"]) for k, v in probes["namespaces"].items()},
        euid=probes["euid"],
        pid=probes["pid"],
        processes=processes,
        container=probes["container"],
        cgroup_root=probes["cgroup_root"],
        root_entries=probes["root_entries"],
        tmp_entries=tuple(probes["tmp_entries"]),
        securityfs_dir=probes["securityfs_dir"],
        sys_modules=tuple(probes["sys_modules"]),
        release=probes["release"],
        proc_cgroup_source=probes["proc_cgroup_source"],
    )
