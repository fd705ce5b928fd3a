"""Manifests and indexes (Docker schema 2, OCI): parse, validate, choose a platform.

Pure: bytes and the Content-Type header in, descriptors out. Schema 1 is refused
with a clear error: registries stopped serving it and docker itself no longer pulls it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dind.frozen.errors import VerificationError
from dind.frozen.jsondoc import parse_json
from dind.frozen.platform import Platform, normalize
from dind.frozen.reference import DIGEST_LENGTHS

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
SCHEMA1 = (
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
)
INDEX_TYPES = (DOCKER_LIST, OCI_INDEX)
MANIFEST_TYPES = (DOCKER_MANIFEST, OCI_MANIFEST)
ACCEPT = ", ".join((*MANIFEST_TYPES, *INDEX_TYPES))
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
MAX_CONFIG_BYTES = 16 * 1024 * 1024
"""Image configs are read into memory; real ones are a few kB (history included)."""


@dataclass(frozen=True)
class Descriptor:
    """A pointer to content: what it is, its digest and size, maybe its platform."""

    media_type: str
    digest: str
    size: int
    platform: Platform | None = None
    urls: tuple[str, ...] = ()


@dataclass(frozen=True)
class Index:
    """A manifest list or OCI index: one manifest per platform."""

    media_type: str
    manifests: tuple[Descriptor, ...]


@dataclass(frozen=True)
class ImageManifest:
    """One platform's image: a config blob and its layers, base first."""

    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...] = field(default_factory=tuple)


def parse_manifest(body: bytes, content_type: str, where: str) -> Index | ImageManifest:
    """Parse a manifest body; the media type comes from the header, else from the body.

    ``where`` names the reference in error messages.
    """
    try:
        doc = parse_json(body)
    except ValueError as err:
        raise VerificationError(f"{where}: manifest is not valid JSON ({err})") from None
    if not isinstance(doc, dict):
        raise VerificationError(f"{where}: manifest is not a JSON object")
    media_type = _media_type(doc, content_type.partition(";")[0].strip())
    if media_type in SCHEMA1 or doc.get("schemaVersion") == 1:
        raise VerificationError(
            f"{where}: schema 1 manifests are not supported (push the image again with a "
            "current docker)"
        )
    try:
        if media_type in INDEX_TYPES:
            return Index(media_type, tuple(_descriptor(d) for d in doc["manifests"]))
        if media_type in MANIFEST_TYPES:
            layers = tuple(_descriptor(d) for d in doc["layers"])
            return ImageManifest(media_type, _descriptor(doc["config"]), layers)
    except (KeyError, TypeError, ValueError) as err:
        raise VerificationError(f"{where}: malformed {media_type} ({err!r})") from None
    raise VerificationError(f"{where}: unsupported manifest media type {media_type!r}")


def _media_type(doc: dict[str, object], header: str) -> str:
    declared = doc.get("mediaType")
    if isinstance(declared, str) and declared:
        return declared
    if header in (*MANIFEST_TYPES, *INDEX_TYPES, *SCHEMA1):
        return header
    # OCI allows omitting mediaType; the shape says which one it is.
    if "manifests" in doc:
        return OCI_INDEX
    if "layers" in doc:
        return OCI_MANIFEST
    return header


def _descriptor(raw: object) -> Descriptor:
    if not isinstance(raw, dict):
        raise TypeError("descriptor is not an object")
    digest = raw["digest"]
    algo, _, hexpart = str(digest).partition(":")
    if DIGEST_LENGTHS.get(algo) != len(hexpart) or not all(
        c in "0123456789abcdef" for c in hexpart
    ):
        raise ValueError(f"bad digest {digest!r}")
    size = raw["size"]
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ValueError(f"bad size {size!r}")
    plat = raw.get("platform")
    platform = None
    if isinstance(plat, dict):
        platform = normalize(
            str(plat.get("os", "")), str(plat.get("architecture", "")), str(plat.get("variant", ""))
        )
    urls = raw.get("urls") or []
    if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
        raise ValueError("urls is not a list of strings")
    return Descriptor(str(raw.get("mediaType", "")), str(digest), size, platform, tuple(urls))


def select_platform(index: Index, wanted: Platform, where: str) -> Descriptor:
    """The first entry for ``wanted``; the error lists what the index does offer.

    Entries for ``unknown/unknown`` (buildkit's attestations) are never images.
    """
    for entry in index.manifests:
        if entry.platform is None or "unknown" in (entry.platform.os, entry.platform.architecture):
            continue
        if wanted.matches(entry.platform):
            if entry.media_type and entry.media_type not in MANIFEST_TYPES:
                continue
            return entry
    offered = sorted(
        {
            str(e.platform)
            for e in index.manifests
            if e.platform is not None and e.platform.os != "unknown"
        }
    )
    raise VerificationError(
        f"{where}: no image for platform {wanted} (available: {', '.join(offered) or 'none'})"
    )


@dataclass(frozen=True)
class ImageConfig:
    """What the layout needs from a config blob: platform and layer diff IDs."""

    platform: Platform
    diff_ids: tuple[str, ...]


def parse_config(body: bytes, where: str) -> ImageConfig:
    """Read os/architecture/variant and rootfs.diff_ids from an image config."""
    try:
        doc = parse_json(body)
    except ValueError as err:
        raise VerificationError(f"{where}: malformed image config ({err})") from None
    rootfs = doc.get("rootfs") if isinstance(doc, dict) else None
    diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if (
        not isinstance(doc, dict)
        or not isinstance(diff_ids, list)
        or not all(isinstance(d, str) for d in diff_ids)
    ):
        raise VerificationError(f"{where}: malformed image config (no rootfs.diff_ids list)")
    platform = normalize(
        str(doc.get("os", "")), str(doc.get("architecture", "")), str(doc.get("variant", ""))
    )
    return ImageConfig(platform, tuple(diff_ids))
