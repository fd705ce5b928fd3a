"""Freeze images: resolve each reference, fetch every blob once, then write the layout.

Order matters for resumability and for failing early: manifests, then the image
configs (small; what they say is checked before any layer is fetched: the platform,
one ``diff_id`` per layer), then every layer, each renamed into place only once
verified, and the layout file (``manifest.json`` or ``index.json``) last. Blobs
download in parallel (``jobs``); the first failure cancels the rest, which keep
their partial files for the next run. The existing layout file is checked before
anything is fetched, and the output directory is held open by fd for the whole run
(see ``outdir``).
"""

from __future__ import annotations

import fcntl
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from dind.frozen.blobs import INCOMPLETE, BlobStore, Outcome, relpath
from dind.frozen.cache import BlobCache
from dind.frozen.errors import StoreError, VerificationError, printable
from dind.frozen.layers import fetch_zstd, is_zstd, layer_path, unpack_zstd
from dind.frozen.layout import LayoutImage, read_manifest, write_layout
from dind.frozen.manifest import (
    MAX_CONFIG_BYTES,
    Descriptor,
    ImageConfig,
    ImageManifest,
    Index,
    parse_config,
    parse_manifest,
    select_platform,
)
from dind.frozen.ocilayout import OciImage, oci_manifest, read_index, write_oci
from dind.frozen.outdir import Dir
from dind.frozen.platform import Platform
from dind.frozen.progress import Progress
from dind.frozen.reference import DIGEST_LENGTHS, Reference
from dind.frozen.registry import Cancelled, Fetched, digest_of
from dind.frozen.retry import Unreachable
from dind.frozen.sources import Lie, Source, Sources, Tally, first_answer
from dind.frozen.supply import Supply, Syncer
from dind.log import Log


@dataclass(frozen=True)
class Resolved:
    """A reference pinned to one platform's manifest (and its bytes, for the OCI layout)."""

    ref: Reference
    sources: Sources
    manifest: ImageManifest
    digest: str
    from_index: bool
    body: bytes = b""
    media_type: str = ""


@dataclass
class Summary:
    """Counts for the closing line (and for tests)."""

    images: int = 0
    blobs: int = 0
    downloaded_blobs: int = 0
    downloaded_bytes: int = 0
    reused_blobs: int = 0
    reused_bytes: int = 0
    cached_blobs: int = 0
    cached_bytes: int = 0
    seconds: float = 0.0
    sources: dict[str, int] = field(default_factory=dict)
    entries: list[dict[str, object]] = field(default_factory=list)


def _manifest(
    chain: tuple[Source, ...],
    tally: Tally,
    repository: str,
    reference: str,
    expect: Descriptor | None = None,
) -> Fetched:
    """A manifest from the first source that serves it; a mirror's must match ``expect``."""
    sep = "@" if ":" in reference else ":"
    what = f"manifest {repository}{sep}{reference}"

    def fetch(source: Source) -> Fetched:
        fetched = source.registry.get_manifest(repository, reference)
        if (
            source.mirror
            and expect is not None
            and (
                fetched.digest != expect.digest
                or (expect.size and len(fetched.body) != expect.size)
            )
        ):
            raise Lie(f"it sent {fetched.digest} ({len(fetched.body)} bytes) for {what}")
        return fetched

    fetched, source = first_answer(chain, tally, what, fetch)
    tally.log.debug(f"{what}: from {source.name}", manifest=reference, source=source.name)
    return fetched


def _by_tag(sources: Sources, tally: Tally, ref: Reference, cache: BlobCache | None) -> Fetched:
    """The manifest a tag names now; the cache's last answer only if no source is reachable."""
    assert ref.tag is not None
    key = f"{sources.origin.name}/{ref.repository}:{ref.tag}"
    try:
        fetched = _manifest(sources.for_tag(), tally, ref.repository, ref.tag)
    except Unreachable as err:
        found = cache.recall_tag(key) if cache is not None else None
        if found is None:
            raise
        tally.log.warning(
            f"{ref}: {err}; using the cache: the tag named {found.digest} when last resolved",
            image=str(ref),
            digest=found.digest,
        )
        return found
    if cache is not None:
        cache.remember_tag(key, fetched)
    return fetched


