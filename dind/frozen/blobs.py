"""The blob store: verified, content-addressed files, downloaded resumably from sources.

A blob is written to ``.incomplete/<algo>-<hex>.<source>`` and renamed to
``blobs/<algo>/<hex>`` only after its size and digest match, so a file under
``blobs/`` is always whole. A cut download leaves the partial file; the next
attempt (or the next run) asks the same source for the rest with a Range request.
Each source has its own partial file: bytes from one mirror are never continued
with bytes from another (if they did not match, which one lied?).

Bytes are hashed as they arrive and written as they are hashed, so a download
reads nothing twice; only a resumed partial file is read again, to rebuild the
hash state. Every run hashes a blob again before it counts as present, so a
rename may come before the data is on disk: what must be durable before the
layout file names it is synced then (``supply.Syncer``).

Nothing in the directory is followed: a symlink or hard link planted as a
partial file is thrown away, not appended to (see ``outdir``).
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from dind.frozen.errors import StoreError
from dind.frozen.manifest import Descriptor
from dind.frozen.outdir import Dir
from dind.frozen.registry import Cancelled, describe
from dind.frozen.retry import Transient
from dind.frozen.sources import Lie, Source, Sources, Tally, first_answer

CHUNK = 1024 * 1024
INCOMPLETE = ".incomplete"

ByteCounter = Callable[[str, int], None]
"""Told each blob's digest and how many more bytes of it arrived (``progress.Progress.update``);
negative when a blob restarts."""


def _no_progress(_digest: str, _n: int) -> None:
    pass


@dataclass(frozen=True)
class Outcome:
    """What making one blob present did: bytes downloaded (0 if it was already there)
    and from which source."""

    digest: str
    size: int
    downloaded: int
    reused: bool = False
    source: str = ""
    cached: bool = False


def relpath(digest: str) -> str:
    """The path of a blob inside a store (and in ``manifest.json``/the OCI layout)."""
    algo, _, hexpart = digest.partition(":")
    return f"blobs/{algo}/{hexpart}"


class BlobStore:
    """Blobs under ``blobs/<algo>/<hex>``, partial files under ``.incomplete``, in ``root``.

    Every name is opened from ``root``'s fd without following symlinks (see ``outdir``).
    """

    def __init__(self, root: Dir) -> None:
        self.root = root

    def relpath(self, digest: str) -> str:
        return relpath(digest)

    def verified(self, desc: Descriptor) -> bool:
        """True if the blob is present with the right size and digest (read in full).

        A symlink or any other non-regular entry under its name is not the blob.
        """
        fd = self.open_verified(desc.digest, desc.size)
        if fd is None:
            return False
        os.close(fd)
        return True

    def open_verified(self, digest: str, size: int | None) -> int | None:
        """A read-only fd (at offset 0) on the blob if it is present and whole, else None.

        ``size`` None: any size (a converted layer is named by its digest alone).
        """
        algo, _, hexpart = digest.partition(":")
        try:
            folder = self.root.walk(f"blobs/{algo}")
            if folder is None:
                return None
            with folder:
                return open_whole(folder, hexpart, digest, size)
        except OSError as err:
            raise StoreError(os_message(err)) from None

    def read(self, digest: str, limit: int) -> bytes:
        """A verified blob's content (a config), refused past ``limit`` bytes."""
        algo, _, hexpart = digest.partition(":")
        folder = self.root.walk(f"blobs/{algo}")
        data = None
        if folder is not None:
            with folder:
                data = folder.read(hexpart, limit)
        if data is None:
            raise StoreError(f"{self.root.path / relpath(digest)} is missing")
        return data

    def put(self, digest: str, data: bytes) -> None:
        """Store content already verified in memory (a manifest) as a blob, unless present."""
        if self.verified(Descriptor("", digest, len(data))):
            return
        algo, _, hexpart = digest.partition(":")
        with self.root.ensure(f"blobs/{algo}") as folder:
            folder.write_atomic(hexpart, data)

    def download(
        self,
        sources: Sources,
        tally: Tally,
        repository: str,
        desc: Descriptor,
        progress: ByteCounter = _no_progress,
    ) -> Landed:
        """Download the blob into ``.incomplete`` (resuming a partial file of the same source),
        verified; the caller commits it into ``blobs/`` or uses it and discards it."""
        what = f"blob {desc.digest}"

        def fetch(source: Source) -> Landed:
            name = partial_name(desc.digest, source)
            with self.root.ensure(INCOMPLETE) as scratch:
                fd = open_whole(scratch, name, desc.digest, desc.size)
                if fd is not None:  # finished by an earlier run just before its rename
                    progress(desc.digest, desc.size)
                    return Landed(name, fd, Outcome(desc.digest, desc.size, 0, source=source.name))
                download = _Download(source, repository, desc, scratch, name, progress)
                try:
                    downloaded = source.registry.with_retries(download.attempt)
                except BaseException:
                    download.rewind()
                    raise
                fd = download.reopen()
            tally.add(source, downloaded)
            return Landed(name, fd, Outcome(desc.digest, desc.size, downloaded, source=source.name))

        try:
            landed, source = first_answer(sources.for_digest(), tally, what, fetch)
        except OSError as err:
            raise StoreError(os_message(err)) from None
        tally.log.debug(
            f"{what}: {landed.outcome.downloaded} bytes from {source.name}",
            blob=desc.digest,
            source=source.name,
        )
        return landed

    def commit(self, name: str, digest: str) -> None:
        """Rename the finished partial file ``name`` to the blob's place; drop other partials."""
        algo, _, hexpart = digest.partition(":")
        try:
            with self.root.ensure(INCOMPLETE) as scratch, self.root.ensure(f"blobs/{algo}") as dest:
                scratch.replace(name, dest, hexpart)
                drop_partials(scratch, digest)
        except OSError as err:
            raise StoreError(os_message(err)) from None

    def discard(self, name: str) -> None:
        """Remove a partial file that was used and is not kept (a converted zstd layer)."""
        scratch = self.root.walk(INCOMPLETE)
        if scratch is not None:
            with scratch:
                scratch.unlink(name)

    def remove(self, digest: str) -> None:
        """Remove whatever is under the blob's name (it did not match it)."""
        algo, _, hexpart = digest.partition(":")
        folder = self.root.walk(f"blobs/{algo}")
        if folder is not None:
            with folder:
                folder.unlink(hexpart)


