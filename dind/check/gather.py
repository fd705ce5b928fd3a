"""Reading the live system for ``--check``: dind's own reader, plus what a diagnosis needs.

The planning evidence comes from ``dind.detect.read`` (and, for the daemon steps,
``dind.daemon.detect.read_daemon``): the same reader a real run plans from.
Everything else is read here and interpreted nowhere here: files, statfs types,
access(2) answers, namespace links, processes, and a few probes.
"""

from __future__ import annotations

import errno
import os

from dind import detect, paths
from dind.check.model import Namespace, Proc, Snapshot
from dind.paths import IP_FORWARD
from dind.procfile import try_read

TYPE_CHECKING = False
if TYPE_CHECKING:
    from dind.settings import Settings

KERNEL_CONFIG = "/proc/config"
"""Not a kernel file: /proc/config.gz decompressed, only the options in ``CONFIG_KEYS``."""
TABLE_NAMES = {
    "ip": "/proc/net/ip_tables_names",
    "ip6": "/proc/net/ip6_tables_names",
    "arp": "/proc/net/arp_tables_names",
}
FILES = (
    paths.PROC_SELF_CGROUP,
    "/proc/filesystems",
    "/proc/modules",
    f"{paths.SYS_FS_CGROUP}/cgroup.controllers",
    f"{paths.SYS_FS_CGROUP}/cgroup.subtree_control",
    f"{paths.SYS_FS_CGROUP}/cgroup.procs",
    f"{paths.UNIFIED}/cgroup.controllers",
    *TABLE_NAMES.values(),
    IP_FORWARD,
    "/sys/kernel/security/lsm",
    "/sys/module/apparmor/parameters/enabled",
    "/sys/fs/selinux/enforce",
    "/run/systemd/container",
    "/run/.containerenv",
)
"""Read as they are, besides what ``dind.detect`` reads (privilege evidence included: status,
uid_map, cap_last_cap, LSM labels) and the filtered module lists."""

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
    "CONFIG_NF_NAT",
    "CONFIG_SECURITYFS",
    "CONFIG_SECURITY_APPARMOR",
    "CONFIG_SECURITY_SELINUX",
    "CONFIG_LSM",
    "CONFIG_USER_NS",
)
MAX_DETAILED = 64
"""Processes described by name; a host's root group may hold thousands."""
NS_GET_USERNS = 0xB701
"""ioctl_ns(2): _IO(0xb7, 0x1), the user namespace owning a namespace."""
MARKERS = ("/.dockerenv", "/run/.containerenv", "/var/run/secrets/kubernetes.io")
"""Files runtimes leave in their containers (their presence only is recorded)."""


def _filtered(text: str, keep: frozenset[str]) -> str:
    """Lines of a modules.builtin/modules.dep whose module is in ``keep`` (the files are MBs)."""
    from dind.procfs import listed_modules

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


def _pid1_container() -> str | None:
    """``container`` of PID 1's environment (runtimes set it there), and nothing else of it."""
    text, _ = try_read("/proc/1/environ", 1 << 20)
    for item in (text or "").split("\0"):
        if item.startswith("container="):
            return item[len("container=") :]
    return None


def runtime_probes() -> dict[str, object]:
    """What identifies the runtime: markers, ``container`` of PID 1, Kubernetes' variables."""
    return {
        "pid1_container": _pid1_container(),
        "markers": [m for m in MARKERS if os.path.lexists(m)],
        "kubernetes": "KUBERNETES_SERVICE_HOST" in os.environ,
        "rlimits": _rlimits(),
    }


def _rlimits() -> dict[str, list[int]]:
    import resource

    return {
        name: list(resource.getrlimit(getattr(resource, f"RLIMIT_{name.upper()}")))
        for name in ("nofile", "nproc")
    }


def gather(settings: Settings) -> Snapshot:
    """Read everything the report needs; changes nothing (reads, statfs, access, readlink)."""
    from dind.daemon.detect import read_daemon

    evidence = detect.read(settings, everything=True)
    files, errors = evidence.files, evidence.errors
    release = os.uname().release
    sources = [(path, 16 << 20) for path in FILES if path not in files]
    sources += [(f"/lib/modules/{release}/modules.builtin", 64 << 20)]
    sources += [(f"/lib/modules/{release}/modules.dep", 64 << 20)]
    for path, limit in sources:
        text, why = try_read(path, limit)
        if text is not None and path.startswith("/lib/modules/"):
            text = _filtered(text, MODULES)
        if text is not None:
            files[path] = text
        elif why is not None and why != "ENOENT":
            errors[path] = why
    text, why = _config()
    if text is not None:
        files[KERNEL_CONFIG] = text
    elif why is not None:
        errors[KERNEL_CONFIG] = why
    if settings.rootless:
        from dind.rootless.detect import read_rootless

        evidence.rootless = read_rootless(settings)
    # After the files: the daemon's probes run iptables tools in this network namespace.
    evidence.daemon = read_daemon(settings, evidence.rootless)

    root = settings.cgroup_root
    writable = {}
    for path in (paths.SYS_FS_CGROUP, IP_FORWARD, root, _existing_ancestor(root)):
        if os.path.lexists(path):
            writable[path] = _writable(path)
    try:
        own_user: int | None = os.stat("/proc/self/ns/user").st_ino
    except OSError:
        own_user = None
    pids = [1]
    if evidence.statfs.get(paths.SYS_FS_CGROUP) == "cgroup2":
        procs = files.get(f"{paths.SYS_FS_CGROUP}/cgroup.procs", "").split()
        pids += [int(w) for w in procs if w.isascii() and w.isdigit() and int(w) > 0][:MAX_DETAILED]
    try:
        modules = tuple(sorted(set(os.listdir("/sys/module")) & MODULES))
    except OSError:
        modules = ()
    return Snapshot(
        evidence=evidence,
        writable=writable,
        namespaces={kind: _namespace(kind, own_user) for kind in NAMESPACES},
        euid=os.geteuid(),
        pid=os.getpid(),
        processes=_processes(sorted(set(pids))),
        sys_modules=modules,
        release=release,
        runtime=runtime_probes(),
    )
