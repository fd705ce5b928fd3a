"""The blob store: verified, content-addressed files, downloaded resumably.

A blob is written to ``.incomplete/<algo>-<hex>`` and renamed to
``blobs/<algo>/<hex>`` only after its size and digest match, so a file under
``blobs/`` is always whole. A cut download leaves the partial file; the next
attempt (or the next run) asks for the rest with a Range request. Nothing in the
directory is followed: a symlink or hard link planted as a partial file is thrown
away, not appended to (see ``outdir``).
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

import httpx

from dind.frozen.errors import StoreError
from dind.frozen.manifest import Descriptor
from dind.frozen.outdir import Dir
from dind.frozen.registry import Cancelled, Registry, describe
from dind.frozen.retry import Transient

CHUNK = 1024 * 1024
INCOMPLETE = ".incomplete"

ByteCounter = Callable[[str, int], None]
"""Told each blob's digest and how many more bytes of it arrived (``progress.Progress.update``)."""
"""Called with (digest, bytes): positive as bytes arrive, negative when a blob restarts."""


def _no_progress(_digest: str, _n: int) -> None:
    pass


@dataclass(frozen=True)
class Outcome:
    """What fetching one blob did: downloaded bytes (0 if it was already there)."""

    digest: str
    size: int
    downloaded: int
    reused: bool = False


class BlobStore:
    """Blobs under ``blobs/<algo>/<hex>``, partial files under ``.incomplete``, in ``root``.

    Every name is opened from ``root``'s fd without following symlinks (see ``outdir``).
    """

    def __init__(self, root: Dir) -> None:
        self.root = root

    def relpath(self, digest: str) -> str:
        """The path ``manifest.json`` uses for a blob."""
        algo, _, hexpart = digest.partition(":")
        return f"blobs/{algo}/{hexpart}"

    def verified(self, desc: Descriptor) -> bool:
        """True if the blob is present with the right size and digest (read in full).

        A symlink or any other non-regular entry under its name is not the blob.
        """
        algo, _, hexpart = desc.digest.partition(":")
        try:
            folder = self.root.walk(f"blobs/{algo}")
            if folder is None:
                return False
            with folder:
                return _whole(folder, hexpart, desc)
        except OSError as err:
            raise StoreError(_os_message(err)) from None

    def read(self, digest: str, limit: int) -> bytes:
        """A verified blob's content (a config), refused past ``limit`` bytes."""
        algo, _, hexpart = digest.partition(":")
        folder = self.root.walk(f"blobs/{algo}")
        data = None
        if folder is not None:
            with folder:
                data = folder.read(hexpart, limit)
        if data is None:
            raise StoreError(f"{self.root.path / self.relpath(digest)} is missing")
        return data

    def fetch(
        self,
        registry: Registry,
        repository: str,
        desc: Descriptor,
        progress: ByteCounter = _no_progress,
    ) -> Outcome:
        """Make the blob present and verified, downloading only what is missing."""
        if self.verified(desc):
            progress(desc.digest, desc.size)
            return Outcome(desc.digest, desc.size, 0, reused=True)
        try:
            return self._download(registry, repository, desc, progress)
        except OSError as err:
            raise StoreError(_os_message(err)) from None

    def _download(
        self, registry: Registry, repository: str, desc: Descriptor, progress: ByteCounter
    ) -> Outcome:
        algo, _, hexpart = desc.digest.partition(":")
        name = f"{algo}-{hexpart}"
        with self.root.ensure(INCOMPLETE) as scratch:
            downloaded = 0
            if not _whole(scratch, name, desc):
                download = _Download(registry, repository, desc, scratch, name, progress)
                downloaded = registry.with_retries(download.attempt)
            else:
                progress(desc.digest, desc.size)
            with self.root.ensure(f"blobs/{algo}") as folder:
                scratch.replace(name, folder, hexpart)
        return Outcome(desc.digest, desc.size, downloaded)