@dataclass(frozen=True)
class Landed:
    """A verified blob in ``.incomplete`` under ``name``; ``fd`` reads it from offset 0."""

    name: str
    fd: int
    outcome: Outcome


def partial_name(digest: str, source: Source) -> str:
    algo, _, hexpart = digest.partition(":")
    return f"{algo}-{hexpart}.{source.tag}"


def drop_partials(scratch: Dir, digest: str) -> None:
    """Partial files of ``digest`` from other sources: the blob is whole, they are not needed."""
    algo, _, hexpart = digest.partition(":")
    prefix = f"{algo}-{hexpart}."
    for entry in os.listdir(scratch.fd):
        if entry.startswith(prefix):
            scratch.unlink(entry)


class _Download:
    """One blob's download from one source across attempts; ``attempt`` resumes where the
    last one stopped."""

    def __init__(
        self,
        source: Source,
        repository: str,
        desc: Descriptor,
        scratch: Dir,
        name: str,
        progress: ByteCounter,
    ) -> None:
        self.source = source
        self.registry = source.registry
        self.repository = repository
        self.desc = desc
        self.scratch = scratch
        self.name = name
        self.progress = progress
        self.downloaded = 0
        self.reported = 0
        self.inode: tuple[int, int] | None = None

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
            fd = self._open(offset)
            try:
                if os.fstat(fd).st_size != offset:
                    # Only a resumed file can be longer. Never truncate an empty file:
                    # ext4 then takes it for a file being replaced and, on close,
                    # allocates and starts writing all of it in this thread.
                    os.ftruncate(fd, offset)
                os.lseek(fd, offset, os.SEEK_SET)
                written = self._copy(response, fd, hasher, offset, what)
                # No fsync here: ``supply.Syncer`` syncs what the layout will name, in the
                # background; a file cut short by a crash fails its hash on the next run.
                st = os.fstat(fd)
                self.inode = (st.st_dev, st.st_ino)
            except OSError as err:
                err.filename = str(self.scratch.path / self.name)
                raise StoreError(os_message(err)) from None
            finally:
                os.close(fd)
        finally:
            response.close()
        if written < desc.size:
            raise Transient(f"{what}: body ended after {written} of {desc.size} bytes")
        actual = f"{desc.digest.partition(':')[0]}:{hasher.hexdigest()}"
        if actual != desc.digest:
            self._discard()
            if self.source.mirror:
                raise Lie(f"it sent {actual} for {what}")
            raise Transient(f"{what}: digest mismatch: the registry sent {actual}")
        return self.downloaded

    def reopen(self) -> int:
        """The finished file, read-only: the same inode that was written and verified."""
        fd = self.scratch.open_file(self.name)
        if fd is None or self.inode != ((st := os.fstat(fd)).st_dev, st.st_ino):
            if fd is not None:
                os.close(fd)
            raise StoreError(f"{self.scratch.path / self.name} was replaced while being written")
        return fd

    def rewind(self) -> None:
        """This source failed: whatever it delivered no longer counts in the progress."""
        self._report(0)

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
        self, response: httpx.Response, fd: int, hasher: hashlib._Hash, offset: int, what: str
    ) -> int:
        """Hash and write each piece as it arrives (a cut loses nothing already received)."""
        written = offset
        size = self.desc.size
        cancel = self.registry.cancel
        self._report(offset)
        try:
            for chunk in response.iter_raw():
                if cancel.is_set():
                    raise Cancelled("cancelled")
                written += len(chunk)
                if written > size:
                    self._discard()
                    if self.source.mirror:
                        raise Lie(f"it sent more than {size} bytes for {what}")
                    raise Transient(f"{what}: the registry sent more than {size} bytes")
                hasher.update(chunk)
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view) :]
                self.downloaded += len(chunk)
                self._report(written)
        except httpx.TransportError as err:
            raise Transient(f"{what}: {describe(err)} after {written} of {size} bytes") from None
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


