"""Freeze images: resolve each reference, fetch every blob once, then write the layout.

Order matters for resumability: all blobs first (each renamed into place only once
verified), ``manifest.json`` last. Downloads run in parallel (``jobs``); the first
failure cancels the rest, which keep their partial files for the next run. The
existing ``manifest.json`` is checked before anything is fetched, and the output
directory is held open by fd for the whole run (see ``outdir``).
"""

from __future__ import annotations

import fcntl
import shutil
import threading
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from dind.frozen.blobs import INCOMPLETE, BlobStore, Outcome
from dind.frozen.errors import StoreError, VerificationError, printable
from dind.frozen.layout import LayoutImage, read_manifest, write_layout
from dind.frozen.manifest import (
    MAX_CONFIG_BYTES,
    Descriptor,
    ImageManifest,
    Index,
    parse_config,
    parse_manifest,
    select_platform,
)
from dind.frozen.outdir import Dir
from dind.frozen.platform import Platform
from dind.frozen.progress import Progress
from dind.frozen.reference import Reference
from dind.frozen.registry import Cancelled, Registry
from dind.log import Log


@dataclass(frozen=True)
class Resolved:
    """A reference pinned to one platform's manifest."""

    ref: Reference
    registry: Registry
    manifest: ImageManifest
    digest: str
    from_index: bool


@dataclass
class Summary:
    """Counts for the closing line (and for tests)."""

    images: int = 0
    blobs: int = 0
    downloaded_blobs: int = 0
    downloaded_bytes: int = 0
    reused_blobs: int = 0
    reused_bytes: int = 0
    seconds: float = 0.0
    entries: list[dict[str, object]] = field(default_factory=list)


def resolve(registry: Registry, ref: Reference, wanted: Platform) -> Resolved:
    """Fetch the manifest a reference names, enforcing a digest pin and the platform."""
    where = str(ref)
    fetched = registry.get_manifest(ref.repository, ref.tag or str(ref.digest))
    if ref.digest and not ref.tag and fetched.digest != ref.digest:
        raise VerificationError(
            f"{where}: the registry sent a manifest with digest {fetched.digest}"
        )
    top = parse_manifest(fetched.body, fetched.content_type, where)
    pinned_ok = ref.digest is None or fetched.digest == ref.digest
    if isinstance(top, ImageManifest):
        if not pinned_ok:
            raise VerificationError(_moved(ref, fetched.digest))
        return Resolved(ref, registry, _bounded(top, where), fetched.digest, from_index=False)
    assert isinstance(top, Index)
    entry = select_platform(top, wanted, where)
    if not pinned_ok and entry.digest != ref.digest:
        raise VerificationError(_moved(ref, fetched.digest, entry.digest, wanted))
    chosen = registry.get_manifest(ref.repository, entry.digest)
    if chosen.digest != entry.digest or len(chosen.body) != entry.size:
        raise VerificationError(
            f"{where}: manifest for {wanted} should be {entry.digest} ({entry.size} bytes), "
            f"the registry sent {chosen.digest} ({len(chosen.body)} bytes)"
        )
    manifest = parse_manifest(chosen.body, chosen.content_type, f"{where} ({wanted})")
    if not isinstance(manifest, ImageManifest):
        raise VerificationError(f"{where}: the index entry for {wanted} is not an image manifest")
    return Resolved(ref, registry, _bounded(manifest, where), entry.digest, from_index=True)


def _bounded(manifest: ImageManifest, where: str) -> ImageManifest:
    """The config is read into memory: refuse one too large before fetching it."""
    if manifest.config.size > MAX_CONFIG_BYTES:
        raise VerificationError(
            f"{where}: the image config is {manifest.config.size} bytes, "
            f"more than {MAX_CONFIG_BYTES}"
        )
    return manifest


def _moved(ref: Reference, now: str, platform_digest: str = "", wanted: object = None) -> str:
    also = f" (its {wanted} manifest is {platform_digest})" if platform_digest else ""
    return f"{ref}: tag {ref.tag!r} now points to {now}{also}, not to the pinned {ref.digest}"


