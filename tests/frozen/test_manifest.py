"""Manifest parsing and platform selection, on documents shaped like real registries'."""

from __future__ import annotations

import json

import pytest

from dind.errors import UsageError
from dind.frozen.errors import VerificationError
from dind.frozen.manifest import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    ImageManifest,
    Index,
    parse_config,
    parse_manifest,
    select_platform,
)
from dind.frozen.platform import Platform, host_platform, normalize, parse_platform
from tests.frozen import images


def _d(n: int) -> str:
    return "sha256:" + f"{n:x}".rjust(64, "0")


def _entry(
    n: int, os_name: str, arch: str, variant: str = "", mt: str = DOCKER_MANIFEST
) -> dict[str, object]:
    plat = {"os": os_name, "architecture": arch}
    if variant:
        plat["variant"] = variant
    return {"mediaType": mt, "digest": _d(n), "size": 100 + n, "platform": plat}


# Shaped like Docker Hub's busybox manifest list (arm64 has variant v8, arm several).
HUB_LIST = json.dumps(
    {
        "schemaVersion": 2,
        "mediaType": DOCKER_LIST,
        "manifests": [
            _entry(1, "linux", "amd64"),
            _entry(2, "linux", "arm", "v5"),
            _entry(3, "linux", "arm", "v6"),
            _entry(4, "linux", "arm", "v7"),
            _entry(5, "linux", "arm64", "v8"),
            _entry(6, "linux", "386"),
            _entry(7, "linux", "ppc64le"),
            _entry(8, "windows", "amd64"),
        ],
    }
).encode()


@pytest.mark.parametrize(
    ("wanted", "digest"),
    [
        ("linux/amd64", 1),
        ("linux/arm64", 5),
        ("linux/arm64/v8", 5),
        ("linux/arm", 4),
        ("linux/arm/v6", 3),
        ("linux/386", 6),
        ("windows/amd64", 8),
    ],
)
def test_selects_platform_from_list(wanted: str, digest: int) -> None:
    index = parse_manifest(HUB_LIST, DOCKER_LIST, "busybox")
    assert isinstance(index, Index)
    assert select_platform(index, parse_platform(wanted), "busybox").digest == _d(digest)


def test_missing_platform_names_what_exists() -> None:
    index = parse_manifest(HUB_LIST, DOCKER_LIST, "busybox")
    assert isinstance(index, Index)
    with pytest.raises(
        VerificationError, match=r"no image for platform linux/s390x \(available: .*linux/amd64"
    ):
        select_platform(index, parse_platform("linux/s390x"), "busybox")


def test_oci_index_skips_attestations_and_needs_no_header() -> None:
    amd = images.image([images.layer({"a": b"1"})])
    arm = images.image([images.layer({"a": b"2"})], arch="arm64", oci=True)
    media_type, body = images.index([amd, arm])
    doc = json.loads(body)
    del doc["mediaType"]  # OCI allows it; the shape tells
    index = parse_manifest(json.dumps(doc).encode(), "application/json", "x")
    assert isinstance(index, Index)
    assert index.media_type == OCI_INDEX == media_type
    assert select_platform(index, Platform("linux", "arm64"), "x").digest == arm.digest
    with pytest.raises(VerificationError, match="available: linux/amd64, linux/arm64\\)"):
        select_platform(index, Platform("unknown", "unknown"), "x")


def test_parses_image_manifests() -> None:
    lay = images.layer({"f": b"x"})
    for oci in (False, True):
        img = images.image([lay, lay], oci=oci)
        manifest = parse_manifest(img.manifest, img.media_type + "; charset=utf-8", "x")
        assert isinstance(manifest, ImageManifest)
        assert manifest.media_type == (OCI_MANIFEST if oci else DOCKER_MANIFEST)
        assert manifest.config.digest == img.config_digest
        assert [d.digest for d in manifest.layers] == [lay.digest, lay.digest]
        config = parse_config(img.config, "x")
        assert config.diff_ids == (lay.diff_id, lay.diff_id)
        assert config.platform == host_platform("x86_64")


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (b"not json", DOCKER_MANIFEST, "not valid JSON"),
        (b"[]", DOCKER_MANIFEST, "not a JSON object"),
        (b'{"schemaVersion": 1, "fsLayers": []}', "application/json", "schema 1"),
        (json.dumps({"mediaType": DOCKER_MANIFEST, "layers": []}).encode(), "", "malformed"),
        (
            json.dumps(
                {
                    "mediaType": DOCKER_MANIFEST,
                    "config": {"digest": "sha256:zz", "size": 1},
                    "layers": [],
                }
            ).encode(),
            "",
            "bad digest",
        ),
        (json.dumps({"mediaType": "application/x-other"}).encode(), "", "unsupported"),
    ],
)
def test_bad_manifests(body: bytes, content_type: str, message: str) -> None:
    with pytest.raises(VerificationError, match=message):
        parse_manifest(body, content_type, "x")


def test_platform_normalisation() -> None:
    assert normalize("Linux", "x86_64") == Platform("linux", "amd64")
    assert normalize("linux", "aarch64", "v8") == Platform("linux", "arm64")
    assert normalize("linux", "arm") == Platform("linux", "arm", "v7")
    assert normalize("linux", "arm", "6") == Platform("linux", "arm", "v6")
    assert str(parse_platform("linux/arm/v6")) == "linux/arm/v6"
    assert host_platform("aarch64") == Platform("linux", "arm64")
    assert host_platform("armv7l") == Platform("linux", "arm", "v7")
    for bad in ("linux", "linux/", "a/b/c/d", "/amd64"):
        with pytest.raises(UsageError):
            parse_platform(bad)