def _by_digest(
    sources: Sources, tally: Tally, repository: str, desc: Descriptor, cache: BlobCache | None
) -> Fetched:
    """A manifest by digest: the cache's copy if it has one, else the sources' (then cached)."""
    found = cache.manifest(desc.digest) if cache is not None else None
    if found is not None and (not desc.size or len(found.body) == desc.size):
        tally.log.debug(f"manifest {repository}@{desc.digest}: from the cache")
        return found
    fetched = _manifest(sources.for_digest(), tally, repository, desc.digest, desc)
    if cache is not None and fetched.digest == desc.digest:
        cache.put_manifest(fetched)
    return fetched


def resolve(
    sources: Sources,
    tally: Tally,
    ref: Reference,
    wanted: Platform,
    cache: BlobCache | None = None,
) -> Resolved:
    """Fetch the manifest a reference names, enforcing a digest pin and the platform."""
    where = str(ref)
    if ref.tag:
        fetched = _by_tag(sources, tally, ref, cache)
    else:
        assert ref.digest is not None
        pin = Descriptor("", ref.digest, 0)
        fetched = _by_digest(sources, tally, ref.repository, pin, cache)
    if ref.digest and not ref.tag and fetched.digest != ref.digest:
        raise VerificationError(
            f"{where}: the registry sent a manifest with digest {fetched.digest}"
        )
    top = parse_manifest(fetched.body, fetched.content_type, where)
    pinned_ok = ref.digest is None or fetched.digest == ref.digest
    if isinstance(top, ImageManifest):
        if not pinned_ok:
            raise VerificationError(_moved(ref, fetched.digest))
        return Resolved(
            ref, sources, _bounded(top, where), fetched.digest, False, fetched.body, top.media_type
        )
    assert isinstance(top, Index)
    entry = select_platform(top, wanted, where)
    if not pinned_ok and entry.digest != ref.digest:
        raise VerificationError(_moved(ref, fetched.digest, entry.digest, wanted))
    chosen = _by_digest(sources, tally, ref.repository, entry, cache)
    if chosen.digest != entry.digest or len(chosen.body) != entry.size:
        raise VerificationError(
            f"{where}: manifest for {wanted} should be {entry.digest} ({entry.size} bytes), "
            f"the registry sent {chosen.digest} ({len(chosen.body)} bytes)"
        )
    manifest = parse_manifest(chosen.body, chosen.content_type, f"{where} ({wanted})")
    if not isinstance(manifest, ImageManifest):
        raise VerificationError(f"{where}: the index entry for {wanted} is not an image manifest")
    manifest = _bounded(manifest, where)
    return Resolved(ref, sources, manifest, entry.digest, True, chosen.body, manifest.media_type)


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


def check_diff_ids(manifest: ImageManifest, config: ImageConfig, where: str) -> None:
    """One well-formed ``diff_id`` per layer (zstd layers are checked against theirs)."""
    if len(config.diff_ids) != len(manifest.layers):
        raise VerificationError(
            f"{where}: the manifest lists {len(manifest.layers)} layers but the config "
            f"{len(config.diff_ids)} diff_ids"
        )
    for diff_id in config.diff_ids:
        algo, _, hexpart = diff_id.partition(":")
        if (
            algo != "sha256"
            or len(hexpart) != DIGEST_LENGTHS["sha256"]
            or not all(c in "0123456789abcdef" for c in hexpart)
        ):
            raise VerificationError(
                f"{where}: the config lists {printable(diff_id)!r} as a diff_id"
            )


