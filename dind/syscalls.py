"""The system calls dind acts through (ctypes, ``use_errno``): mount, unshare, prctl, statfs.

Every path dind mounts on, creates, removes or writes is opened through
``dind.safepath`` (openat2 without symlinks), and the operation then acts on the
opened object: ``mount(2)`` onto ``/proc/self/fd/N``, ``mkdirat``/``symlinkat``/
``unlinkat`` relative to the parent's descriptor, as runc does since its symlink
CVEs. What was checked is what gets changed: a path swapped for a symlink in
between makes the open fail (ELOOP), never the mount land elsewhere.

``LinuxKernel`` is the real implementation of the ``dind.kernel.Kernel`` protocol;
tests use a full fake for error paths and this one for real, in namespaces.
"""

from __future__ import annotations

import ctypes
import os
import stat
import time

from dind.safepath import at, open_path, parent

MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_SHARED = 1 << 20
MNT_DETACH = 0x2
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUSER = 0x10000000
PR_SET_CHILD_SUBREAPER = 36

CGROUP_SUPER_MAGIC = 0x27E0EB
CGROUP2_SUPER_MAGIC = 0x63677270
TMPFS_MAGIC = 0x01021994
SYSFS_MAGIC = 0x62656572
SECURITYFS_MAGIC = 0x73636673
OVERLAYFS_SUPER_MAGIC = 0x794C7630
FS_NAMES = {
    CGROUP_SUPER_MAGIC: "cgroup",
    CGROUP2_SUPER_MAGIC: "cgroup2",
    TMPFS_MAGIC: "tmpfs",
    SYSFS_MAGIC: "sysfs",
    SECURITYFS_MAGIC: "securityfs",
    OVERLAYFS_SUPER_MAGIC: "overlay",
    0x9FA0: "proc",
    0xEF53: "ext4",
    0x58465342: "xfs",
    0x9123683E: "btrfs",
    0x2FC12FC1: "zfs",
    0x6969: "nfs",
    0x65735546: "fuse",
    0x858458F6: "ramfs",
    0x01021997: "v9fs",
}
"""statfs ``f_type`` magic numbers (linux/magic.h) of the filesystems dind names."""


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
_umount2 = _libc.umount2
_umount2.argtypes = (ctypes.c_char_p, ctypes.c_int)
_umount2.restype = ctypes.c_int
_unshare = _libc.unshare
_unshare.argtypes = (ctypes.c_int,)
_unshare.restype = ctypes.c_int
_prctl = _libc.prctl
_prctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong)
_prctl.restype = ctypes.c_int
_statfs = _libc.statfs
_statfs.argtypes = (ctypes.c_char_p, ctypes.POINTER(_Statfs))
_statfs.restype = ctypes.c_int
_fstatfs = _libc.fstatfs
_fstatfs.argtypes = (ctypes.c_int, ctypes.POINTER(_Statfs))
_fstatfs.restype = ctypes.c_int


def _oserror(path: str) -> OSError:
    err = ctypes.get_errno()
    return OSError(err, os.strerror(err), path)


def _arg(value: str | None) -> bytes | None:
    return None if not value else os.fsencode(value)


def mount(
    source: str | None, target: str, fstype: str | None, flags: int, data: str | None
) -> None:
    """mount(2) onto the object ``target`` names, opened without symlinks (errors name it).

    A bind mount's source is a path too: it is opened the same way and bound by descriptor.
    """
    fd = open_path(target)
    source_fd = -1
    try:
        if flags & MS_BIND and not flags & MS_REMOUNT and source is not None:
            source_fd = open_path(source)
            source = f"/proc/self/fd/{source_fd}"
        if _mount(_arg(source), f"/proc/self/fd/{fd}".encode(), _arg(fstype), flags, _arg(data)):
            raise _oserror(target)
    finally:
        os.close(fd)
        if source_fd >= 0:
            os.close(source_fd)


