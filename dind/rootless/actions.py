"""The rootless daemon's root-only preparation: directories, files and a device given to
the user, a cgroup2 subtree delegated to it.

Root preparing what an unprivileged user controls is the classic symlink attack
(the user swaps a directory for a link to /etc, root chowns /etc). Everything here
goes through ``dind.safepath``: directories held by descriptor, each name below
opened without following it, and what was opened is what gets changed (fchown,
fchmod, write on that descriptor). A file is given only from a directory that root
owns and no one else may write, and only when it has a single link.
"""

from __future__ import annotations

import os
import stat

from dind.actions import PENDING, Action
from dind.errors import SetupError
from dind.rootless.facts import TUN_DEVICE
from dind.safepath import Dir

TYPE_CHECKING = False
if TYPE_CHECKING:
    from dind.kernel import Kernel

DELEGATED_FILES = ("cgroup.procs", "cgroup.threads", "cgroup.subtree_control")
"""What a cgroup2 delegatee must own besides the directory (the kernel's cgroup-v2.rst)."""
MAX_CGROUP_FILE = 4096


def _give(d: Dir, uid: int, gid: int) -> None:
    """fchown the directory held to uid:gid unless it is theirs already."""
    st = os.fstat(d.fd)
    if (st.st_uid, st.st_gid) != (uid, gid):
        d.chown_self(uid, gid)


def _subdir(parent: Dir, name: str, *, create: bool, mode: int = 0o755) -> Dir:
    found = parent.subdir(name, create=create, mode=mode)
    if found is None:
        raise FileNotFoundError(2, "No such file or directory", parent.where(name))
    return found


class UserDirs(Action):
    """``install -d -o UID -g GID -m MODE`` for each directory, in order, parents first.

    A directory that exists is kept (its mode too), given to its owner when it is
    not theirs (a volume's mount point, made by root); one that is missing is made
    with that mode. A uid of -1 gives nothing (a parent such as /run/user). Started
    as the user (``as_root`` false) dind gives nothing: what it makes is its own.
    """

    __slots__ = ("as_root", "entries")
    kind = "mkdir-owned"

    def __init__(
        self,
        step: str,
        entries: tuple[tuple[str, int, int, int], ...],
        as_root: bool,
        status: str = PENDING,
        note: str = "",
    ) -> None:
        super().__init__(step, status, note)
        self.entries = entries
        self.as_root = as_root

    def describe(self) -> str:
        shown = []
        for path, uid, gid, mode in self.entries:
            owner = f" -o {uid} -g {gid}" if self.as_root and uid >= 0 else ""
            shown.append(f"install -d{owner} -m {mode:04o} {path}")
        return "; ".join(shown)

    def details(self) -> dict[str, object]:
        return {
            "target": self.entries[-1][0],
            "directories": [
                {"path": p, "uid": u, "gid": g, "mode": f"{m:04o}"} for p, u, g, m in self.entries
            ],
        }

    def execute(self, kernel: Kernel) -> str | None:
        for path, uid, gid, mode in self.entries:
            head, _, name = path.rpartition("/")
            with (
                Dir.open(head or "/") as parent,
                _subdir(parent, name, create=True, mode=mode) as d,
            ):
                if self.as_root and uid >= 0:
                    _give(d, uid, gid)
        return None


class GiveFiles(Action):
    """``chown UID:GID`` of files in ``directory`` (the server's certificate and key).

    Only from a directory root owns and no one else may write (else another user
    could have put a hard link to any file there), and only single-link regular
    files.
    """

    __slots__ = ("directory", "gid", "names", "uid")
    kind = "chown"

    def __init__(
        self,
        step: str,
        directory: str,
        names: tuple[str, ...],
        uid: int,
        gid: int,
        status: str = PENDING,
        note: str = "",
    ) -> None:
        super().__init__(step, status, note)
        self.directory = directory
        self.names = names
        self.uid = uid
        self.gid = gid

    def describe(self) -> str:
        files = " ".join(f"{self.directory}/{n}" for n in self.names)
        return f"chown {self.uid}:{self.gid} {files}"

    def details(self) -> dict[str, object]:
        return {"target": self.directory, "files": list(self.names), "uid": self.uid}

    def execute(self, kernel: Kernel) -> str | None:
        with Dir.open(self.directory) as d:
            st = os.fstat(d.fd)
            if st.st_uid != os.geteuid() or st.st_mode & 0o022:
                raise SetupError(
                    f"{self.directory} is uid {st.st_uid}'s, mode {stat.S_IMODE(st.st_mode):04o}: "
                    "dind gives no file from a directory others can write",
                    step=self.step,
                )
            for name in self.names:
                d.chown(name, self.uid, self.gid)  # a regular file with one link, by descriptor
        return None


