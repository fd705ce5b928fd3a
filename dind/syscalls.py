"""The system calls dind acts through (ctypes, ``use_errno``), and paths opened without symlinks.

Every path dind mounts on, creates, removes or writes is opened with
``openat2(RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)`` (component by component
with ``O_NOFOLLOW`` where openat2 is missing), and the operation then acts on the
opened object: ``mount(2)`` onto ``/proc/self/fd/N``, ``mkdirat``/``symlinkat``/
``unlinkat`` relative to the parent's descriptor, as runc does since its symlink
CVEs. What was checked is what gets changed: a path swapped for a symlink in
between makes the open fail (ELOOP), never the mount land elsewhere.

``LinuxKernel`` is the real implementation of the ``dind.kernel.Kernel`` protocol;
tests use a full fake for error paths and this one for real, in namespaces.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import stat
import time

MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_SHARED = 1 << 20
MNT_DETACH = 0x2
CLONE_NEWCGROUP = 0x02000000
PR_SET_CHILD_SUBREAPER = 36

SYS_OPENAT2 = 437
"""Same number on every architecture with the generic syscall table (since Linux 5.6)."""
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
_RESOLVE = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS

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


class _OpenHow(ctypes.Structure):
    """``struct open_how`` of openat2(2)."""

    _fields_ = (
        ("flags", ctypes.c_uint64),
        ("mode", ctypes.c_uint64),
        ("resolve", ctypes.c_uint64),
    )


TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator

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
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long

_openat2 = {"usable": True}
"""False once openat2 answered ENOSYS (kernel < 5.6, or a seccomp filter that hides it)."""


def _oserror(path: str) -> OSError:
    err = ctypes.get_errno()
    return OSError(err, os.strerror(err), path)


def _arg(value: str | None) -> bytes | None:
    return None if not value else os.fsencode(value)


def _components(path: str) -> list[str]:
    """The names of an absolute, normalised path; ``.`` and ``..`` are refused outright."""
    if not path.startswith("/"):
        raise OSError(errno.EINVAL, "not an absolute path", path)
    parts = [p for p in path.split("/") if p]
    if any(p in (".", "..") for p in parts):
        raise OSError(errno.EINVAL, "'.' or '..' in the path", path)
    return parts


def _open_child(fd: int, part: str, flags: int, path: str) -> int:
    """One ``O_NOFOLLOW`` open below ``fd``; a symlink there is ELOOP, whatever the flags."""
    try:
        return os.open(part, flags | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
    except OSError as err:
        code = err.errno
        if code in (errno.ELOOP, errno.ENOTDIR) and _is_link(part, fd):
            code = errno.ELOOP
        raise OSError(code, os.strerror(code or 0), path) from None


def _walk(path: str, flags: int) -> int:
    """openat2's job done by hand: one ``O_NOFOLLOW`` open per component from ``/``."""
    parts = _components(path)
    if not parts:
        return os.open("/", flags | os.O_CLOEXEC)
    fd = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        try:
            child = _open_child(fd, part, flags if last else os.O_PATH | os.O_DIRECTORY, path)
        finally:
            os.close(fd)
        fd = child
    if flags & os.O_PATH and stat.S_ISLNK(os.fstat(fd).st_mode):
        os.close(fd)  # O_PATH | O_NOFOLLOW opened the link itself
        raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
    return fd


def _is_link(name: str, dir_fd: int) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def open_path(path: str, flags: int = os.O_PATH, mode: int = 0) -> int:
    """Open absolute ``path`` without following a symlink in any component (ELOOP if one is).

    Returns a close-on-exec descriptor. ``O_PATH`` (the default) opens the object
    itself, for mounting on it or as the ``dir_fd`` of *at calls.
    """
    if _openat2["usable"]:
        _components(path)
        how = _OpenHow(flags | os.O_CLOEXEC, mode, _RESOLVE)
        fd = _syscall(
            ctypes.c_long(SYS_OPENAT2),
            ctypes.c_int(-100),  # AT_FDCWD: the path is absolute
            ctypes.c_char_p(os.fsencode(path)),
            ctypes.byref(how),
            ctypes.c_size_t(ctypes.sizeof(how)),
        )
        if fd >= 0:
            return int(fd)
        err = ctypes.get_errno()
        if err != errno.ENOSYS:
            raise OSError(err, os.strerror(err), path)
        _openat2["usable"] = False
    return _walk(path, flags)


def first_symlink(path: str) -> str | None:
    """The first component of ``path`` that is a symlink (for messages), else None."""
    probe = ""
    for part in _components(path):
        probe += "/" + part
        try:
            if stat.S_ISLNK(os.lstat(probe).st_mode):
                return probe
        except OSError:
            return None
    return None


def _parent(path: str) -> tuple[int, str]:
    """An ``O_PATH`` descriptor of the parent directory of ``path``, and the last name."""
    parent, _, name = path.rpartition("/")
    if not name or name in (".", ".."):
        raise OSError(errno.EINVAL, "no file name in the path", path)
    fd = open_path(parent or "/", os.O_PATH | os.O_DIRECTORY)
    return fd, name


@contextlib.contextmanager
def _at(path: str) -> Iterator[tuple[int, str]]:
    """The parent's descriptor and the last name of ``path``, for an *at call; errors name
    ``path`` and the descriptor is closed whatever happens."""
    fd, name = _parent(path)
    try:
        yield fd, name
    except OSError as err:
        raise OSError(err.errno, err.strerror, path) from None
    finally:
        os.close(fd)


def mount(
    source: str | None, target: str, fstype: str | None, flags: int, data: str | None
) -> None:
    """mount(2) onto the object ``target`` names, opened without symlinks (errors name it)."""
    fd = open_path(target)
    try:
        if _mount(_arg(source), f"/proc/self/fd/{fd}".encode(), _arg(fstype), flags, _arg(data)):
            raise _oserror(target)
    finally:
        os.close(fd)


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
        with _at(path) as (fd, name):
            os.mkdir(name, mode, dir_fd=fd)

    def symlink(self, link_target: str, path: str) -> None:
        """symlinkat; an existing link is replaced atomically (a new name, then renameat)."""
        with _at(path) as (fd, name):
            if _is_link(name, fd):
                temp = f".{name}.dind-{os.getpid()}"
                os.symlink(link_target, temp, dir_fd=fd)
                os.rename(temp, name, src_dir_fd=fd, dst_dir_fd=fd)
            else:
                os.symlink(link_target, name, dir_fd=fd)

    def unlink(self, path: str) -> None:
        with _at(path) as (fd, name):
            os.unlink(name, dir_fd=fd)

    def kind(self, path: str) -> str | None:
        """'dir', 'link', 'other' or None when missing; ELOOP when a parent is a symlink."""
        if path == "/":
            return "dir"
        fd, name = _parent(path)
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