def umount(target: str, flags: int = MNT_DETACH) -> None:
    """umount2(2) of the mount on ``target`` (opened without symlinks)."""
    fd = open_path(target)
    try:
        if _umount2(f"/proc/self/fd/{fd}".encode(), flags):
            raise _oserror(target)
    finally:
        os.close(fd)


def unshare(flags: int) -> None:
    if _unshare(flags):
        raise _oserror("unshare")


def set_child_subreaper() -> None:
    """prctl(PR_SET_CHILD_SUBREAPER): orphans of our descendants are re-parented to us."""
    if _prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise _oserror("prctl(PR_SET_CHILD_SUBREAPER)")


def statfs_type(path: str) -> int:
    """The filesystem magic number of ``path`` (statfs(2) ``f_type``); follows nothing odd."""
    buf = _Statfs()
    if _statfs(os.fsencode(path), ctypes.byref(buf)) != 0:
        raise _oserror(path)
    return int(buf.f_type) & 0xFFFFFFFF


def fs_name(magic: int) -> str:
    return FS_NAMES.get(magic, f"0x{magic:x}")


def fs_type(path: str) -> str | None:
    """Filesystem type of ``path`` by statfs magic; None if it cannot be asked."""
    try:
        return fs_name(statfs_type(path))
    except OSError:
        return None


def lock(fd: int) -> None:
    """flock(LOCK_EX) on ``fd``, waiting; released when every descriptor of it is closed."""
    import fcntl

    fcntl.flock(fd, fcntl.LOCK_EX)


class LinuxKernel:
    """The real system. Every method raises OSError carrying the path it failed on."""

    def mount(
        self, source: str | None, target: str, fstype: str | None, flags: int, data: str | None
    ) -> None:
        mount(source, target, fstype, flags, data)

    def umount(self, target: str) -> None:
        umount(target)

    def unshare(self, flags: int) -> None:
        unshare(flags)

    def mkdir(self, path: str, mode: int = 0o755) -> None:
        with at(path) as (fd, name):
            os.mkdir(name, mode, dir_fd=fd)

    def symlink(self, link_target: str, path: str) -> None:
        """symlinkat; an existing link is replaced atomically (a new name, then renameat)."""
        with at(path) as (fd, name):
            if stat.S_ISLNK(_lstat_mode(name, fd)):
                temp = f".{name}.dind-{os.getpid()}"
                os.symlink(link_target, temp, dir_fd=fd)
                os.rename(temp, name, src_dir_fd=fd, dst_dir_fd=fd)
            else:
                os.symlink(link_target, name, dir_fd=fd)

    def unlink(self, path: str) -> None:
        with at(path) as (fd, name):
            os.unlink(name, dir_fd=fd)

    def kind(self, path: str) -> str | None:
        """'dir', 'link', 'other' or None when missing; ELOOP when a parent is a symlink."""
        if path == "/":
            return "dir"
        fd, name = parent(path)
        try:
            mode = os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode
        except FileNotFoundError:
            return None
        finally:
            os.close(fd)
        if stat.S_ISLNK(mode):
            return "link"
        return "dir" if stat.S_ISDIR(mode) else "other"

    def read(self, path: str) -> str:
        fd = open_path(path, os.O_RDONLY)
        with os.fdopen(fd, encoding="utf-8", errors="surrogateescape") as f:
            return f.read()

    def write(self, path: str, data: str) -> None:
        """One write(2) per call: cgroup files act on each write, not on the whole file."""
        fd = open_path(path, os.O_WRONLY)
        try:
            os.write(fd, os.fsencode(data))
        except OSError as err:
            raise OSError(err.errno, err.strerror, path) from None
        finally:
            os.close(fd)

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


def _lstat_mode(name: str, dir_fd: int) -> int:
    """The mode of ``name`` below ``dir_fd`` without following it; 0 when it is not there."""
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode
    except OSError:
        return 0