@contextmanager
def locked(root: Path) -> Iterator[Dir]:
    """The output directory, open and locked: a second run would fight over partial files."""
    with Dir.open_root(root) as folder:
        try:
            fcntl.flock(folder.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StoreError(f"{root} is being written by another process") from None
        yield folder


@dataclass(frozen=True)
class _Job:
    """One blob to make present: its descriptor, where it comes from, how it is stored."""

    image: Resolved
    desc: Descriptor
    diff_id: str = ""


class Freezer:
    """Runs one freeze: resolution, configs, parallel verified downloads, layout."""

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
        output_format: str = "docker",
        cache: Path | None = None,
    ) -> None:
        self.root = root
        self.wanted = wanted
        self.platform_explicit = platform_explicit
        self.jobs = jobs
        self.log = log
        self.progress = progress
        self.cancel = cancel
        self.format = output_format
        self.cache = cache
        self.tally = Tally(log)

    def run(self, pairs: list[tuple[Reference, Sources]]) -> Summary:
        started = time.monotonic()
        with locked(self.root) as root, self._cache() as cache, self._syncer() as syncer:
            existing = read_index(root) if self.format == "oci" else read_manifest(root)
            store = BlobStore(root)
            supply = Supply(store, cache, self.tally, self.progress.update, self.cancel, syncer)
            images = [self._resolve(ref, sources, cache) for ref, sources in pairs]
            summary = Summary()
            configs = self._configs(supply, images, summary)
            self._run(supply, self._layer_jobs(images, configs), summary)
            syncer.wait()  # every blob on disk before the layout file names it
            if self.format == "oci":
                summary.entries = write_oci(root, existing, self._oci_images(store, images))
            else:
                layout = [self._layout_image(image, configs) for image in images]
                summary.entries = write_layout(root, existing, layout)
            # Partial files left by cancelled downloads of earlier runs: done with them.
            # (rmtree with dir_fd never follows a symlink, at the top or inside.) The
            # cache's stay: other runs may be resuming them.
            shutil.rmtree(INCOMPLETE, ignore_errors=True, dir_fd=root.fd)
        summary.images = len(images)
        summary.sources = dict(self.tally.received)
        summary.seconds = time.monotonic() - started
        return summary

    @contextmanager
    def _syncer(self) -> Iterator[Syncer]:
        syncer = Syncer()
        try:
            yield syncer
        finally:
            syncer.close()

    @contextmanager
    def _cache(self) -> Iterator[BlobCache | None]:
        if self.cache is None:
            yield None
            return
        cache = BlobCache.open(self.cache)
        try:
            yield cache
        finally:
            cache.close()

    def _resolve(self, ref: Reference, sources: Sources, cache: BlobCache | None) -> Resolved:
        resolved = resolve(sources, self.tally, ref, self.wanted, cache)
        self.log.info(
            f"{ref}: {resolved.digest} ({len(resolved.manifest.layers)} layers)",
            image=str(ref),
            digest=resolved.digest,
            layers=len(resolved.manifest.layers),
        )
        return resolved

    def _configs(
        self, supply: Supply, images: list[Resolved], summary: Summary
    ) -> dict[str, ImageConfig]:
        """Every image's config, fetched and checked before any layer is."""
        jobs = {i.manifest.config.digest: _Job(i, i.manifest.config) for i in images}
        self._run(supply, list(jobs.values()), summary)
        store = supply.out
        configs: dict[str, ImageConfig] = {}
        for image in images:
            where = str(image.ref)
            manifest = image.manifest
            config = parse_config(store.read(manifest.config.digest, MAX_CONFIG_BYTES), where)
            check_diff_ids(manifest, config, where)
            if not image.from_index and not self.wanted.matches(config.platform):
                message = printable(f"{where}: image is for {config.platform}, not {self.wanted}")
                if self.platform_explicit:
                    raise VerificationError(message)
                self.log.warning(message, image=where)
            configs[manifest.config.digest] = config
        return configs

    def _layer_jobs(self, images: list[Resolved], configs: dict[str, ImageConfig]) -> list[_Job]:
        """Every distinct layer once (a zstd layer also needs its ``diff_id``)."""
        jobs: dict[str, _Job] = {}
        for image in images:
            diff_ids = configs[image.manifest.config.digest].diff_ids
            for desc, diff_id in zip(image.manifest.layers, diff_ids, strict=True):
                jobs.setdefault(desc.digest, _Job(image, desc, diff_id if is_zstd(desc) else ""))
        return list(jobs.values())

    def _run(self, supply: Supply, jobs: list[_Job], summary: Summary) -> None:
        """Run ``jobs`` in parallel (``self.jobs`` at a time), adding up what they did."""
        for job in jobs:
            self.progress.expect(job.desc.digest, job.desc.size)
        pool = ThreadPoolExecutor(max_workers=self.jobs, thread_name_prefix="blob")
        futures = [pool.submit(self._fetch(supply, job)) for job in jobs]
        try:
            self._wait(futures)
        except BaseException:
            self.cancel.set()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            self.progress.pause()
        for future in futures:
            outcome = future.result()
            how = (
                "already present"
                if outcome.reused
                else "from the cache"
                if outcome.cached
                else f"downloaded from {outcome.source}"
            )
            self.log.debug(
                f"{outcome.digest}: {how}",
                blob=outcome.digest,
                size=outcome.size,
                downloaded=outcome.downloaded,
                source=outcome.source or None,
            )
            summary.blobs += 1
            if outcome.reused:
                summary.reused_blobs += 1
                summary.reused_bytes += outcome.size
            elif outcome.cached:
                summary.cached_blobs += 1
                summary.cached_bytes += outcome.size
            else:
                summary.downloaded_blobs += 1
                summary.downloaded_bytes += outcome.downloaded

    def _fetch(self, supply: Supply, job: _Job) -> Callable[[], Outcome]:
        """What a worker runs for one job: plain, zstd checked (OCI) or unpacked (docker)."""
        desc, sources, repository = job.desc, job.image.sources, job.image.ref.repository
        if not job.diff_id:
            return lambda: supply.ensure(sources, repository, desc)
        zstd = fetch_zstd if self.format == "oci" else unpack_zstd
        return lambda: zstd(supply, sources, repository, desc, job.diff_id)

    def _wait(self, futures: list[Future[Outcome]]) -> None:
        """Wait for all; on the first failure cancel the others and raise that failure."""
        wait(futures, return_when=FIRST_EXCEPTION)
        if any(f.done() and f.exception() is not None for f in futures):
            self.cancel.set()
            wait(futures)
            raise _first_error(futures)

    def _layout_image(self, image: Resolved, configs: dict[str, ImageConfig]) -> LayoutImage:
        manifest = image.manifest
        diff_ids = configs[manifest.config.digest].diff_ids
        tags = (image.ref.repo_tag,) if image.ref.repo_tag else ()
        return LayoutImage(
            relpath(manifest.config.digest),
            tuple(
                layer_path(layer, diff_id)
                for layer, diff_id in zip(manifest.layers, diff_ids, strict=True)
            ),
            tags,
        )

    def _oci_images(self, store: BlobStore, images: list[Resolved]) -> list[OciImage]:
        """The manifests as blobs (in OCI form), and the names they carry."""
        found = []
        for image in images:
            body, media_type = oci_manifest(image.body, image.media_type)
            digest = digest_of(body) if body is not image.body else image.digest
            store.put(digest, body)
            ref = image.ref
            names: tuple[tuple[str, str], ...] = ()
            if ref.tag and ref.repo_tag:
                names = ((ref.repo_tag, f"{ref.registry}/{ref.repository}:{ref.tag}"),)
            found.append(OciImage(digest, len(body), media_type, names))
        return found


def _first_error(futures: list[Future[Outcome]]) -> BaseException:
    """The failure that caused the others: not one of the ``Cancelled`` it led to."""
    errors = [e for f in futures if (e := f.exception()) is not None]
    real = [e for e in errors if not isinstance(e, Cancelled)]
    return (real or errors)[0]
