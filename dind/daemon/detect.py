"""Detection for the daemon steps: pid files, daemon.json, the certs directory, addresses,
iptables rules per backend, the default route's MTU, the data root's filesystem. Reads only.

Both the real run (in dockerd mode) and ``--check`` read through ``read_daemon``.
"""

from __future__ import annotations

import contextlib
import os
import stat
import subprocess

from dind import paths
from dind.daemon import iptables, mtu
from dind.daemon.facts import Backend, DaemonEvidence, PidFile, directives_of
from dind.errors import DindError
from dind.procfile import try_read
from dind.safepath import open_path
from dind.syscalls import fs_type

TYPE_CHECKING = False
if TYPE_CHECKING:
    from dind.rootless.facts import RootlessEvidence
    from dind.settings import Settings

PID_PATTERNS = ("docker", "containerd")
PID_DEPTH = 3
"""/run/docker.pid, /run/docker/containerd/containerd.pid: dockerd's and its containerd's."""
PROBE_TIMEOUT = 5.0
_READ_NOFOLLOW = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
MAX_PIDFILE = 32
"""A PID is at most 7 digits; a file longer than this is not a pid file."""


def _pid(text: str | None) -> int | None:
    """The PID a pid file holds, when it holds one and nothing else (a newline may end it)."""
    word = (text or "").removesuffix("\n")
    if word.isascii() and word.isdigit() and 0 < int(word) < 1 << 22:
        return int(word)
    return None


def _pidfile(directory: int, name: str, path: str) -> PidFile | None:
    """What ``name`` is in the directory ``directory`` (a descriptor), never followed;
    None when there is nothing."""
    try:
        st = os.stat(name, dir_fd=directory, follow_symlinks=False)
    except FileNotFoundError:
        return None
    except OSError:
        return PidFile(path, None, None, "other")
    if stat.S_ISLNK(st.st_mode):
        try:
            target = os.readlink(name, dir_fd=directory)
        except OSError:
            target = None
        return PidFile(path, None, None, "symlink", target)
    if not stat.S_ISREG(st.st_mode):
        return PidFile(path, None, None, "other")
    text = None
    with contextlib.suppress(OSError):
        fd = os.open(
            name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=directory
        )
        try:
            text = os.read(fd, MAX_PIDFILE + 1).decode("ascii", "replace")
        finally:
            os.close(fd)
    pid = _pid(text) if text is not None and len(text) <= MAX_PIDFILE else None
    comm = None
    if pid is not None and pid != os.getpid():
        comm_text, _ = try_read(f"/proc/{pid}/comm", 64)
        comm = None if comm_text is None else comm_text.strip()
    return PidFile(path, pid, comm)


