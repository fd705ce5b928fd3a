"""The shared blob cache (``--cache DIR`` / ``DIND_FROZEN_CACHE``): content-addressed,
verified when read, shared by runs and by output directories.

Layout: ``blobs/<algo>/<hex>`` (whole and verified when they got there; manifests
too), ``.incomplete/`` (partial downloads, per source, resumed by any later run),
``locks/<algo>-<hex>`` (one lock file per blob) and ``tags/<hex>`` (the last digest
each tag resolved to, at which registry: used only when every source for the tag is
unreachable, with a warning, so a warm cache works with the registry down).

A run that needs a blob takes its lock (``flock``), so two runs at once, of the
same images or not, download each blob once and never write the same partial
file; a blob is renamed into ``blobs/`` only whole and verified, so the cache
never holds half a blob under a blob's name.

Every read hashes the blob again (the cache may be older than this run, or shared
with others): a blob that does not match its name is removed and fetched again.
An output directory gets a hard link to the verified inode (``linkat`` through
``/proc/self/fd``, so what was hashed is what is linked), or a copy hashed while it
is written when the cache is on another filesystem or the file is not the run's
own (another user's file could change after it was checked). Nothing in the output
ever points into the cache, and nothing in the cache is followed (``outdir``).
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dind.errors import UsageError
from dind.frozen.blobs import CHUNK, INCOMPLETE, BlobStore, os_message
from dind.frozen.errors import StoreError, VerificationError
from dind.frozen.jsondoc import parse_json
from dind.frozen.manifest import MAX_MANIFEST_BYTES
from dind.frozen.outdir import Dir
from dind.frozen.reference import parse_digest
from dind.frozen.registry import Cancelled, Fetched, digest_of

LOCKS = "locks"
TAGS = "tags"
MAX_TAG_RECORD = 64 * 1024
LOCK_POLL = 0.05
_LOCK_OPEN = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class BlobCache:
    """The cache directory, open by fd for the whole run; a ``BlobStore`` with locks."""

    def __init__(self, root: Dir) -> None:
        self.root = root
        self.store = BlobStore(root)

    @classmethod
    def open(cls, path: Path) -> BlobCache:
        """The directory the user named (made if missing; a symlink to it is followed)."""
        return cls(Dir.open_root(path))

    def close(self) -> None:
        self.root.close()

    @contextmanager
    def locked(self, digest: str, cancel: threading.Event) -> Iterator[None]:
        """Hold ``digest``'s lock: other runs wait (and see the blob once it is there)."""
        algo, _, hexpart = digest.partition(":")
        name = f"{algo}-{hexpart}"
        with self.root.ensure(LOCKS) as locks:
            try:
                fd = os.open(name, _LOCK_OPEN, 0o644, dir_fd=locks.fd)
            except OSError as err:
                if err.errno == errno.ELOOP:
                    raise StoreError(
                        f"{locks.path / name} is a symbolic link; refusing to follow it"
                    ) from None
                raise StoreError(f"cannot open {locks.path / name}: {err.strerror}") from None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise StoreError(f"{locks.path / name} is not a regular file")
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if cancel.wait(LOCK_POLL):
                        raise Cancelled("cancelled") from None
            yield
        finally:
            os.close(fd)  # releases the lock

    def take(self, digest: str, size: int | None) -> int | None:
        """A read-only fd on the cached blob, hashed just now; None if absent or corrupt
        (a corrupt one is removed). Call with the blob's lock held."""
        fd = self.store.open_verified(digest, size)
        if fd is None:
            self.store.remove(digest)
        return fd

    def manifest(self, digest: str) -> Fetched | None:
        """A manifest (or index) by digest, if cached and still matching it."""
        algo, _, hexpart = digest.partition(":")
        folder = self.root.walk(f"blobs/{algo}")
        if folder is None:
            return None
        with folder:
            try:
                body = folder.read(hexpart, MAX_MANIFEST_BYTES)
            except StoreError:
                return None  # larger than any manifest: not one
        if body is None or digest_of(body, algo) != digest:
            return None
        return Fetched(body, "", digest)

    def put_manifest(self, fetched: Fetched) -> None:
        """Keep a manifest the registry served (written atomically; same bytes, same name)."""
        if self.manifest(fetched.digest) is None:
            self.store.put(fetched.digest, fetched.body)

    def remember_tag(self, key: str, fetched: Fetched) -> None:
        """Record what ``key`` (registry, repository and tag) resolved to, and the manifest."""
        self.put_manifest(fetched)
        record = {"reference": key, "digest": fetched.digest, "mediaType": fetched.content_type}
        with self.root.ensure(TAGS) as tags:
            tags.write_atomic(_tag_file(key), json.dumps(record).encode())

    def recall_tag(self, key: str) -> Fetched | None:
        """The manifest ``key`` last resolved to, if both the record and it are here."""
        tags = self.root.walk(TAGS)
        if tags is None:
            return None
        with tags:
            try:
                data = tags.read(_tag_file(key), MAX_TAG_RECORD)
                doc = parse_json(data) if data is not None else None
            except (StoreError, ValueError):
                return None
        if not isinstance(doc, dict) or doc.get("reference") != key:
            return None
        digest, media_type = doc.get("digest"), doc.get("mediaType", "")
        if not isinstance(digest, str):
            return None
        try:
            parse_digest(digest)
        except UsageError:
            return None
        found = self.manifest(digest)
        if found is None:
            return None
        return Fetched(found.body, media_type if isinstance(media_type, str) else "", digest)

    def has(self, digest: str, size: int) -> bool:
        """A regular file of the right size under the blob's name (checked when read)."""
        algo, _, hexpart = digest.partition(":")
        folder = self.root.walk(f"blobs/{algo}")
        if folder is None:
            return False
        with folder:
            st = folder.lstat(hexpart)
        return st is not None and stat.S_ISREG(st.st_mode) and st.st_size == size