class GiveDevice(Action):
    """``chown UID:GID /dev/net/tun``: the character device itself, checked by its numbers."""

    __slots__ = ("gid", "path", "uid")
    kind = "chown"
    device = TUN_DEVICE

    def __init__(
        self, step: str, path: str, uid: int, gid: int, status: str = PENDING, note: str = ""
    ) -> None:
        super().__init__(step, status, note)
        self.path = path
        self.uid = uid
        self.gid = gid

    def describe(self) -> str:
        return f"chown {self.uid}:{self.gid} {self.path}"

    def details(self) -> dict[str, object]:
        return {"target": self.path, "uid": self.uid}

    def execute(self, kernel: Kernel) -> str | None:
        head, _, name = self.path.rpartition("/")
        with Dir.open(head) as d:
            flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC
            try:
                fd = os.open(name, flags, dir_fd=d.fd)
            except OSError as err:
                raise OSError(err.errno, err.strerror, self.path) from None
            try:
                st = os.fstat(fd)
                numbers = (os.major(st.st_rdev), os.minor(st.st_rdev))
                if not stat.S_ISCHR(st.st_mode) or numbers != self.device:
                    raise SetupError(f"{self.path} is not the tun device", step=self.step)
                if (st.st_uid, st.st_gid) != (self.uid, self.gid):
                    os.fchown(fd, self.uid, self.gid)
            finally:
                os.close(fd)
        return None


class DelegateCgroup(Action):
    """Make a cgroup2 subtree the user's: ``mkdir PATH PATH/CHILD...``, every controller
    ``PATH/cgroup.controllers`` offers enabled in ``PATH/cgroup.subtree_control``, and the
    directories with their cgroup.procs, cgroup.threads and cgroup.subtree_control given
    to the user, as the kernel's delegation model asks.

    The daemon starts in ``PATH/CHILD`` (a group with processes cannot pass controllers
    on), and its nested containers go in groups it makes below ``PATH``.
    """

    __slots__ = ("children", "gid", "path", "uid")
    kind = "delegate"

    def __init__(
        self,
        step: str,
        path: str,
        uid: int,
        gid: int,
        children: tuple[str, ...],
        status: str = PENDING,
        note: str = "",
    ) -> None:
        super().__init__(step, status, note)
        self.path = path
        self.uid = uid
        self.gid = gid
        self.children = children

    def describe(self) -> str:
        made = " ".join([self.path, *(f"{self.path}/{c}" for c in self.children)])
        return (
            f"mkdir {made}; enable its controllers in {self.path}/cgroup.subtree_control; "
            f"chown -R {self.uid}:{self.gid} {self.path}"
        )

    def details(self) -> dict[str, object]:
        return {"target": self.path, "children": list(self.children), "uid": self.uid}

    def execute(self, kernel: Kernel) -> str | None:
        head, _, name = self.path.rpartition("/")
        with Dir.open(head) as parent, _subdir(parent, name, create=True) as group:
            for child in self.children:
                _subdir(group, child, create=True).close()
            enabled = self._enable(group)
            self._give_group(group)
            for child in self.children:
                with _subdir(group, child, create=False) as d:
                    self._give_group(d)
        shown = " ".join(enabled) or "none offered"
        return f"{self.describe()} (controllers: {shown})"

    def _enable(self, group: Dir) -> list[str]:
        """Every controller the subtree is offered, enabled for its children (one write each:
        the kernel acts on each write)."""
        offered = (group.read("cgroup.controllers", MAX_CGROUP_FILE) or b"").decode().split()
        done = (group.read("cgroup.subtree_control", MAX_CGROUP_FILE) or b"").decode().split()
        fd = group.open_file("cgroup.subtree_control", os.O_WRONLY)
        if fd is None:
            raise FileNotFoundError(2, "No such file", group.where("cgroup.subtree_control"))
        try:
            for controller in offered:
                if controller not in done:
                    try:
                        os.write(fd, f"+{controller}".encode())
                    except OSError as err:
                        where = f"{group.where('cgroup.subtree_control')} (+{controller})"
                        raise OSError(err.errno, err.strerror, where) from None
        finally:
            os.close(fd)
        return offered

    def _give_group(self, d: Dir) -> None:
        _give(d, self.uid, self.gid)
        for name in DELEGATED_FILES:
            d.chown(name, self.uid, self.gid)
