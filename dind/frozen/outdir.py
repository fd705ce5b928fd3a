"""The output directory, held open by a file descriptor: nothing inside it is followed.

The tool runs as root in a directory that others (an earlier run, a user, a script)
may have written to. A symlink planted as ``.manifest.json.tmp``, ``blobs/`` or a
partial download must not turn a write into one elsewhere, so every name inside is
resolved one component at a time from a directory fd, with ``O_NOFOLLOW`` (and
``dir_fd=`` for mkdir, rename, unlink and stat); files are created with
``O_CREAT|O_EXCL``; a symlink where one of our directories belongs is refused. The
output directory itself was named by the user and may be a symlink.
"""

from __future__ import annotations

import contextlib
import errno
import os
import posixpath
import stat
from pathlib import Path
from types import TracebackType

from dind.frozen.errors import StoreError

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a FIFO planted under one of our names must not hang.
_OPEN = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class Dir:
    """A directory open by fd; ``path`` is only for messages. Close it (or use ``with``)."""

    def __init__(self, fd: int, path: Path) -> None:
        self.fd = fd
        self.path = path

    @classmethod
    def open_root(cls, path: Path) -> Dir:
        """The user's output directory, created if missing (here symlinks are followed)."""
        try:
            path.mkdir(parents=True, exist_ok=True)
            return cls(os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC), path)
        except OSError as err:
            raise StoreError(f"cannot create {path}: {err.strerror or err}") from None

    def close(self) -> None:
        os.close(self.fd)

    def __enter__(self) -> Dir:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- directories

    def subdir(self, name: str) -> Dir | None:
        """The directory ``name`` in this one; None if there is none."""
        if name in ("", ".", "..") or "/" in name:
            raise StoreError(f"{self.path / name}: not a name inside {self.path}")
        try:
            return Dir(os.open(name, _DIR, dir_fd=self.fd), self.path / name)
        except FileNotFoundError:
            return None
        except OSError as err:
            raise StoreError(self._refusal(name, err)) from None

    def walk(self, rel: str) -> Dir | None:
        """The directory at relative path ``rel``, no component followed; None if missing."""
        current: Dir | None = self
        for name in rel.split("/"):
            assert current is not None
            found = current.subdir(name)
            if current is not self:
                current.close()
            if found is None:
                return None
            current = found
        assert current is not None and current is not self
        return current

    def ensure(self, rel: str) -> Dir:
        """Like ``walk``, creating what is missing (mode 0755)."""
        current = self
        for name in rel.split("/"):
            try:
                os.mkdir(name, 0o755, dir_fd=current.fd)
            except FileExistsError:
                pass
            except OSError as err:
                raise StoreError(f"cannot create {current.path / name}: {err.strerror}") from None
            found = current.subdir(name)
            if current is not self:
                current.close()
            if found is None:
                raise StoreError(f"{current.path / name} vanished while being created")
            current = found
        return current

    def fsync(self) -> None:
        """Make the renames done in this directory durable."""
        try:
            os.fsync(self.fd)
        except OSError as err:
            raise StoreError(f"cannot sync {self.path}: {err.strerror or err}") from None

    # -- files

    def lstat(self, name: str) -> os.stat_result | None:
        """What ``name`` is (a symlink stays a symlink); None if it does not exist."""
        try:
            return os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        except OSError as err:
            raise StoreError(f"cannot read {self.path / name}: {err.strerror or err}") from None

    def is_file(self, rel: str) -> bool:
        """True if ``rel`` is a regular file reached without following any symlink."""
        folder, name = posixpath.split(rel)
        try:
            parent = self.walk(folder) if folder else self
        except StoreError:
            return False
        if parent is None:
            return False
        try:
            st = parent.lstat(name)
        finally:
            if parent is not self:
                parent.close()
        return st is not None and stat.S_ISREG(st.st_mode)

    def open_file(
        self, name: str, flags: int = os.O_RDONLY, *, single_link: bool = False
    ) -> int | None:
        """An fd on the regular file ``name`` (read-only, or ``flags`` such as O_RDWR);
        None if it does not exist.

        A symlink, anything but a regular file, and (``single_link``, for files about to
        be written) a file with other hard links are refused.
        """
        try:
            fd = os.open(name, flags | _OPEN, dir_fd=self.fd)
        except FileNotFoundError:
            return None
        except OSError as err:
            raise StoreError(self._refusal(name, err)) from None
        st = os.fstat(fd)
        problem = ""
        if not stat.S_ISREG(st.st_mode):
            problem = "is not a regular file"
        elif single_link and st.st_nlink != 1:
            problem = f"has {st.st_nlink} hard links; refusing to write to it"
        if problem:
            os.close(fd)
            raise StoreError(f"{self.path / name} {problem}")
        os.set_blocking(fd, True)
        return fd

    def read(self, name: str, limit: int) -> bytes | None:
        """The content of the regular file ``name`` (None if missing), at most ``limit`` bytes."""
        fd = self.open_file(name)
        if fd is None:
            return None
        with os.fdopen(fd, "rb") as f:
            data = f.read(limit + 1)
        if len(data) > limit:
            raise StoreError(f"{self.path / name} is larger than {limit} bytes")
        return data

    def create(self, name: str) -> int:
        """A new, empty file ``name`` open for writing, replacing whatever entry was there.

        The old entry is unlinked (a symlink goes, not its target), then the file is
        created with O_EXCL: if anything appears in between, this fails.
        """
        self.unlink(name)
        try:
            return os.open(name, _CREATE, 0o644, dir_fd=self.fd)
        except OSError as err:
            raise self._named(err, name) from None

    def unlink(self, name: str) -> None:
        """Remove the entry ``name`` if present (never what a symlink points to)."""
        try:
            os.unlink(name, dir_fd=self.fd)
        except FileNotFoundError:
            pass
        except OSError as err:
            raise self._named(err, name) from None

    def replace(self, name: str, target: Dir, target_name: str) -> None:
        """rename(2) ``name`` to ``target_name`` in ``target`` (a symlink there is replaced)."""
        try:
            os.replace(name, target_name, src_dir_fd=self.fd, dst_dir_fd=target.fd)
        except OSError as err:
            raise self._named(err, name, target.path / target_name) from None

    def write_atomic(self, name: str, data: bytes) -> None:
        """Write ``.NAME.tmp``, fsync it, rename it over ``name``, fsync the directory."""
        tmp = f".{name}.tmp"
        try:
            with os.fdopen(self.create(tmp), "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            self.replace(tmp, self, name)
            os.fsync(self.fd)
        except OSError as err:
            with contextlib.suppress(OSError):
                self.unlink(tmp)
            raise StoreError(f"cannot write {self.path / name}: {err.strerror or err}") from None

    def _named(self, err: OSError, name: str, other: Path | None = None) -> OSError:
        """``err`` naming the full path (a ``dir_fd`` call only knows the last component)."""
        second = str(other) if other is not None else None
        return OSError(err.errno, err.strerror, str(self.path / name), None, second)

    def _refusal(self, name: str, err: OSError) -> str:
        """Why ``name`` could not be opened; planted symlinks get named as such."""
        where = self.path / name
        try:
            st = self.lstat(name)
        except StoreError:
            st = None
        if st is not None and stat.S_ISLNK(st.st_mode):
            return f"{where} is a symbolic link; refusing to follow it"
        if err.errno == errno.ENOTDIR:
            return f"{where} is not a directory"
        return f"cannot open {where}: {err.strerror or err}"