@contextmanager
def locked(root: Path) -> Iterator[Dir]:
    """The output directory, open and locked: a second run would fight over partial files."""
    with Dir.open_root(root) as folder:
        try:
            fcntl.flock(folder.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StoreError(f"{root} is being written by another process") from None
        yield folder


class Freezer:
    """Runs one freeze: resolution, parallel verified downloads, layout."""

    def __init__(
        self,
        root: Path,
        wanted: Platform,
        *,
        platform_explicit: bool,
        jobs: int,
        log: Log,
        progress: Progress,
        cancel: threading.Event,
    ) -> None:
        self.root = root
        self.wanted = wanted
        self.platform_explicit = platform_explicit
        self.jobs = jobs
        self.log = log
        self.progress = progress
        self.cancel = cancel

    def run(self, pairs: list[tuple[Reference, Registry]]) -> Summary:
        started = time.monotonic()
        with locked(self.root) as root:
            existing = read_manifest(root)
            store = BlobStore(root)
            images = [self._resolve(ref, registry) for ref, registry in pairs]
            summary = self._fetch_all(store, images)
            layout = [self._layout_image(store, image) for image in images]
            summary.entries = write_layout(root, existing, layout)
            # Partial files left by cancelled downloads of earlier runs: done with them.
            # (rmtree with dir_fd never follows a symlink, at the top or inside.)
            shutil.rmtree(INCOMPLETE, ignore_errors=True, dir_fd=root.fd)
        summary.images = len(images)
        summary.seconds = time.monotonic() - started
        return summary

    def _resolve(self, ref: Reference, registry: Registry) -> Resolved:
        resolved = resolve(registry, ref, self.wanted)
        self.log.info(
            f"{ref}: {resolved.digest} ({len(resolved.manifest.layers)} layers)",
            image=str(ref),
            digest=resolved.digest,
            layers=len(resolved.manifest.layers),
        )
        return resolved

    def _fetch_all(self, store: BlobStore, images: list[Resolved]) -> Summary:
        """Every distinct blob once, configs included, ``jobs`` at a time."""
        wanted: dict[str, tuple[Resolved, Descriptor]] = {}
        for image in images:
            for desc in (image.manifest.config, *image.manifest.layers):
                wanted.setdefault(desc.digest, (image, desc))
        for _image, desc in wanted.values():
            self.progress.expect(desc.digest, desc.size)
        summary = Summary(blobs=len(wanted))
        pool = ThreadPoolExecutor(max_workers=self.jobs, thread_name_prefix="blob")
        futures: list[Future[Outcome]] = [
            pool.submit(
                store.fetch,
                image.registry,
                image.ref.repository,
                desc,
                self.progress.update,
            )
            for image, desc in wanted.values()
        ]
        try:
            self._wait(futures)
        except BaseException:
            self.cancel.set()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            self.progress.close()
        for future in futures:
            outcome = future.result()
            self.log.debug(
                f"{outcome.digest}: {'already present' if outcome.reused else 'downloaded'}",
                blob=outcome.digest,
                size=outcome.size,
                downloaded=outcome.downloaded,
            )
            if outcome.reused:
                summary.reused_blobs += 1
                summary.reused_bytes += outcome.size
            else:
                summary.downloaded_blobs += 1
                summary.downloaded_bytes += outcome.downloaded
        return summary

    def _wait(self, futures: list[Future[Outcome]]) -> None:
        """Wait for all; on the first failure cancel the others and raise that failure."""
        wait(futures, return_when=FIRST_EXCEPTION)
        if any(f.done() and f.exception() is not None for f in futures):
            self.cancel.set()
            wait(futures)
            raise _first_error(futures)

    def _layout_image(self, store: BlobStore, image: Resolved) -> LayoutImage:
        manifest = image.manifest
        where = str(image.ref)
        config = parse_config(store.read(manifest.config.digest, MAX_CONFIG_BYTES), where)
        if len(config.diff_ids) != len(manifest.layers):
            raise VerificationError(
                f"{where}: the manifest lists {len(manifest.layers)} layers but the config "
                f"{len(config.diff_ids)} diff_ids"
            )
        if not image.from_index and not self.wanted.matches(config.platform):
            message = printable(f"{where}: image is for {config.platform}, not {self.wanted}")
            if self.platform_explicit:
                raise VerificationError(message)
            self.log.warning(message, image=where)
        tags = (image.ref.repo_tag,) if image.ref.repo_tag else ()
        return LayoutImage(
            store.relpath(manifest.config.digest),
            tuple(store.relpath(layer.digest) for layer in manifest.layers),
            tags,
        )


def _first_error(futures: list[Future[Outcome]]) -> BaseException:
    """The failure that caused the others: not one of the ``Cancelled`` it led to."""
    errors = [e for f in futures if (e := f.exception()) is not None]
    real = [e for e in errors if not isinstance(e, Cancelled)]
    return (real or errors)[0]