def _tag_file(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def adopt(store: BlobStore, fd: int, digest: str) -> bool:
    """Put the verified content behind ``fd`` into ``store`` as ``digest``: a hard link to
    the same inode when it may be shared, else a copy hashed as it is written.

    True if linked (the caller has the inode synced); a copy is synced here.
    ``fd`` stays open; its offset is not relied upon.
    """
    algo, _, hexpart = digest.partition(":")
    tmp = f"{algo}-{hexpart}.adopt-{os.getpid()}-{threading.get_ident()}"
    try:
        with store.root.ensure(INCOMPLETE) as scratch:
            scratch.unlink(tmp)
            linked = _shareable(fd) and _link(fd, scratch, tmp)
            if not linked:
                _copy(fd, scratch, tmp, digest)
        store.commit(tmp, digest)
    except OSError as err:
        raise StoreError(os_message(err)) from None
    return linked


def _shareable(fd: int) -> bool:
    """An inode this run may link into an output: its own, writable by no one else.
    (Another user's file could be changed after it was hashed, under both names.)"""
    st = os.fstat(fd)
    return (
        stat.S_ISREG(st.st_mode)
        and st.st_uid == os.geteuid()
        and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    )


def _link(fd: int, scratch: Dir, name: str) -> bool:
    """linkat(2) of the open inode (``/proc/self/fd/N``, followed) as ``name``; False where
    the kernel refuses (another filesystem, no /proc)."""
    try:
        os.link(f"/proc/self/fd/{fd}", name, dst_dir_fd=scratch.fd, follow_symlinks=True)
    except OSError as err:
        if err.errno in (errno.EXDEV, errno.EPERM, errno.ENOENT, errno.EMLINK, errno.EACCES):
            return False
        raise
    return True


def _copy(fd: int, scratch: Dir, name: str, digest: str) -> None:
    """A new file ``name`` with what ``fd`` holds, hashed as it is copied: only content that
    still matches ``digest`` (the source may be another user's) is kept."""
    algo = digest.partition(":")[0]
    hasher = hashlib.new(algo)
    out = scratch.create(name)
    try:
        offset = 0
        while chunk := os.pread(fd, CHUNK, offset):
            offset += len(chunk)
            hasher.update(chunk)
            view = memoryview(chunk)
            while view:
                view = view[os.write(out, view) :]
        os.fsync(out)
    except OSError as err:
        err.filename = str(scratch.path / name)
        raise
    finally:
        os.close(out)
    if f"{algo}:{hasher.hexdigest()}" != digest:
        scratch.unlink(name)
        raise VerificationError(f"{digest}: the cached copy changed while it was copied")
