"""zstd layers: verified against the config's diff_id, kept zstd in the OCI layout, unpacked
to plain tars (``docker save``'s form) for ``docker load``."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.frozen import images
from tests.frozen.conftest import HELLO, EngineImages, Run, need_program
from tests.frozen.engine import load, try_load
from tests.frozen.server import RegistryServer
from tests.frozen.test_download import FAST, check_layout
from tests.frozen.test_oci import check_oci
from tests.support.dockerd import Dockerd

Freeze = Callable[..., Run]
Z1 = images.zstd_layer({"etc/z1": images.noise(700_000, 60), "etc/text": b"zstd " * 20_000})
Z2 = images.zstd_layer({"app/z2": b"second layer"})
GZ = images.layer({"gz/file": b"a gzip layer beside them"})
ZIMG = images.image([Z1, GZ, Z2], oci=True, label="zstd")


@pytest.fixture
def zhub(fake: RegistryServer) -> RegistryServer:
    images.publish(fake.content, "library/z", "1", ZIMG)
    return fake


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_docker_format_stores_the_tars(
    zhub: RegistryServer, freeze: Freeze, tmp_path: Path
) -> None:
    run = freeze(tmp_path, "z:1", "--registry", zhub.url, *FAST)
    assert run.status == 0, run.err
    (entry,) = check_layout(tmp_path)
    # zstd layers by their diff_id (the tar), the gzip one as served
    assert entry["Layers"] == [
        f"blobs/sha256/{Z1.diff_id[7:]}",
        f"blobs/sha256/{GZ.digest[7:]}",
        f"blobs/sha256/{Z2.diff_id[7:]}",
    ]
    assert (tmp_path / entry["Layers"][0]).read_bytes() == Z1.tar
    blobs = {p.name for p in (tmp_path / "blobs/sha256").iterdir()}
    assert Z1.digest[7:] not in blobs and Z2.digest[7:] not in blobs  # no zstd left over
    assert not (tmp_path / ".incomplete").exists()
    zhub.requests.clear()
    assert freeze(tmp_path, "z:1", "--registry", zhub.url, *FAST).status == 0
    assert zhub.blob_gets() == []  # the tars are there: nothing to fetch


def test_oci_format_keeps_zstd(zhub: RegistryServer, freeze: Freeze, tmp_path: Path) -> None:
    run = freeze(tmp_path, "z:1", "--registry", zhub.url, "--format", "oci", *FAST)
    assert run.status == 0, run.err
    (entry,) = check_oci(tmp_path)
    assert entry["digest"] == ZIMG.digest  # an OCI manifest: the registry's bytes
    assert (tmp_path / "blobs/sha256" / Z1.digest[7:]).read_bytes() == Z1.blob


@pytest.mark.parametrize("output_format", ["docker", "oci"])
def test_wrong_diff_id_is_refused(
    fake: RegistryServer, freeze: Freeze, tmp_path: Path, output_format: str
) -> None:
    """The compressed digest is right, the tar inside is not what the config says."""
    lying = images.Layer(Z2.tar, Z1.blob, zstd=True)  # Z1's bytes, Z2's diff_id
    img = images.image([lying], oci=True)
    images.publish(fake.content, "library/bad", "1", img)
    run = freeze(tmp_path, "bad:1", "--registry", fake.url, "--format", output_format, *FAST)
    assert run.status == 1
    assert run.errors == [
        f"dind-frozen-images: error: layer {Z1.digest}: its uncompressed content is "
        f"{Z1.diff_id}, the image config lists {Z2.diff_id}"
    ]
    layers = [p.name for p in (tmp_path / "blobs/sha256").iterdir()]
    assert layers == [img.config_digest[7:]]  # neither the zstd blob nor a tar
    assert not (tmp_path / "manifest.json").exists() and not (tmp_path / "index.json").exists()


def test_not_zstd_at_all(fake: RegistryServer, freeze: Freeze, tmp_path: Path) -> None:
    """A blob labelled zstd that is not (its digest is right: the image is broken)."""
    bogus = images.Layer(b"tar", b"this is not a zstd frame", zstd=True)
    img = images.image([bogus], oci=True)
    images.publish(fake.content, "library/bogus", "1", img)
    run = freeze(tmp_path, "bogus:1", "--registry", fake.url, *FAST)
    assert run.status == 1
    (error,) = run.errors
    assert error.startswith(f"dind-frozen-images: error: layer {bogus.digest}: not a valid zstd")


def test_pushed_with_zstd_by_skopeo_loads_into_docker_20_10(
    engine_images: EngineImages, loader: Dockerd, freeze: Freeze, tmp_path: Path
) -> None:
    """skopeo recompresses the app image with zstd; the docker output loads and runs in
    Debian 12's engine, while the same directory with the zstd blobs is refused."""
    skopeo = need_program("skopeo", "skopeo")
    host = engine_images.registry.hostport
    subprocess.run(
        [
            skopeo, "copy", "-q", "--src-tls-verify=false", "--dest-tls-verify=false",
            "-f", "oci", "--dest-compress-format", "zstd",
            f"docker://{host}/library/app:1", f"docker://{host}/zstd/app:1",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    oci = tmp_path / "oci"
    run = freeze(oci, f"{host}/zstd/app:1", "--insecure", "--format", "oci")
    assert run.status == 0, run.err
    (entry,) = check_oci(oci)
    manifest = json.loads((oci / "blobs/sha256" / entry["digest"][7:]).read_bytes())
    assert {layer["mediaType"] for layer in manifest["layers"]} == {images.ZSTD_LAYER}
    raw = subprocess.run(
        [skopeo, "inspect", "--raw", f"oci:{oci}:{host}/zstd/app:1"],
        capture_output=True,
        check=True,
    ).stdout
    assert sha(raw) == entry["digest"]

    out = tmp_path / "docker"
    run = freeze(out, f"{host}/zstd/app:1", "--insecure")
    assert run.status == 0, run.err
    (layout,) = check_layout(out)
    assert "Loaded image: " in load(loader, out)
    assert loader.docker("run", "--rm", f"{host}/zstd/app:1").stdout == HELLO

    # Each layer file is the plain tar its diff_id names: what `docker save` writes and
    # every engine loads.
    config = json.loads((out / layout["Config"]).read_bytes())
    assert [f"sha256:{Path(rel).name}" for rel in layout["Layers"]] == config["rootfs"]["diff_ids"]
    for rel in layout["Layers"]:
        assert tarfile.is_tarfile(out / rel)

    # Measured, against the issue's premise: Debian 12's Docker 20.10.24 loads zstd layers
    # too. The tars do not depend on an engine reading zstd; README says so.
    raw_dir = tmp_path / "raw-zstd"
    shutil.copytree(out, raw_dir)
    for layer in manifest["layers"]:
        shutil.copy(oci / "blobs/sha256" / layer["digest"][7:], raw_dir / "blobs/sha256")
    layout["Layers"] = [f"blobs/sha256/{layer['digest'][7:]}" for layer in manifest["layers"]]
    layout["RepoTags"] = ["raw/zstd:1"]
    (raw_dir / "manifest.json").write_text(json.dumps([layout]))
    (raw_dir / "repositories").unlink()
    assert loader.docker("version", "-f", "{{.Server.Version}}").stdout.startswith("20.10.")
    assert try_load(loader, raw_dir).returncode == 0
    assert loader.docker("run", "--rm", "raw/zstd:1").stdout == HELLO
