"""Where each blob of the output comes from: the output itself, the shared cache, a source.

In that order: a blob the output already holds (verified) is used as it is, and
given to the cache if it lacks it; else the cache's copy (verified, under the blob's
lock); else a download from the sources (mirrors, then the origin), into the cache
when there is one (then shared with the output), else into the output directly.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from dind.frozen.blobs import BlobStore, ByteCounter, Landed, Outcome
from dind.frozen.cache import BlobCache, adopt
from dind.frozen.errors import StoreError
from dind.frozen.manifest import Descriptor
from dind.frozen.sources import Sources, Tally


class Syncer:
    """fsync(2) in the background: each blob's data goes to the disk while others still
    download, and ``wait`` returns once all of it is there. The layout file is written
    only after ``wait``: a directory that looks complete has every byte on disk.

    (Measured: syncing in the download threads, as before, cost a fifth of the time
    on the loopback benchmark.)
    """

    def __init__(self, workers: int = 2) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sync")
        self._futures: list[Future[None]] = []
        self._lock = threading.Lock()

    def submit(self, fd: int, where: str) -> None:
        """Sync the file behind ``fd`` (a duplicate is kept; the caller may close ``fd``)."""
        dup = os.dup(fd)
        future = self._pool.submit(_sync, dup, where)
        with self._lock:
            self._futures.append(future)

    def wait(self) -> None:
        """Every submitted file on disk; the first failure as a StoreError."""
        with self._lock:
            futures, self._futures = self._futures, []
        for future in futures:
            future.result()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def _sync(fd: int, where: str) -> None:
    try:
        os.fsync(fd)
    except OSError as err:
        raise StoreError(f"cannot write {where}: {err.strerror or err}") from None
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Got:
    """Verified content of a blob not (yet) in the output: ``fd`` reads it.

    ``landed``: it was downloaded into the output's ``.incomplete`` (no cache); it is
    then committed (``Supply.place``) or removed (``Supply.drop``).
    """

    fd: int
    outcome: Outcome
    landed: Landed | None = None


class Supply:
    """The blobs of one run: the output's store, the cache (if any), the sources' tally."""

    def __init__(
        self,
        out: BlobStore,
        cache: BlobCache | None,
        tally: Tally,
        progress: ByteCounter,
        cancel: threading.Event,
        syncer: Syncer,
    ) -> None:
        self.out = out
        self.cache = cache
        self.tally = tally
        self.progress = progress
        self.cancel = cancel
        self.syncer = syncer

    def present(self, desc: Descriptor) -> int | None:
        """A verified fd on the blob if the output has it (then the cache gets it too)."""
        fd = self.out.open_verified(desc.digest, desc.size)
        if fd is not None:
            try:
                self.keep(fd, desc)
                self.syncer.submit(fd, str(self.out.root.path / self.out.relpath(desc.digest)))
            except BaseException:
                os.close(fd)
                raise
            self.progress(desc.digest, desc.size)
        return fd

    def ensure(self, sources: Sources, repository: str, desc: Descriptor) -> Outcome:
        """The blob in the output's ``blobs/``, verified, fetched only if it is missing."""
        fd = self.present(desc)
        if fd is not None:
            os.close(fd)
            return Outcome(desc.digest, desc.size, 0, reused=True)
        got = self.obtain(sources, repository, desc)
        try:
            self.place(got, desc.digest)
        finally:
            os.close(got.fd)
        return got.outcome

    def obtain(self, sources: Sources, repository: str, desc: Descriptor) -> Got:
        """Verified content of a blob the output lacks: the cache's, or downloaded."""
        cache = self.cache
        if cache is None:
            landed = self.out.download(sources, self.tally, repository, desc, self.progress)
            return Got(landed.fd, landed.outcome, landed)
        with cache.locked(desc.digest, self.cancel):
            fd = cache.take(desc.digest, desc.size)
            if fd is not None:
                self.progress(desc.digest, desc.size)
                self.tally.log.debug(f"blob {desc.digest}: from the cache", blob=desc.digest)
                return Got(fd, Outcome(desc.digest, desc.size, 0, cached=True))
            landed = cache.store.download(sources, self.tally, repository, desc, self.progress)
            try:
                cache.store.commit(landed.name, desc.digest)
            except BaseException:
                os.close(landed.fd)
                raise
            return Got(landed.fd, landed.outcome)

    def place(self, got: Got, digest: str) -> None:
        """Put obtained content into the output's ``blobs/`` (a rename, link or copy)."""
        if got.landed is not None:
            self.out.commit(got.landed.name, digest)
        elif not adopt(self.out, got.fd, digest):
            return  # a copy: synced as it was made
        self.syncer.submit(got.fd, str(self.out.root.path / self.out.relpath(digest)))

    def drop(self, got: Got) -> None:
        """Obtained content the output does not keep (an unpacked zstd layer, a refused one)."""
        if got.landed is not None:
            self.out.discard(got.landed.name)

    def keep(self, fd: int, desc: Descriptor) -> None:
        """Give the cache a blob the output holds (verified, behind ``fd``) if it lacks it."""
        cache = self.cache
        if cache is None or cache.has(desc.digest, desc.size):
            return
        with cache.locked(desc.digest, self.cancel):
            if not cache.has(desc.digest, desc.size):
                adopt(cache.store, fd, desc.digest)
