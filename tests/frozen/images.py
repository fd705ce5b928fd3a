"""Synthetic images for tests: real gzip'd tar layers, configs and manifests.

Built in Python so tests control every byte (sizes, digests, platforms, media
types) and can publish them to the test server or push them to a real registry.
"""

from __future__ import annotations

import gzip
import io
import json
import random
import tarfile
from dataclasses import dataclass

import httpx
import zstandard

from dind.frozen.manifest import DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST
from tests.frozen.server import Content, sha256

DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
ZSTD_LAYER = "application/vnd.oci.image.layer.v1.tar+zstd"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"


def tar_of(files: dict[str, bytes]) -> bytes:
    """An uncompressed tar holding ``files`` (name -> content), reproducibly."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def noise(size: int, seed: int) -> bytes:
    """Incompressible bytes, the same for the same seed."""
    return random.Random(seed).randbytes(size)


@dataclass(frozen=True)
class Layer:
    tar: bytes
    blob: bytes
    zstd: bool = False

    @property
    def diff_id(self) -> str:
        return sha256(self.tar)

    @property
    def digest(self) -> str:
        return sha256(self.blob)


def layer(files: dict[str, bytes]) -> Layer:
    tar = tar_of(files)
    return Layer(tar, gzip.compress(tar, mtime=0))


def zstd_layer(files: dict[str, bytes]) -> Layer:
    """A layer compressed with zstd (only OCI manifests can carry it)."""
    tar = tar_of(files)
    return Layer(tar, zstandard.ZstdCompressor().compress(tar), zstd=True)


@dataclass(frozen=True)
class Image:
    config: bytes
    layers: tuple[Layer, ...]
    manifest: bytes
    media_type: str

    @property
    def digest(self) -> str:
        return sha256(self.manifest)

    @property
    def config_digest(self) -> str:
        return sha256(self.config)


def image(
    layers: list[Layer],
    *,
    arch: str = "amd64",
    os_name: str = "linux",
    variant: str = "",
    oci: bool = False,
    label: str = "",
) -> Image:
    """An image manifest (Docker schema 2, or OCI) with its config."""
    config_doc: dict[str, object] = {
        "architecture": arch,
        "os": os_name,
        "config": {"Cmd": ["/bin/sh"], "Labels": {"test": label} if label else None},
        "rootfs": {"type": "layers", "diff_ids": [lay.diff_id for lay in layers]},
        "history": [{"created_by": "tests/frozen"} for _ in layers],
    }
    if variant:
        config_doc["variant"] = variant
    config = json.dumps(config_doc).encode()
    media_type = OCI_MANIFEST if oci else DOCKER_MANIFEST
    manifest = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": {
            "mediaType": OCI_CONFIG if oci else DOCKER_CONFIG,
            "digest": sha256(config),
            "size": len(config),
        },
        "layers": [
            {
                "mediaType": ZSTD_LAYER if lay.zstd else OCI_LAYER if oci else DOCKER_LAYER,
                "digest": lay.digest,
                "size": len(lay.blob),
            }
            for lay in layers
        ],
    }
    return Image(config, tuple(layers), json.dumps(manifest, indent=3).encode(), media_type)


def index(entries: list[Image], *, oci: bool = True) -> tuple[str, bytes]:
    """A manifest list / OCI index over ``entries``, platforms read from their configs."""
    media_type = OCI_INDEX if oci else DOCKER_LIST
    manifests = []
    for entry in entries:
        cfg = json.loads(entry.config)
        platform = {"architecture": cfg["architecture"], "os": cfg["os"]}
        if "variant" in cfg:
            platform["variant"] = cfg["variant"]
        manifests.append(
            {
                "mediaType": entry.media_type,
                "digest": entry.digest,
                "size": len(entry.manifest),
                "platform": platform,
            }
        )
    # An attestation entry as buildkit adds them: must never be chosen.
    manifests.append(
        {
            "mediaType": OCI_MANIFEST,
            "digest": entries[0].digest,
            "size": len(entries[0].manifest),
            "platform": {"architecture": "unknown", "os": "unknown"},
        }
    )
    doc = {"schemaVersion": 2, "mediaType": media_type, "manifests": manifests}
    return media_type, json.dumps(doc).encode()


def publish(content: Content, repo: str, tag: str | None, img: Image) -> str:
    """Put an image into the test server's content; returns the manifest digest."""
    content.add_blob(img.config)
    for lay in img.layers:
        content.add_blob(lay.blob)
    return content.add_manifest(repo, tag, img.media_type, img.manifest)


def publish_index(
    content: Content, repo: str, tag: str | None, entries: list[Image], oci: bool = True
) -> str:
    for entry in entries:
        publish(content, repo, None, entry)
    media_type, body = index(entries, oci=oci)
    return content.add_manifest(repo, tag, media_type, body)


def push_blob(client: httpx.Client, base: str, repo: str, data: bytes) -> str:
    """Monolithic upload through the registry API (POST, then PUT with the digest)."""
    digest = sha256(data)
    start = client.post(f"{base}/v2/{repo}/blobs/uploads/")
    start.raise_for_status()
    location = httpx.URL(base).join(start.headers["Location"])
    put = client.put(
        location.copy_merge_params({"digest": digest}),
        content=data,
        headers={"Content-Type": "application/octet-stream"},
    )
    put.raise_for_status()
    return digest


def push_manifest(
    client: httpx.Client, base: str, repo: str, ref: str, media_type: str, body: bytes
) -> str:
    resp = client.put(
        f"{base}/v2/{repo}/manifests/{ref}", content=body, headers={"Content-Type": media_type}
    )
    resp.raise_for_status()
    return sha256(body)


def push(client: httpx.Client, base: str, repo: str, tag: str | None, img: Image) -> str:
    """Push an image to a real registry; returns its manifest digest."""
    push_blob(client, base, repo, img.config)
    for lay in img.layers:
        push_blob(client, base, repo, lay.blob)
    return push_manifest(client, base, repo, tag or img.digest, img.media_type, img.manifest)


def push_index(
    client: httpx.Client, base: str, repo: str, tag: str, entries: list[Image], oci: bool = True
) -> str:
    for entry in entries:
        push(client, base, repo, None, entry)
    media_type, body = index(entries, oci=oci)
    return push_manifest(client, base, repo, tag, media_type, body)
