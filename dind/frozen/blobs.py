"""The blob store: verified, content-addressed files, downloaded resumably.

A blob is written to ``.incomplete/<algo>-<hex>`` and renamed to
``blobs/<algo>/<hex>`` only after its size and digest match, so a file under
``blobs/`` is always whole. A cut download leaves the partial file; the next
attempt (or the next run) asks for the rest with a Range request.
"""

from __future__ import annotations

import errno
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import httpx

from dind.frozen.errors import StoreError
from dind.frozen.manifest import Descriptor
from dind.frozen.registry import Cancelled, Registry, describe
from dind.frozen.retry import Transient

CHUNK = 1024 * 1024
INCOMPLETE = ".incomplete"

Progress = Callable[[str, int], None]
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
    """Blobs under ``root/blobs/<algo>/<hex>``; partial files under ``root/.incomplete``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, digest: str) -> Path:
        algo, _, hexpart = digest.partition(":")
        return self.root / "blobs" / algo / hexpart

    def relpath(self, digest: str) -> str:
        """The path ``manifest.json`` uses for a blob."""
        algo, _, hexpart = digest.partition(":")
        return f"blobs/{algo}/{hexpart}"

    def partial(self, digest: str) -> Path:
        algo, _, hexpart = digest.partition(":")
        return self.root / INCOMPLETE / f"{algo}-{hexpart}"

    def verified(self, desc: Descriptor) -> bool:
        """True if the blob is present with the right size and digest (read in full)."""
        path = self.path(desc.digest)
        try:
            if path.stat().st_size != desc.size:
                return False
            return file_digest(path, desc.digest) == desc.digest
        except FileNotFoundError:
            return False
        except OSError as err:
            raise StoreError(f"cannot read {path}: {err.strerror}") from None

    def read(self, digest: str) -> bytes:
        return self.path(digest).read_bytes()

    def fetch(
        self,
        registry: Registry,
        repository: str,
        desc: Descriptor,
        progress: Progress = _no_progress,
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
        self, registry: Registry, repository: str, desc: Descriptor, progress: Progress
    ) -> Outcome:
        partial = self.partial(desc.digest)
        partial.parent.mkdir(parents=True, exist_ok=True)
        downloaded = 0
        if not _complete(partial, desc):
            download = _Download(registry, repository, desc, partial, progress)
            downloaded = registry.with_retries(download.attempt)
        else:
            progress(desc.digest, desc.size)
        final = self.path(desc.digest)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(partial, final)
        return Outcome(desc.digest, desc.size, downloaded)


class _Download:
    """One blob's download across attempts; ``attempt`` resumes where the last stopped."""

    def __init__(
        self,
        registry: Registry,
        repository: str,
        desc: Descriptor,
        partial: Path,
        progress: Progress,
    ) -> None:
        self.registry = registry
        self.repository = repository
        self.desc = desc
        self.partial = partial
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
                with self.partial.open("r+b" if offset else "wb") as out:
                    out.truncate(offset)
                    out.seek(offset)
                    written = self._copy(response, out, hasher, offset, what)
                    out.flush()
                    os.fsync(out.fileno())
            except OSError as err:
                err.filename = err.filename or str(self.partial)
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
        try:
            size = self.partial.stat().st_size
        except FileNotFoundError:
            return 0, hasher
        if size >= self.desc.size:
            # Whole but corrupt (a partial file is checked before the first attempt).
            self._discard()
            return 0, hasher
        with self.partial.open("rb") as f:
            while chunk := f.read(CHUNK):
                hasher.update(chunk)
        return size, hasher

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
        self.partial.unlink(missing_ok=True)
        self._report(0)


def _complete(partial: Path, desc: Descriptor) -> bool:
    """A partial file that is in fact whole: an earlier run stopped just before renaming."""
    try:
        return partial.stat().st_size == desc.size and file_digest(partial, desc.digest) == (
            desc.digest
        )
    except FileNotFoundError:
        return False


def file_digest(path: Path, digest: str) -> str:
    """``algo:hex`` of a file, with the algorithm of ``digest``."""
    algo = digest.partition(":")[0]
    with path.open("rb") as f:
        return f"{algo}:{hashlib.file_digest(f, algo).hexdigest()}"


def _os_message(err: OSError) -> str:
    where = f" {err.filename}" if err.filename else ""
    if err.errno == errno.ENOSPC:
        return f"disk full writing{where}: {err.strerror}"
    return f"cannot write{where}: {err.strerror or err}"
