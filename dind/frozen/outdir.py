"""The output directory, held open by a file descriptor: nothing inside it is followed.

The tool runs as root in a directory that others (an earlier run, a user, a script)
may have written to. A symlink planted as ``.manifest.json.tmp``, ``blobs/`` or a
partial download must not turn a write into one elsewhere: every name inside is
opened through ``dind.safepath.Dir`` (one component at a time from a directory fd,
``O_NOFOLLOW``, regular files only, ``O_EXCL`` for new ones), the one door dind has
for this. This module only speaks the tool's language: ``Path`` for messages, and
``StoreError`` (exit 1) for a name that is not what it must be. The output
directory itself was named by the user and may be a symlink.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType

from dind import safepath
from dind.frozen.errors import StoreError


def _refusal(err: safepath.Refused) -> StoreError:
    """A refusal in the tool's words (tests and users know these)."""
    where = err.filename
    wording = {
        safepath.SYMLINK: "is a symbolic link; refusing to follow it",
        safepath.LINKED: f"{err.reason}; refusing to write to it",
    }
    return StoreError(f"{where} {wording.get(err.kind, err.reason)}")


class Dir:
    """A directory of the output, open by fd; ``path`` is only for messages. Close it."""

    def __init__(self, door: safepath.Dir) -> None:
        self.door = door
        self.path = Path(door.path)

    @property
    def fd(self) -> int:
        return self.door.fd

    @classmethod
    def open_root(cls, path: Path) -> Dir:
        """The user's output directory, created if missing (here symlinks are followed)."""
        try:
            return cls(safepath.Dir.open_followed(str(path)))
        except OSError as err:
            raise StoreError(f"cannot create {path}: {err.strerror or err}") from None

    def close(self) -> None:
        self.door.close()

    def __enter__(self) -> Dir:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- directories

    def subdir(self, name: str) -> Dir | None:
        """The directory ``name`` in this one; None if there is none."""
        try:
            found = self.door.subdir(name)
        except safepath.Refused as err:
            if err.kind == safepath.NOT_A_NAME:
                raise StoreError(f"{self.path / name}: not a name inside {self.path}") from None
            raise _refusal(err) from None
        except OSError as err:
            raise StoreError(f"cannot open {self.path / name}: {err.strerror or err}") from None
        return None if found is None else Dir(found)

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
        try:
            found = self.door.walk(rel, create=True)
        except safepath.Refused as err:
            raise _refusal(err) from None
        except OSError as err:
            raise StoreError(f"cannot create {err.filename}: {err.strerror}") from None
        if found is None:
            raise StoreError(f"{self.path / rel} vanished while being created")
        return Dir(found)

    def fsync(self) -> None:
        """Make the renames done in this directory durable."""
        try:
            self.door.fsync()
        except OSError as err:
            raise StoreError(f"cannot sync {self.path}: {err.strerror or err}") from None

    # -- files

    def lstat(self, name: str) -> os.stat_result | None:
        """What ``name`` is (a symlink stays a symlink); None if it does not exist."""
        try:
            return self.door.lstat(name)
        except OSError as err:
            raise StoreError(f"cannot read {self.path / name}: {err.strerror or err}") from None

    def is_file(self, rel: str) -> bool:
        """True if ``rel`` is a regular file reached without following any symlink."""
        folder, _, name = rel.rpartition("/")
        try:
            parent = self.walk(folder) if folder else self
        except StoreError:
            return False
        if parent is None:
            return False
        try:
            return parent.door.regular(name) is not None
        except OSError:
            return False
        finally:
            if parent is not self:
                parent.close()

    def open_file(
        self, name: str, flags: int = os.O_RDONLY, *, single_link: bool = False
    ) -> int | None:
        """An fd on the regular file ``name`` (see ``safepath.Dir.open_file``); None if missing."""
        try:
            return self.door.open_file(name, flags, single_link=single_link)
        except safepath.Refused as err:
            raise _refusal(err) from None
        except OSError as err:
            raise StoreError(f"cannot open {self.path / name}: {err.strerror or err}") from None

    def read(self, name: str, limit: int) -> bytes | None:
        """The content of the regular file ``name`` (None if missing), at most ``limit`` bytes."""
        try:
            return self.door.read(name, limit)
        except safepath.Refused as err:
            raise _refusal(err) from None
        except OSError as err:
            raise StoreError(f"cannot read {self.path / name}: {err.strerror or err}") from None

    def create(self, name: str) -> int:
        """A new, empty file ``name`` open for writing, replacing whatever entry was there.

        An OSError names the file (the caller words disk failures).
        """
        return self.door.create(name)

    def unlink(self, name: str) -> None:
        """Remove the entry ``name`` if present (never what a symlink points to)."""
        self.door.unlink(name)

    def replace(self, name: str, target: Dir, target_name: str) -> None:
        """rename(2) ``name`` to ``target_name`` in ``target`` (a symlink there is replaced)."""
        self.door.rename(name, target.door, target_name)

    def write_atomic(self, name: str, data: bytes) -> None:
        """Stage, fsync, rename over ``name``, fsync the directory: never half a file."""
        try:
            self.door.write_atomic(name, data)
        except OSError as err:
            raise StoreError(f"cannot write {self.path / name}: {err.strerror or err}") from None