def open_whole(folder: Dir, name: str, digest: str, size: int | None) -> int | None:
    """An fd (at offset 0) on ``name`` if it is a regular file (never a symlink) with
    ``size`` (if given) and ``digest``; else None.

    Used for stored blobs and for a partial file that an earlier run finished just
    before renaming it.
    """
    st = folder.lstat(name)
    if st is None or not stat.S_ISREG(st.st_mode) or (size is not None and st.st_size != size):
        return None
    fd = folder.open_file(name)
    if fd is None:
        return None
    try:
        if file_digest(fd, digest.partition(":")[0]) == digest:
            os.lseek(fd, 0, os.SEEK_SET)
            return fd
    except BaseException:
        os.close(fd)
        raise
    os.close(fd)
    return None


def file_digest(fd: int, algo: str) -> str:
    """``algo:hex`` of what ``fd`` holds from its current offset (the fd stays open)."""
    with open(fd, "rb", closefd=False) as f:
        return f"{algo}:{hashlib.file_digest(f, algo).hexdigest()}"


def os_message(err: OSError) -> str:
    where = f" {err.filename}" if err.filename else ""
    if err.errno == errno.ENOSPC:
        return f"disk full writing{where}: {err.strerror}"
    return f"cannot write{where}: {err.strerror or err}"