def find_pidfiles(top: str, named: str | None) -> list[PidFile]:
    """docker*.pid and containerd*.pid under ``top`` (and ``named``), without following symlinks.

    ``named`` (dockerd's ``--pidfile``) is looked at whatever it is called: its
    directory's symlinks are resolved (``/var/run`` is one), the name itself never.
    """
    found: list[PidFile] = []
    seen: set[str] = set()

    def walk(directory: str, depth: int) -> None:
        try:
            fd = open_path(directory, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            return
        try:
            with os.scandir(fd) as it:
                entries = [(e.name, e.is_dir(follow_symlinks=False)) for e in it]
            for name, is_dir in sorted(entries):
                path = f"{directory.rstrip('/')}/{name}"
                if name.endswith(".pid") and name.startswith(PID_PATTERNS) and not is_dir:
                    seen.add(path)
                    pidfile = _pidfile(fd, name, path)
                    if pidfile is not None:
                        found.append(pidfile)
                elif is_dir and depth < PID_DEPTH:
                    walk(path, depth + 1)
        finally:
            os.close(fd)

    walk(top, 1)
    if named:
        head, _, name = os.path.abspath(named).rpartition("/")
        if name in ("", ".", ".."):
            return found
        try:
            fd = os.open(head or "/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            return found
        try:
            real = f"{os.readlink(f'/proc/self/fd/{fd}').rstrip('/')}/{name}"
            pidfile = None if real in seen else _pidfile(fd, name, real)
        except OSError:
            pidfile = None
        finally:
            os.close(fd)
        if pidfile is not None:
            found.append(pidfile)
    return found


def _run(argv: list[str]) -> tuple[int, str]:
    """Exit status and output of a probe; 127 when it cannot run at all."""
    try:
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=PROBE_TIMEOUT,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.SubprocessError) as err:
        return 127, str(err)
    return done.returncode, done.stdout + done.stderr


def read_backend(backend: str) -> Backend:
    """The backend's tools, the rules its ``*-save`` lists, and whether its nat table answers."""
    import shutil

    tools = {}
    for tool in iptables.TOOLS:
        found = shutil.which(iptables.variant(tool, backend))
        if found:
            tools[tool] = found
    if "iptables" not in tools:
        return Backend(tools, None, "not installed")
    rules = 0
    for save in ("iptables-save", "ip6tables-save"):
        if save in tools:
            status, out = _run([tools[save]])
            if status == 0:
                rules += iptables.count_rules(out)
    if backend == "legacy":
        return Backend(tools, rules, _legacy_nat())
    status, out = _run([tools["iptables"], "-t", "nat", "-S"])  # nf_tables: lists, creates nothing
    nat = None if status == 0 else (out.strip().splitlines() or ["failed"])[-1]
    return Backend(tools, rules, nat)


def _legacy_nat() -> str | None:
    """Whether the legacy nat table can work here, without creating it.

    ``iptables-legacy -t nat -S`` would create the table in this network namespace
    (and leave it beside the rules of whichever backend dockerd uses): the table
    already there, or the module loaded or loadable, is the evidence instead.
    """
    names, _ = try_read("/proc/net/ip_tables_names", 4096)
    if names is not None and "nat" in names.split():
        return None
    if os.path.isdir("/sys/module/iptable_nat"):
        return None
    deps, _ = try_read(f"/lib/modules/{os.uname().release}/modules.dep", 64 << 20)
    if deps is not None and "/iptable_nat.ko" in deps:
        return None
    if _built_in("CONFIG_IP_NF_NAT"):
        return None
    return "no legacy nat table here, and no iptable_nat module loaded, to load or built in"


def _built_in(option: str) -> bool:
    """``option=y`` in /proc/config.gz (the kernel's own configuration, when it has one)."""
    import gzip

    try:
        with gzip.open("/proc/config.gz", "rt", encoding="ascii", errors="replace") as f:
            return any(line.strip() == f"{option}=y" for line in f)
    except (OSError, EOFError):
        return False


def read_mtus(route: str | None) -> dict[str, int]:
    iface = mtu.default_interface(route)
    if iface is None or "/" in iface or iface in (".", ".."):
        return {}
    text, _ = try_read(f"/sys/class/net/{iface}/mtu", 32)
    value = (text or "").strip()
    return {iface: int(value)} if value.isascii() and value.isdigit() else {}


def read_daemon(settings: Settings, rootless: RootlessEvidence | None = None) -> DaemonEvidence:
    """Read what the daemon steps need (skipped steps' inputs are not looked at). A rootless
    daemon's data root and pid files are in its user's places (``rootless``, read first)."""
    from dind import steps

    skip = set() if settings.check else settings.skip
    try:
        directives, config_path = directives_of(settings, None)
    except DindError:
        return DaemonEvidence()  # planning reports the bad flag, with the same parser
    config_text, why = try_read(config_path, 1 << 20)
    config_error = None if why in (None, "ENOENT") else why
    # A bad daemon.json is reported by planning; the flags alone still locate things.
    with contextlib.suppress(DindError):
        directives, _ = directives_of(settings, config_text)
    user = None
    if rootless is not None:
        from dind.rootless.plan import context

        user = context(rootless, settings)
    pidfiles: list[PidFile] = []
    if steps.STALE_PID not in skip:
        pidfiles = find_pidfiles(paths.RUN, directives.value("pidfile"))
        if user is not None:
            seen = {p.path for p in pidfiles}
            pidfiles += [p for p in find_pidfiles(user.runtime_dir, None) if p.path not in seen]
    tls_state = addresses = hostnames = None
    if steps.TLS not in skip and settings.tls_certdir:
        from dind.daemon import addresses as names
        from dind.daemon import tls

        try:
            tls_state = tls.layout_state(settings.tls_certdir)
        except DindError as err:
            tls_state = f"error: {err}"
        addresses = names.interface_addresses()
        hostnames = names.hostnames()
    backends = {}
    if steps.IPTABLES not in skip:
        backends = {name: read_backend(name) for name in iptables.BACKENDS}
    route = None
    mtus: dict[str, int] = {}
    version = None
    if steps.MTU not in skip:
        route, _ = try_read("/proc/net/route", 1 << 20)
        mtus = read_mtus(route)
        if any(v < mtu.DEFAULT for v in mtus.values()):
            status, out = _run([settings.dockerd_argv[0], "--version"])
            version = out.strip() if status == 0 else None
    data_root_fs = None
    if steps.DATA_ROOT not in skip:
        default = paths.DATA_ROOT if user is None else user.data_root
        data_root_fs = fs_type(_existing(directives.value("data-root") or default))
    return DaemonEvidence(
        config_text=config_text,
        config_error=config_error,
        pidfiles=pidfiles,
        tls_state=tls_state,
        addresses=addresses,
        hostnames=hostnames,
        iptables=backends,
        route=route,
        mtus=mtus,
        dockerd_version=version,
        data_root_fs=data_root_fs,
    )


def _existing(path: str) -> str:
    """``path`` or its nearest existing ancestor: where a new data root would be created."""
    while path != "/" and not os.path.lexists(path):
        path = os.path.dirname(path) or "/"
    return path
