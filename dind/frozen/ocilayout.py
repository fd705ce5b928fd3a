"""The OCI image layout (``--format oci``): ``oci-layout``, ``index.json``, ``blobs/``.

Each tag is one descriptor in ``index.json`` pointing at the image's manifest,
annotated with
``org.opencontainers.image.ref.name`` (the name ``docker save`` would list, e.g.
``debian:bookworm``: what ``skopeo inspect oci:DIR:debian:bookworm`` looks up)
and ``io.containerd.image.name`` (the full name, for containerd and newer engines'
``docker load``). A digest-only reference gets a descriptor without names.
An OCI manifest is kept as the registry served it (same digest); a Docker schema 2
manifest is rewritten as the OCI manifest it is equivalent to, media types mapped,
everything else kept (as ``skopeo copy docker://... oci:...`` does; skopeo and
containerd ignore an index entry whose media type is Docker's), so its digest
changes.

As with ``manifest.json``, merging is pure and an existing ``index.json`` is checked
before anything is downloaded; ``oci-layout`` is written before ``index.json``,
which is written last.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from dind.frozen.errors import StoreError
from dind.frozen.jsondoc import parse_json
from dind.frozen.layout import MAX_LAYOUT_BYTES, dumps
from dind.frozen.manifest import DOCKER_MANIFEST, INDEX_TYPES, MANIFEST_TYPES, OCI_MANIFEST
from dind.frozen.outdir import Dir
from dind.frozen.reference import DIGEST_LENGTHS

OCI_LAYOUT = "oci-layout"
INDEX = "index.json"
LAYOUT_VERSION = "1.0.0"
REF_NAME = "org.opencontainers.image.ref.name"
IMAGE_NAME = "io.containerd.image.name"
OCI_INDEX_TYPE = "application/vnd.oci.image.index.v1+json"


OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_TO_OCI = {
    "application/vnd.docker.container.image.v1+json": OCI_CONFIG,
    "application/vnd.docker.image.rootfs.diff.tar.gzip": (
        "application/vnd.oci.image.layer.v1.tar+gzip"
    ),
    "application/vnd.docker.image.rootfs.diff.tar": "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip": (
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
    ),
}


def oci_manifest(body: bytes, media_type: str) -> tuple[bytes, str]:
    """The manifest as the OCI layout stores it: OCI bytes unchanged; a Docker schema 2
    manifest as its OCI equivalent (the caller parsed it already, so it is valid)."""
    if media_type != DOCKER_MANIFEST:
        return body, media_type
    doc = parse_json(body)
    assert isinstance(doc, dict)
    doc["mediaType"] = OCI_MANIFEST
    for desc in [doc["config"], *doc["layers"]]:
        media_type = desc.get("mediaType")
        if isinstance(media_type, str) and media_type in DOCKER_TO_OCI:
            desc["mediaType"] = DOCKER_TO_OCI[media_type]
    return json.dumps(doc, indent=None, separators=(",", ":")).encode(), OCI_MANIFEST


@dataclass(frozen=True)
class OciImage:
    """One image of the layout: its manifest and the names it carries (ref name, full name)."""

    digest: str
    size: int
    media_type: str
    names: tuple[tuple[str, str], ...]


def descriptors(image: OciImage) -> list[dict[str, object]]:
    """``index.json`` entries for one image: one per name, or one without a name."""
    base: dict[str, object] = {
        "mediaType": image.media_type,
        "digest": image.digest,
        "size": image.size,
    }
    if not image.names:
        return [base]
    return [
        {**base, "annotations": {REF_NAME: ref_name, IMAGE_NAME: full}}
        for ref_name, full in image.names
    ]


def merge(existing: list[dict[str, object]], images: list[OciImage]) -> list[dict[str, object]]:
    """New descriptors over old ones: a name moves to its new image (as skopeo does);
    old descriptors keep their order, new ones are appended, none twice."""
    new = [d for image in images for d in descriptors(image)]
    claimed = {_ref_name(d) for d in new} - {None}
    result: list[dict[str, object]] = []
    for entry in [*(e for e in existing if _ref_name(e) not in claimed), *new]:
        if entry not in result:
            result.append(entry)
    return result


def _ref_name(entry: dict[str, object]) -> str | None:
    annotations = entry.get("annotations")
    if isinstance(annotations, dict):
        name = annotations.get(REF_NAME)
        return name if isinstance(name, str) else None
    return None


def read_index(root: Dir) -> list[dict[str, object]]:
    """The descriptors an existing ``index.json`` holds (none if there is none).

    One that is not an OCI index, or a descriptor naming a missing blob, is an
    error naming it: nothing is written over it.
    """
    path = root.path / INDEX
    try:
        data = root.read(INDEX, MAX_LAYOUT_BYTES)
        doc = parse_json(data) if data is not None else {"manifests": []}
    except ValueError as err:
        raise StoreError(f"{path} is unreadable, refusing to overwrite it: {err}") from None
    manifests = doc.get("manifests") if isinstance(doc, dict) else None
    if not isinstance(manifests, list):
        raise StoreError(f"{path} is not an OCI image index, refusing to overwrite it")
    for number, entry in enumerate(manifests, 1):
        problem = descriptor_problem(entry, root.is_file)
        if problem:
            raise StoreError(
                f"{path}: descriptor {number}: {problem}; fix or remove it, then run again"
            )
    return manifests


def descriptor_problem(entry: object, present: Callable[[str], bool]) -> str | None:
    """Why an ``index.json`` descriptor is unusable, or None (``present(rel)``: a file)."""
    if not isinstance(entry, dict):
        return "not a JSON object"
    media_type, digest, size = entry.get("mediaType"), entry.get("digest"), entry.get("size")
    if media_type not in (*MANIFEST_TYPES, *INDEX_TYPES):
        return f"mediaType {media_type!r} is not a manifest or index"
    algo, _, hexpart = str(digest).partition(":")
    if (
        not isinstance(digest, str)
        or DIGEST_LENGTHS.get(algo) != len(hexpart)
        or not all(c in "0123456789abcdef" for c in hexpart)
    ):
        return f"digest {digest!r} is not a digest"
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        return f"size {size!r} is not a size"
    annotations = entry.get("annotations", {})
    if not isinstance(annotations, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in annotations.items()
    ):
        return "annotations are not strings"
    rel = f"blobs/{algo}/{hexpart}"
    if not present(rel):
        return f"{rel} is missing or not a regular file"
    return None


def write_oci(
    root: Dir, existing: list[dict[str, object]], images: list[OciImage]
) -> list[dict[str, object]]:
    """Merge ``images`` into ``existing``; write ``oci-layout``, then ``index.json``.

    Every blob must already be in the directory, durable before the index names it.
    """
    for image in images:
        algo, _, hexpart = image.digest.partition(":")
        if not root.is_file(f"blobs/{algo}/{hexpart}"):
            raise StoreError(f"{root.path}/blobs/{algo}/{hexpart} is missing; not writing {INDEX}")
    # The blobs' renames must reach the disk before the index that names them.
    for algo in DIGEST_LENGTHS:
        folder = root.walk(f"blobs/{algo}")
        if folder is not None:
            with folder:
                folder.fsync()
    entries = merge(existing, images)
    root.write_atomic(OCI_LAYOUT, dumps({"imageLayoutVersion": LAYOUT_VERSION}))
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX_TYPE, "manifests": entries}
    root.write_atomic(INDEX, dumps(index))
    return entries