class _Download:
    """One blob's download across attempts; ``attempt`` resumes where the last stopped."""

    def __init__(
        self,
        registry: Registry,
        repository: str,
        desc: Descriptor,
        scratch: Dir,
        name: str,
        progress: ByteCounter,
    ) -> None:
        self.registry = registry
        self.repository = repository
        self.desc = desc
        self.scratch = scratch
        self.name = name
        self.progress = progress
        self.downloaded = 0
        self.reported = 0

    def attempt(self) -> int:
        desc = self.desc
        offset, hasher = self._resume_point()
        if offset:
            self._report(offset)
        what = f"blob {desc.digest}"
        response = self.registry.open_blob(self.repository, desc.digest, offset)
        try:
            offset = self._check_range(response, offset)
            if offset == 0:
                hasher = hashlib.new(desc.digest.partition(":")[0])
            try:
                with os.fdopen(self._open(offset), "r+b" if offset else "wb") as out:
                    out.truncate(offset)
                    out.seek(offset)
                    written = self._copy(response, out, hasher, offset, what)
                    out.flush()
                    os.fsync(out.fileno())
            except OSError as err:
                err.filename = str(self.scratch.path / self.name)
                raise StoreError(_os_message(err)) from None
        finally:
            response.close()
        if written < desc.size:
            raise Transient(f"{what}: body ended after {written} of {desc.size} bytes")
        actual = f"{desc.digest.partition(':')[0]}:{hasher.hexdigest()}"
        if actual != desc.digest:
            self._discard()
            raise Transient(f"{what}: digest mismatch: the registry sent {actual}")
        return self.downloaded

    def _resume_point(self) -> tuple[int, hashlib._Hash]:
        """Bytes already in the partial file (hashed again: a digest cannot be saved)."""
        hasher = hashlib.new(self.desc.digest.partition(":")[0])
        st = self.scratch.lstat(self.name)
        if st is None:
            return 0, hasher
        if not _writable(st) or st.st_size >= self.desc.size:
            # Not a file of ours (a link planted there), or whole but corrupt (a
            # partial file is checked before the first attempt): start again.
            self._discard()
            return 0, hasher
        fd = self.scratch.open_file(self.name)
        if fd is None:
            return 0, hasher
        with os.fdopen(fd, "rb") as f:
            size = 0
            while chunk := f.read(CHUNK):
                hasher.update(chunk)
                size += len(chunk)
        return size, hasher

    def _open(self, offset: int) -> int:
        """The partial file, to append from ``offset`` or new (O_EXCL) from the start."""
        if offset:
            fd = self.scratch.open_file(self.name, os.O_RDWR, single_link=True)
            if fd is not None:
                return fd
        return self.scratch.create(self.name)

    def _check_range(self, response: httpx.Response, offset: int) -> int:
        """Where the body starts: ``offset`` if the range was honoured, else 0."""
        if not offset or response.status_code != 206:
            return 0
        content_range = response.headers.get("Content-Range", "")
        start = content_range.removeprefix("bytes ").split("-", 1)[0]
        return offset if start == str(offset) else 0

    def _copy(
        self,
        response: httpx.Response,
        out: BinaryIO,
        hasher: hashlib._Hash,
        offset: int,
        what: str,
    ) -> int:
        written = offset
        self._report(offset)
        try:
            for chunk in response.iter_raw():  # as received, so a cut loses nothing
                if self.registry.cancel.is_set():
                    raise Cancelled("cancelled")
                written += len(chunk)
                if written > self.desc.size:
                    self._discard()
                    raise Transient(f"{what}: the registry sent more than {self.desc.size} bytes")
                out.write(chunk)
                hasher.update(chunk)
                self.downloaded += len(chunk)
                self._report(written)
        except httpx.TransportError as err:
            raise Transient(
                f"{what}: {describe(err)} after {written} of {self.desc.size} bytes"
            ) from None
        return written

    def _report(self, position: int) -> None:
        """Tell progress how far this blob is (it may go back when a download restarts)."""
        delta = position - self.reported
        if delta:
            self.progress(self.desc.digest, delta)
            self.reported = position

    def _discard(self) -> None:
        self.scratch.unlink(self.name)
        self._report(0)


def _writable(st: os.stat_result) -> bool:
    """A partial file we may append to: a regular file with no other name (no link)."""
    return stat.S_ISREG(st.st_mode) and st.st_nlink == 1


def _whole(folder: Dir, name: str, desc: Descriptor) -> bool:
    """True if ``name`` is a regular file (never a symlink) with the blob's size and digest.

    Used for stored blobs and for a partial file that an earlier run finished just
    before renaming it.
    """
    st = folder.lstat(name)
    if st is None or not stat.S_ISREG(st.st_mode) or st.st_size != desc.size:
        return False
    fd = folder.open_file(name)
    if fd is None:
        return False
    algo = desc.digest.partition(":")[0]
    with os.fdopen(fd, "rb") as f:
        return f"{algo}:{hashlib.file_digest(f, algo).hexdigest()}" == desc.digest


def _os_message(err: OSError) -> str:
    where = f" {err.filename}" if err.filename else ""
    if err.errno == errno.ENOSPC:
        return f"disk full writing{where}: {err.strerror}"
    return f"cannot write{where}: {err.strerror or err}"
