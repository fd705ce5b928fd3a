"""Where each blob of the output comes from: the output itself, the shared cache, a source.

In that order: a blob the output already holds (verified) is used as it is, and
given to the cache if it lacks it; else the cache's copy (verified, under the blob's
lock); else a download from the sources (mirrors, then the origin), into the cache
when there is one (then shared with the output), else into the output directly.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

from dind.frozen.blobs import BlobStore, ByteCounter, Landed, Outcome
from dind.frozen.cache import BlobCache, adopt
from dind.frozen.manifest import Descriptor
from dind.frozen.sources import Sources, Tally


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
    ) -> None:
        self.out = out
        self.cache = cache
        self.tally = tally
        self.progress = progress
        self.cancel = cancel

    def present(self, desc: Descriptor) -> int | None:
        """A verified fd on the blob if the output has it (then the cache gets it too)."""
        fd = self.out.open_verified(desc.digest, desc.size)
        if fd is not None:
            try:
                self.keep(fd, desc)
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
        else:
            adopt(self.out, got.fd, digest)

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
