"""Detection for the rootless daemon: the user database, dind's capabilities, the ID-mapping
helpers, /dev/net/tun, the user-namespace sysctls, and the places dind prepares. Reads
only, plus two probes in throwaway form: opening /dev/net/tun, and unshare(CLONE_NEWUSER)
as the user in a forked child.
"""

from __future__ import annotations

import errno
import os

from dind import paths, userdb
from dind.procfile import try_read
from dind.rootless.facts import (
    HELPERS,
    OK,
    TOOLS,
    FileInfo,
    RootlessEvidence,
    find_user,
    socket_link,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from dind.settings import Settings

MAX_FILE = 4 << 20
FILES = (
    paths.PASSWD,
    paths.GROUP,
    paths.SUBUID,
    paths.SUBGID,
    paths.PROC_SELF_STATUS,
    paths.MAX_USER_NAMESPACES,
    paths.UNPRIVILEGED_USERNS_CLONE,
    paths.APPARMOR_RESTRICT_USERNS,
)


def which(name: str) -> str | None:
    """The first executable ``name`` on PATH (what rootlesskit's exec finds)."""
    for directory in os.environ.get("PATH", "").split(":"):
        candidate = f"{directory or '.'}/{name}"
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def file_info(path: str, *, follow: bool = False, caps: bool = False) -> FileInfo | None:
    """lstat (stat with ``follow``) of ``path``, and its file capabilities; None if missing."""
    try:
        st = os.stat(path, follow_symlinks=follow)
    except OSError:
        return None
    raw = None
    if caps:
        try:
            raw = os.getxattr(path, "security.capability").hex()
        except OSError:
            raw = None
    rdev = (os.major(st.st_rdev), os.minor(st.st_rdev))
    return FileInfo(path, st.st_mode, st.st_uid, st.st_gid, rdev, raw)


def _open_probe(path: str) -> str | None:
    """``ok`` when ``path`` opens read-write (a tun open allocates nothing), else the errno."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as err:
        return errno.errorcode.get(err.errno or 0, "EIO")
    os.close(fd)
    return OK


def probe_userns(user: userdb.User | None, groups: tuple[int, ...]) -> str | None:
    """unshare(CLONE_NEWUSER) in a forked child, as ``user`` when dind is root: ``ok`` or the
    errno name (a seccomp filter, a sysctl); None when it cannot be probed."""
    from dind.probes import in_child
    from dind.syscalls import CLONE_NEWUSER, unshare

    def become_and_unshare() -> int:
        if os.geteuid() == 0 and user is not None:
            os.setgroups(list(groups))
            os.setresgid(user.gid, user.gid, user.gid)
            os.setresuid(user.uid, user.uid, user.uid)
        unshare(CLONE_NEWUSER)
        return 0

    return in_child(become_and_unshare)


def places(user: userdb.User, var_run: str | None) -> list[str]:
    """Where dind prepares things for ``user``: checked here, acted on by the plan."""
    chain = [user.home.rstrip("/") or "/"]
    for part in paths.ROOTLESS_DATA.split("/"):
        chain.append(f"{chain[-1].rstrip('/')}/{part}")
    return [
        paths.RUN_USER,
        paths.runtime_dir(user.uid),
        *chain,
        paths.ETC_DOCKER,
        f"{paths.SYS_FS_CGROUP}/{paths.DELEGATED_CGROUP}",
        socket_link(var_run),
    ]


def read_rootless(settings: Settings) -> RootlessEvidence:
    """Read what the rootless steps decide from (and the two probes)."""
    files: dict[str, str] = {}
    errors: dict[str, str] = {}
    for path in FILES:
        text, why = try_read(path, MAX_FILE)
        if text is not None:
            files[path] = text
        elif why not in (None, "ENOENT"):
            errors[path] = why or "EIO"
    ev = RootlessEvidence(euid=os.geteuid(), files=files, errors=errors)
    user, _ = find_user(ev, settings.rootless_user)
    groups: tuple[int, ...] = ()
    if user is not None:
        groups = userdb.supplementary_gids(files.get(paths.GROUP, ""), user)
    ev.helpers = {}
    for name in HELPERS:
        found = which(name)
        ev.helpers[name] = None if found is None else file_info(found, follow=True, caps=True)
    ev.tun = file_info(paths.DEV_NET_TUN)
    ev.tun_open = _open_probe(paths.DEV_NET_TUN) if ev.tun is not None else None
    ev.userns = probe_userns(user, groups)
    ev.tools = {name: which(name) for name in TOOLS}
    try:
        ev.var_run = os.readlink(paths.VAR_RUN)
    except OSError:
        ev.var_run = None
    ev.paths = {} if user is None else {p: file_info(p) for p in places(user, ev.var_run)}
    return ev
