"""Paths opened without following symlinks: the one door for what dind mounts on, reads and writes.

dind runs as root beside directories that others write: a certificate volume
shared with CI jobs, the frozen images' output directory, a rootless user's home.
A symlink (or a FIFO, or a hard link) planted under a name dind uses must never
turn an operation into one elsewhere, and what was checked must be what is acted
on. So:

- ``open_path``: an absolute path opened with ``openat2(RESOLVE_NO_SYMLINKS |
  RESOLVE_NO_MAGICLINKS)``, component by component with ``O_NOFOLLOW`` where
  openat2 is missing (kernel < 5.6, or a seccomp filter hiding it), as runc does
  since its symlink CVEs. Mounts then go onto ``/proc/self/fd/N``.
- ``at``: the parent's descriptor and the last name, for the *at calls.
- ``Dir``: a directory held by a descriptor; every name below it is opened from
  that descriptor with ``O_NOFOLLOW``, files ``O_NONBLOCK`` (a planted FIFO is
  refused, not waited on) and regular only, reads bounded, new files created
  ``O_EXCL`` and renamed into place, modes and owners changed through a descriptor
  of a file with a single link (never through someone else's file).

Refusals raise ``Refused`` (an ``OSError`` whose ``reason`` says what the name is);
system errors raise ``OSError`` naming the full path. Callers word both in their
own terms (a TLS step, a download tool).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import stat

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from types import TracebackType

SYS_OPENAT2 = 437
"""Same number on every architecture with the generic syscall table (since Linux 5.6)."""
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
_RESOLVE = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS
AT_FDCWD = -100

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
READ_CHUNK = 1 << 20

SYMLINK = "symlink"
NOT_REGULAR = "not-regular"
NOT_DIRECTORY = "not-directory"
TOO_LARGE = "too-large"
LINKED = "linked"
NOT_A_NAME = "not-a-name"


class _OpenHow(ctypes.Structure):
    """``struct open_how`` of openat2(2)."""

    _fields_ = (
        ("flags", ctypes.c_uint64),
        ("mode", ctypes.c_uint64),
        ("resolve", ctypes.c_uint64),
    )


_syscall = ctypes.CDLL(None, use_errno=True).syscall
_syscall.restype = ctypes.c_long
_openat2 = {"usable": True}
"""False once openat2 answered ENOSYS."""


class Refused(OSError):
    """A name dind will not act on; ``kind`` (one of the constants) and ``reason`` say why.

    ``str()`` is ``PATH REASON`` (``/certs/ca.pem is a symlink``).
    """

    def __init__(self, path: str, kind: str, reason: str, code: int = errno.EPERM) -> None:
        super().__init__(code, reason, path)
        self.kind = kind
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.filename} {self.reason}"


# --- Absolute paths -----------------------------------------------------------------------


def _components(path: str) -> list[str]:
    """The names of an absolute, normalised path; ``.`` and ``..`` are refused outright."""
    if not path.startswith("/"):
        raise OSError(errno.EINVAL, "not an absolute path", path)
    parts = [p for p in path.split("/") if p]
    if any(p in (".", "..") for p in parts):
        raise OSError(errno.EINVAL, "'.' or '..' in the path", path)
    return parts


def _is_link(name: str, dir_fd: int) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _open_child(fd: int, part: str, flags: int, path: str) -> int:
    """One ``O_NOFOLLOW`` open below ``fd``; a symlink there is ELOOP, whatever the flags."""
    try:
        return os.open(part, flags | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
    except OSError as err:
        code = err.errno
        if code in (errno.ELOOP, errno.ENOTDIR) and _is_link(part, fd):
            code = errno.ELOOP
        raise OSError(code, os.strerror(code or 0), path) from None


def walk(path: str, flags: int) -> int:
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
            ctypes.c_int(AT_FDCWD),
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
    return walk(path, flags)


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


def parent(path: str) -> tuple[int, str]:
    """An ``O_PATH`` descriptor of the parent directory of ``path``, and the last name."""
    head, _, name = path.rpartition("/")
    if not name or name in (".", ".."):
        raise OSError(errno.EINVAL, "no file name in the path", path)
    fd = open_path(head or "/", os.O_PATH | os.O_DIRECTORY)
    return fd, name


@contextlib.contextmanager
def at(path: str) -> Iterator[tuple[int, str]]:
    """The parent's descriptor and the last name of ``path``, for an *at call; errors name
    ``path`` and the descriptor is closed whatever happens."""
    fd, name = parent(path)
    try:
        yield fd, name
    except OSError as err:
        raise OSError(err.errno, err.strerror, path) from None
    finally:
        os.close(fd)


def read_file(path: str, limit: int) -> bytes:
    """The bytes of the regular file at absolute ``path``: no symlink anywhere, never
    blocking on a FIFO or device, at most ``limit`` bytes (else ``Refused``)."""
    fd = open_path(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    try:
        return _read_regular(fd, path, limit)
    finally:
        os.close(fd)


def _read_regular(fd: int, path: str, limit: int) -> bytes:
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        raise Refused(path, NOT_REGULAR, "is not a regular file", errno.EINVAL)
    chunks: list[bytes] = []
    size = 0
    while chunk := os.read(fd, min(READ_CHUNK, limit + 1 - size)):
        size += len(chunk)
        if size > limit:
            raise Refused(path, TOO_LARGE, f"is larger than {limit} bytes", errno.EFBIG)
        chunks.append(chunk)
    return b"".join(chunks)


# --- A directory held by a descriptor ----------------------------------------------------


class Dir:
    """A directory open by descriptor; ``path`` is only for messages. Close it, or ``with``."""

    __slots__ = ("fd", "path")

    def __init__(self, fd: int, path: str) -> None:
        self.fd = fd
        self.path = path

    @classmethod
    def open(cls, path: str, *, create: bool = False, mode: int = 0o755) -> Dir:
        """Absolute ``path``, no symlink in any component; made (``mode``, parents too) when
        missing and ``create``, else ``FileNotFoundError``."""
        flags = os.O_RDONLY | os.O_DIRECTORY  # openat2 refuses a symlink anywhere: ELOOP
        try:
            return cls(open_path(path, flags), path)
        except FileNotFoundError:
            if not create:
                raise
        parts = _components(path)
        missing: list[str] = []
        while True:
            missing.append(parts.pop())
            above = "/" + "/".join(parts)
            try:
                current = cls(open_path(above, flags), above)
                break
            except FileNotFoundError:
                if not parts:
                    raise
        for name in reversed(missing):
            try:
                child = current.subdir(name, create=True, mode=mode)
            finally:
                current.close()
            assert child is not None
            current = child
        return current

    @classmethod
    def open_followed(cls, path: str, *, mode: int = 0o755) -> Dir:
        """A directory the user named, made if missing: here (only) symlinks are followed."""
        os.makedirs(path, mode, exist_ok=True)
        return cls(os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC), path)

    def where(self, name: str) -> str:
        return f"{self.path.rstrip('/')}/{name}"

    def close(self) -> None:
        os.close(self.fd)

    def __enter__(self) -> Dir:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _named(self, err: OSError, name: str, other: str | None = None) -> OSError:
        """``err`` naming the full path (a ``dir_fd`` call only knows the last component)."""
        if isinstance(err, Refused):
            return err
        return OSError(err.errno, err.strerror, self.where(name), None, other)

    def _check_name(self, name: str) -> None:
        if name in ("", ".", "..") or "/" in name or "\0" in name:
            raise Refused(self.where(name), NOT_A_NAME, "is not a name in the directory")

    def _refusal(self, name: str, err: OSError) -> OSError:
        """Why ``name`` could not be opened: a planted symlink is named as such."""
        if err.errno in (errno.ELOOP, errno.ENOTDIR, errno.ENXIO) and _is_link(name, self.fd):
            return Refused(self.where(name), SYMLINK, "is a symlink", errno.ELOOP)
        if err.errno == errno.ENOTDIR:
            return Refused(self.where(name), NOT_DIRECTORY, "is not a directory", errno.ENOTDIR)
        return self._named(err, name)

    # -- what is there

    def lstat(self, name: str) -> os.stat_result | None:
        """What ``name`` is (a symlink stays a symlink); None if it does not exist."""
        self._check_name(name)
        try:
            return os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        except OSError as err:
            raise self._named(err, name) from None

    def regular(self, name: str) -> os.stat_result | None:
        """``name`` as a regular file (None if absent); ``Refused`` if it is anything else."""
        st = self.lstat(name)
        if st is None or stat.S_ISREG(st.st_mode):
            return st
        if stat.S_ISLNK(st.st_mode):
            raise Refused(self.where(name), SYMLINK, "is a symlink", errno.ELOOP)
        raise Refused(self.where(name), NOT_REGULAR, "is not a regular file", errno.EINVAL)

    def names(self) -> list[str]:
        try:
            return os.listdir(self.fd)
        except OSError as err:
            raise OSError(err.errno, err.strerror, self.path) from None

    # -- directories

    def subdir(self, name: str, *, create: bool = False, mode: int = 0o755) -> Dir | None:
        """The directory ``name`` in this one (made with exactly ``mode`` when missing and
        ``create``); None if there is none."""
        self._check_name(name)
        made = False
        if create:
            try:
                os.mkdir(name, mode, dir_fd=self.fd)
                made = True
            except FileExistsError:
                pass
            except OSError as err:
                raise self._named(err, name) from None
        try:
            child = Dir(os.open(name, _DIR, dir_fd=self.fd), self.where(name))
        except FileNotFoundError:
            return None
        except OSError as err:
            raise self._refusal(name, err) from None
        if made:
            try:
                child.chmod_self(mode)
            except BaseException:
                child.close()
                raise
        return child

    def walk(self, rel: str, *, create: bool = False, mode: int = 0o755) -> Dir | None:
        """The directory at relative path ``rel``, no component followed; None if missing."""
        current: Dir = self
        for name in rel.split("/"):
            found = current.subdir(name, create=create, mode=mode)
            if current is not self:
                current.close()
            if found is None:
                return None
            current = found
        return None if current is self else current

    def chmod_self(self, mode: int) -> None:
        """Exactly ``mode``, whatever the umask."""
        try:
            os.fchmod(self.fd, mode)
        except OSError as err:
            raise OSError(err.errno, err.strerror, self.path) from None

    def chown_self(self, uid: int, gid: int) -> None:
        try:
            os.fchown(self.fd, uid, gid)
        except OSError as err:
            raise OSError(err.errno, err.strerror, self.path) from None

    def fsync(self) -> None:
        """Make the renames done in this directory durable."""
        try:
            os.fsync(self.fd)
        except OSError as err:
            raise OSError(err.errno, err.strerror, self.path) from None

    # -- files

    def open_file(
        self, name: str, flags: int = os.O_RDONLY, *, single_link: bool = False
    ) -> int | None:
        """A blocking fd on the regular file ``name`` (read-only, or ``flags`` such as
        O_RDWR); None if it does not exist.

        A symlink, anything but a regular file (opened non-blocking, so a FIFO is
        refused at once) and, with ``single_link`` (a file about to be written or
        changed), a file with other hard links are refused.
        """
        self._check_name(name)
        try:
            fd = os.open(name, flags | _FILE, dir_fd=self.fd)
        except FileNotFoundError:
            return None
        except OSError as err:
            raise self._refusal(name, err) from None
        st = os.fstat(fd)
        problem = None
        if not stat.S_ISREG(st.st_mode):
            problem = Refused(self.where(name), NOT_REGULAR, "is not a regular file", errno.EINVAL)
        elif single_link and st.st_nlink != 1:
            reason = f"has {st.st_nlink} hard links"
            problem = Refused(self.where(name), LINKED, reason, errno.EMLINK)
        if problem is not None:
            os.close(fd)
            raise problem
        os.set_blocking(fd, True)
        return fd

    def read(self, name: str, limit: int) -> bytes | None:
        """The content of the regular file ``name`` (None if missing), at most ``limit`` bytes."""
        fd = self.open_file(name)
        if fd is None:
            return None
        try:
            return _read_regular(fd, self.where(name), limit)
        except Refused:
            raise
        except OSError as err:
            raise self._named(err, name) from None
        finally:
            os.close(fd)

    def chmod(self, name: str, mode: int) -> None:
        """chmod of the regular file ``name``, only if it has no other hard link: a link to
        a file elsewhere must not get the mode meant for this one."""
        self._change(name, lambda fd: os.fchmod(fd, mode), lambda st: stat.S_IMODE(st) != mode)

    def chown(self, name: str, uid: int, gid: int) -> None:
        """chown of the regular file ``name``, on the same terms as ``chmod``."""
        self._change(name, lambda fd: os.fchown(fd, uid, gid), lambda _: True)

    def _change(self, name: str, act: Callable[[int], None], needed: Callable[[int], bool]) -> None:
        fd = self.open_file(name, single_link=True)
        if fd is None:
            raise self._named(OSError(errno.ENOENT, os.strerror(errno.ENOENT)), name)
        try:
            if needed(os.fstat(fd).st_mode):
                act(fd)
        except OSError as err:
            raise self._named(err, name) from None
        finally:
            os.close(fd)

    def create(self, name: str, mode: int = 0o644) -> int:
        """A new, empty file ``name`` open for writing, replacing whatever entry was there.

        The old entry is unlinked (a symlink goes, not its target), then the file is
        created with O_EXCL: if anything appears in between, this fails.
        """
        self.unlink(name)
        try:
            return os.open(name, _CREATE, mode, dir_fd=self.fd)
        except OSError as err:
            raise self._named(err, name) from None

    def unlink(self, name: str) -> None:
        """Remove the entry ``name`` if present (never what a symlink points to)."""
        self._check_name(name)
        try:
            os.unlink(name, dir_fd=self.fd)
        except FileNotFoundError:
            pass
        except OSError as err:
            raise self._named(err, name) from None

    def rename(self, name: str, target: Dir, target_name: str) -> None:
        """rename(2) ``name`` to ``target_name`` in ``target`` (an entry there is replaced).

        An error names the name being replaced (``filename2`` the one renamed)."""
        self._check_name(name)
        target._check_name(target_name)
        try:
            os.replace(name, target_name, src_dir_fd=self.fd, dst_dir_fd=target.fd)
        except OSError as err:
            raise OSError(
                err.errno, err.strerror, target.where(target_name), None, self.where(name)
            ) from None

    def stage(self, name: str, data: bytes, mode: int, *, tag: str = "dind") -> str:
        """``data`` written (exactly ``mode``) and fsynced under a new temporary name
        ``.NAME.TAG-PID-RANDOM.tmp``; that name, for ``rename`` or ``unlink``."""
        self._check_name(name)
        temp = f".{name}.{tag}-{os.getpid()}-{os.urandom(8).hex()}.tmp"
        try:
            fd = os.open(temp, _CREATE, mode, dir_fd=self.fd)
        except OSError as err:
            raise self._named(err, name) from None
        try:
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except OSError as err:
            self.discard(temp)
            raise self._named(err, name) from None
        finally:
            os.close(fd)
        return temp

    def discard(self, name: str) -> None:
        """Best effort removal (a temporary file left behind is removed by a later run)."""
        with contextlib.suppress(OSError):
            os.unlink(name, dir_fd=self.fd)

    def write_atomic(self, name: str, data: bytes, mode: int = 0o644) -> None:
        """``name`` replaced by ``data`` in one rename: staged, fsynced, renamed, dir fsynced."""
        temp = self.stage(name, data, mode)
        try:
            self.rename(temp, self, name)
        except BaseException:
            self.discard(temp)
            raise
        self.fsync()
