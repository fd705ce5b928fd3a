"""A stand-in for the kernel that records calls and fails on demand.

Used to drive apply's policies and the nesting algorithm through error paths that a
healthy machine never shows; the real ``LinuxKernel`` is tested in namespaces. It is
a full fake of the ``dind.kernel.Kernel`` protocol: nothing here reaches the real
filesystem.
"""

from __future__ import annotations

import errno
import os


def oserror(code: int, path: str) -> OSError:
    return OSError(code, os.strerror(code), path)


class FakeKernel:
    """Records every call; ``fail`` maps (operation, path) to the errno to raise."""

    def __init__(self, fail: dict[tuple[str, str], int] | None = None) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.fail = dict(fail or {})
        self.kinds: dict[str, str] = {"/": "dir"}
        self.mounted: list[str] = []

    def _check(self, op: str, path: str) -> None:
        """Fail on demand; and, as the real kernel interface does, never through a symlink."""
        code = self.fail.get((op, path))
        if code is not None:
            raise oserror(code, path)
        probe = ""
        for part in path.strip("/").split("/"):
            probe += "/" + part
            if self.kinds.get(probe) == "link" and (probe != path or op != "symlink"):
                raise oserror(errno.ELOOP, path)

    def mount(
        self, source: str | None, target: str, fstype: str | None, flags: int, data: str | None
    ) -> None:
        self.calls.append(("mount", target, fstype or "", data or "", str(flags)))
        self._check("mount", target)
        self.mounted.append(target)

    def mkdir(self, path: str, mode: int = 0o755) -> None:
        self.calls.append(("mkdir", path))
        self._check("mkdir", path)
        if path in self.kinds:
            raise oserror(errno.EEXIST, path)
        self.kinds[path] = "dir"

    def symlink(self, link_target: str, path: str) -> None:
        self.calls.append(("symlink", path, link_target))
        self._check("symlink", path)
        self.kinds[path] = "link"

    def umount(self, target: str) -> None:
        self.calls.append(("umount", target))
        self._check("umount", target)

    def unshare(self, flags: int) -> None:
        self.calls.append(("unshare", str(flags)))
        self._check("unshare", "")

    def unlink(self, path: str) -> None:
        self.calls.append(("unlink", path))
        self._check("unlink", path)
        if self.kinds.pop(path, None) is None:
            raise oserror(errno.ENOENT, path)

    def kind(self, path: str) -> str | None:
        return self.kinds.get(path)

    def read(self, path: str) -> str:
        self.calls.append(("read", path))
        raise oserror(errno.ENOENT, path)

    def write(self, path: str, data: str) -> None:
        self.calls.append(("write", path, data))
        raise oserror(errno.ENOENT, path)

    def sleep(self, seconds: float) -> None:
        self.calls.append(("sleep", str(seconds)))


class FakeCgroup2(FakeKernel):
    """A cgroup2 root with the "no internal processes" rule, for the nesting algorithm.

    ``unmovable`` pids refuse to move (pid 0 is always unmovable, as a process outside
    the PID namespace is); ``arrivals`` pids join the root after each of the first
    moves, as ``docker exec`` does; ``exited`` pids vanish (ESRCH) when moved.
    """

    def __init__(
        self,
        procs: list[int],
        controllers: list[str],
        *,
        unmovable: frozenset[int] = frozenset(),
        arrivals: list[list[int]] | None = None,
        exited: frozenset[int] = frozenset(),
        refused: frozenset[str] = frozenset(),
    ) -> None:
        super().__init__()
        self.kinds["/cg"] = "dir"
        self.root_procs = list(procs)
        self.child_procs: list[int] = []
        self.controllers = controllers
        self.subtree: list[str] = []
        self.unmovable = unmovable | {0}
        self.arrivals = list(arrivals or [])
        self.exited = exited
        self.refused = refused

    def read(self, path: str) -> str:
        self.calls.append(("read", path))
        if path == "/cg/cgroup.procs":
            procs = list(self.root_procs)
            if self.arrivals:
                self.root_procs += self.arrivals.pop(0)
            return "".join(f"{p}\n" for p in procs)
        if path == "/cg/cgroup.controllers":
            return " ".join(self.controllers) + "\n"
        raise oserror(errno.ENOENT, path)

    def write(self, path: str, data: str) -> None:
        self.calls.append(("write", path, data))
        if path == "/cg/init/cgroup.procs":
            pid = int(data)
            if pid in self.exited:
                self.root_procs.remove(pid)
                raise oserror(errno.ESRCH, path)
            if pid in self.unmovable:
                raise oserror(errno.EINVAL, path)
            self.root_procs.remove(pid)
            self.child_procs.append(pid)
            return
        if path == "/cg/cgroup.subtree_control":
            wanted = [w[1:] for w in data.split()]
            if self.refused & set(wanted):
                raise oserror(errno.EINVAL, path)
            if self.root_procs:
                raise oserror(errno.EBUSY, path)
            self.subtree += wanted
            return
        raise oserror(errno.ENOENT, path)
