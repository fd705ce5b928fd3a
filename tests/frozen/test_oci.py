"""``--format oci``: an OCI image layout that skopeo reads, and converts into an archive
that the real engine (Debian 12's Docker 20.10) loads and runs."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dind.frozen.manifest import DOCKER_MANIFEST, OCI_MANIFEST
from dind.frozen.ocilayout import (
    IMAGE_NAME,
    REF_NAME,
    OciImage,
    descriptor_problem,
    merge,
    oci_manifest,
)
from tests.frozen import images
from tests.frozen.conftest import HELLO, EngineImages, Run, need_program
from tests.frozen.server import RegistryServer
from tests.frozen.test_download import APP_IMG, BASE_IMG, FAST
from tests.support.dockerd import Dockerd

Freeze = Callable[..., Run]


@pytest.fixture
def hub(fake: RegistryServer) -> RegistryServer:
    images.publish(fake.content, "library/base", "latest", BASE_IMG)
    images.publish(fake.content, "library/app", "1.0", APP_IMG)
    return fake


def check_oci(root: Path) -> list[dict[str, Any]]:
    """The layout's files, and every blob each manifest names, whole and verified."""
    assert json.loads((root / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads((root / "index.json").read_text())
    assert index["schemaVersion"] == 2
    for desc in index["manifests"]:
        body = (root / "blobs/sha256" / desc["digest"][7:]).read_bytes()
        assert "sha256:" + hashlib.sha256(body).hexdigest() == desc["digest"]
        assert len(body) == desc["size"] and desc["mediaType"] == OCI_MANIFEST
        manifest = json.loads(body)
        assert manifest["mediaType"] == OCI_MANIFEST
        for blob in [manifest["config"], *manifest["layers"]]:
            data = (root / "blobs/sha256" / blob["digest"][7:]).read_bytes()
            assert "sha256:" + hashlib.sha256(data).hexdigest() == blob["digest"]
    return list(index["manifests"])


def test_docker_manifests_become_oci_ones() -> None:
    body, media_type = oci_manifest(APP_IMG.manifest, DOCKER_MANIFEST)
    doc, original = json.loads(body), json.loads(APP_IMG.manifest)
    assert media_type == OCI_MANIFEST == doc["mediaType"]
    assert doc["config"] == {**original["config"], "mediaType": images.OCI_CONFIG}
    assert doc["layers"] == [{**lay, "mediaType": images.OCI_LAYER} for lay in original["layers"]]
    oci = images.image([images.layer({"x": b"y"})], oci=True)
    assert oci_manifest(oci.manifest, OCI_MANIFEST) == (oci.manifest, OCI_MANIFEST)


def test_merge_moves_a_name_and_keeps_the_rest() -> None:
    def image(n: int, *names: str) -> OciImage:
        return OciImage(f"sha256:{n:064x}", n, OCI_MANIFEST, tuple((x, f"r/{x}") for x in names))

    def names(entries: list[dict[str, Any]]) -> list[tuple[str, str | None]]:
        return [(d["digest"][-1], d.get("annotations", {}).get(REF_NAME)) for d in entries]

    old = merge([], [image(1, "a:1", "b:1"), image(2)])
    assert names(old) == [
        ("1", "a:1"),
        ("1", "b:1"),
        ("2", None),
    ]
    new = merge(old, [image(3, "b:1"), image(2)])
    assert names(new) == [
        ("1", "a:1"),
        ("2", None),
        ("3", "b:1"),
    ]
    assert new[2]["annotations"] == {REF_NAME: "b:1", IMAGE_NAME: "r/b:1"}


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ("x", "not a JSON object"),
        ({"mediaType": "text/plain"}, "mediaType 'text/plain' is not a manifest or index"),
        ({"mediaType": OCI_MANIFEST, "digest": "sha256:../x"}, "is not a digest"),
        ({"mediaType": OCI_MANIFEST, "digest": "sha256:" + "a" * 64, "size": -1}, "not a size"),
        (
            {
                "mediaType": OCI_MANIFEST,
                "digest": "sha256:" + "a" * 64,
                "size": 1,
                "annotations": 1,
            },
            "annotations are not strings",
        ),
        (
            {"mediaType": OCI_MANIFEST, "digest": "sha256:" + "b" * 64, "size": 1},
            f"blobs/sha256/{'b' * 64} is missing",
        ),
    ],
)
def test_existing_index_descriptor_problems(entry: object, problem: str) -> None:
    found = descriptor_problem(entry, lambda rel: rel.endswith("a" * 64))
    assert found is not None and problem in found


