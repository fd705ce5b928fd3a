"""The kernel interface dind acts through: mount(2) and statfs(2) via ctypes, plus files.

Everything that changes the system goes through a ``Kernel``; tests substitute one
that records calls or fails on demand, and test this one for real in namespaces.
"""

from __future__ import annotations

import ctypes
import os
import stat
import time

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20

CGROUP_SUPER_MAGIC = 0x27E0EB
CGROUP2_SUPER_MAGIC = 0x63677270
TMPFS_MAGIC = 0x01021994
SYSFS_MAGIC = 0x62656572
SECURITYFS_MAGIC = 0x73636673

FS_NAMES = {
    CGROUP_SUPER_MAGIC: "cgroup",
    CGROUP2_SUPER_MAGIC: "cgroup2",
    TMPFS_MAGIC: "tmpfs",
    SYSFS_MAGIC: "sysfs",
    SECURITYFS_MAGIC: "securityfs",
}


class _Statfs(ctypes.Structure):
    """glibc's ``struct statfs`` on Linux; only ``f_type`` is read."""

    _fields_ = (
        ("f_type", ctypes.c_long),
        ("f_bsize", ctypes.c_long),
        ("f_blocks", ctypes.c_ulong),
        ("f_bfree", ctypes.c_ulong),
        ("f_bavail", ctypes.c_ulong),
        ("f_files", ctypes.c_ulong),
        ("f_ffree", ctypes.c_ulong),
        ("f_fsid", ctypes.c_int * 2),
        ("f_namelen", ctypes.c_long),
        ("f_frsize", ctypes.c_long),
        ("f_flags", ctypes.c_long),
        ("f_spare", ctypes.c_long * 4),
    )


_libc = ctypes.CDLL(None, use_errno=True)
_mount = _libc.mount
_mount.argtypes = (
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_ulong,
    ctypes.c_char_p,
)
_mount.restype = ctypes.c_int
_prctl = _libc.prctl
_prctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong)
_prctl.restype = ctypes.c_int
PR_SET_CHILD_SUBREAPER = 36
_statfs = _libc.statfs
_statfs.argtypes = (ctypes.c_char_p, ctypes.POINTER(_Statfs))
_statfs.restype = ctypes.c_int


def _oserror(path: str) -> OSError:
    err = ctypes.get_errno()
    return OSError(err, os.strerror(err), path)


def _arg(value: str | None) -> bytes | None:
    return None if not value else os.fsencode(value)


def mount(
    source: str | None, target: str, fstype: str | None, flags: int, data: str | None
) -> None:
    """mount(2); raises OSError whose filename is the target."""
    if _mount(_arg(source), os.fsencode(target), _arg(fstype), flags, _arg(data)) != 0:
        raise _oserror(target)


def set_child_subreaper() -> None:
    """prctl(PR_SET_CHILD_SUBREAPER): orphans of our descendants are re-parented to us."""
    if _prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise _oserror("prctl(PR_SET_CHILD_SUBREAPER)")


def statfs_type(path: str) -> int:
    """The filesystem magic number of ``path`` (statfs(2) ``f_type``)."""
    buf = _Statfs()
    if _statfs(os.fsencode(path), ctypes.byref(buf)) != 0:
        raise _oserror(path)
    return int(buf.f_type) & 0xFFFFFFFF


class Kernel:
    """The real system. Methods raise OSError carrying the path they failed on."""

    def mount(
        self, source: str | None, target: str, fstype: str | None, flags: int, data: str | None
    ) -> None:
        mount(source, target, fstype, flags, data)

    def statfs_type(self, path: str) -> int:
        return statfs_type(path)

    def mkdir(self, path: str, mode: int = 0o755) -> None:
        os.mkdir(path, mode)

    def symlink(self, target: str, path: str) -> None:
        os.symlink(target, path)

    def lstat_kind(self, path: str) -> str | None:
        """'dir', 'link', 'other' or None when missing: enough to refuse symlinked targets."""
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            return None
        if stat.S_ISLNK(mode):
            return "link"
        return "dir" if stat.S_ISDIR(mode) else "other"

    def readlink(self, path: str) -> str:
        return os.readlink(path)

    def read(self, path: str) -> str:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            return f.read()

    def write(self, path: str, data: str) -> None:
        """One write(2) per call: cgroup files act on each write, not on the whole file."""
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, os.fsencode(data))
        finally:
            os.close(fd)

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)