def test_layout_from_the_test_registry(hub: RegistryServer, freeze: Freeze, tmp_path: Path) -> None:
    run = freeze(tmp_path, "base", "app:1.0", "--registry", hub.url, "--format", "oci", *FAST)
    assert run.status == 0, run.err
    entries = check_oci(tmp_path)
    assert [d["annotations"] for d in entries] == [
        {REF_NAME: "base:latest", IMAGE_NAME: "docker.io/library/base:latest"},
        {REF_NAME: "app:1.0", IMAGE_NAME: "docker.io/library/app:1.0"},
    ]
    assert not (tmp_path / "manifest.json").exists()
    # Again, with a tag moved and a digest-only reference: merged, nothing fetched twice.
    hub.requests.clear()
    run = freeze(tmp_path, f"app@{APP_IMG.digest}", "--registry", hub.url, "--format", "oci", *FAST)
    assert run.status == 0, run.err
    assert len(check_oci(tmp_path)) == 3
    assert hub.blob_gets() == []
    # An index.json naming a blob that is gone is refused before any download.
    (tmp_path / "blobs/sha256" / entries[0]["digest"][7:]).unlink()
    run = freeze(tmp_path, "base", "--registry", hub.url, "--format", "oci", *FAST)
    assert run.status == 1
    assert f"{tmp_path / 'index.json'}: descriptor 1: blobs/sha256/" in run.err


def test_skopeo_reads_it_and_the_engine_runs_it(
    engine_images: EngineImages, loader: Dockerd, freeze: Freeze, tmp_path: Path
) -> None:
    """`skopeo inspect oci:DIR:NAME`, then `skopeo copy oci:DIR:NAME docker-archive:...`,
    `docker load` of that into Debian 12's engine, and `docker run`."""
    skopeo = need_program("skopeo", "skopeo")
    reg = engine_images.registry
    out = tmp_path / "oci"
    run = freeze(out, "debian:bookworm", "app:1", "--registry", reg.url, "--format", "oci", *FAST)
    assert run.status == 0, run.err
    entries = check_oci(out)
    assert [d["annotations"][REF_NAME] for d in entries] == ["debian:bookworm", "app:1"]
    inspect = subprocess.run(
        [skopeo, "inspect", f"oci:{out}:app:1"], capture_output=True, text=True, check=True
    )
    info = json.loads(inspect.stdout)
    manifest = json.loads((out / "blobs/sha256" / entries[1]["digest"][7:]).read_bytes())
    assert info["Layers"] == [layer["digest"] for layer in manifest["layers"]]
    assert (info["Os"], info["Architecture"]) == ("linux", "amd64")
    archive = tmp_path / "app.tar"
    subprocess.run(
        [skopeo, "copy", "-q", f"oci:{out}:app:1", f"docker-archive:{archive}:app:1"],
        check=True,
        capture_output=True,
    )
    with archive.open("rb") as tar:
        assert "Loaded image: app:1" in loader.docker("load", stdin=tar).stdout
    # The same image as the daemon that pushed it: same config, same ID.
    assert loader.docker("image", "inspect", "-f", "{{.Id}}", "app:1").stdout.strip() == (
        engine_images.app_id
    )
    assert loader.docker("run", "--rm", "app:1").stdout == HELLO
    assert os.path.getsize(archive) > 0
