"""Against a real registry: Debian's docker-registry (distribution 2.8) on loopback.

Images are pushed through the registry API from Python, so the OCI index and
manifest-list cases are covered too (docker 20.10 cannot push those). Faults and
token auth come from the test server placed in front of the real registry.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.frozen import images
from tests.frozen.conftest import Run
from tests.frozen.server import Fault, RegistryServer
from tests.frozen.test_download import check_layout
from tests.support.registry import LocalRegistry

Freeze = Callable[..., Run]
FAST = ("--insecure", "--backoff", "0", "--retries", "3")
LAYER_A = images.layer({"a/big": images.noise(1_500_000, 10)})
LAYER_B = images.layer({"b/small": b"b" * 1000})
AMD = images.image([LAYER_A, LAYER_B])
ARM = images.image([LAYER_A], arch="arm", variant="v7", oci=True)
OCI_AMD = images.image([LAYER_B], oci=True)
SCRIPT = Path(__file__).parents[2] / "scripts" / "download-frozen-image"
CONSOLE = Path(sys.executable).with_name("dind-frozen-images")


@pytest.fixture(scope="module")
def pushed(registry: LocalRegistry) -> Iterator[dict[str, str]]:
    """Push the test images once; returns manifest digests by name."""
    with httpx.Client(timeout=30) as client:
        url = registry.url
        yield {
            "app": images.push(client, url, "library/app", "1", AMD),
            "oci": images.push(client, url, "team/oci", "v1", OCI_AMD),
            "index": images.push_index(client, url, "library/multi", "latest", [AMD, ARM]),
            "list": images.push_index(client, url, "library/list", "latest", [AMD, ARM], oci=False),
        }


def test_freezes_from_real_registry(
    registry: LocalRegistry, pushed: dict[str, str], freeze: Freeze, tmp_path: Path
) -> None:
    host = registry.hostport
    run = freeze(
        tmp_path,
        f"{host}/library/app:1",
        f"{host}/team/oci:v1@{pushed['oci']}",
        f"{host}/library/multi@{pushed['index']}",
        f"{host}/library/list",
        *FAST,
    )
    assert run.status == 0, run.err
    entries = check_layout(tmp_path)
    assert [e["RepoTags"] for e in entries] == [
        [f"{host}/library/app:1", f"{host}/library/list:latest"],
        [f"{host}/team/oci:v1"],
    ]
    assert len(entries) == 2  # the index resolved to the amd64 image, the same as app:1
    assert len(list((tmp_path / "blobs/sha256").iterdir())) == 4


def test_platform_from_real_index(
    registry: LocalRegistry, pushed: dict[str, str], freeze: Freeze, tmp_path: Path
) -> None:
    run = freeze(
        tmp_path, "multi", "list", "--platform", "linux/arm/v7", "--registry", registry.url, *FAST
    )
    assert run.status == 0, run.err
    (entry,) = check_layout(tmp_path)
    assert entry["RepoTags"] == ["multi:latest", "list:latest"]
    assert entry["Config"] == f"blobs/sha256/{ARM.config_digest[7:]}"


def test_real_registry_errors(
    registry: LocalRegistry, pushed: dict[str, str], freeze: Freeze, tmp_path: Path
) -> None:
    run = freeze(tmp_path, "nosuch/image", "--registry", registry.url, *FAST)
    assert run.status == 1
    assert run.errors == [
        "dind-frozen-images: error: manifest nosuch/image:latest: not found "
        "(404 MANIFEST_UNKNOWN: manifest unknown)"
    ]
    run = freeze(tmp_path, f"app:1@{pushed['oci']}", "--registry", registry.url, *FAST)
    assert run.status == 1
    assert f"now points to {pushed['app']}, not to the pinned {pushed['oci']}" in run.err
    # https against a plain-HTTP registry: a clear network error, not a hang
    run = freeze(tmp_path, f"{registry.hostport}/library/app:1", "--retries", "1")
    assert run.status == 1
    (error,) = run.errors
    assert error.startswith(
        "dind-frozen-images: error: manifest library/app:1: ConnectError: [SSL: WRONG_VER"
    )
    assert error.endswith("a plain-HTTP registry needs --insecure (gave up after 1 attempts)")
    assert not (tmp_path / "manifest.json").exists()


def test_faults_in_front_of_real_registry(
    upstream_proxy: RegistryServer, pushed: dict[str, str], freeze: Freeze, tmp_path: Path
) -> None:
    upstream_proxy.fault(
        Fault(f"/blobs/{LAYER_A.digest}", "drop", after=700_000),
        Fault(f"/blobs/{LAYER_A.digest}", "status", status=503),
        Fault(f"/blobs/{LAYER_A.digest}", "drop", after=500_000),
        Fault(f"/blobs/{LAYER_B.digest}", "corrupt", after=10),
        Fault("/manifests/1", "status", status=429, retry_after="0"),
    )
    run = freeze(
        tmp_path,
        "app:1",
        "--registry",
        upstream_proxy.url,
        "--insecure",
        "--backoff",
        "0",
        "--retries",
        "4",
    )
    assert run.status == 0, run.err
    gets = upstream_proxy.blob_gets(LAYER_A.digest)
    # The real registry honours Range: the body resumes where the cut left it.
    assert [(g.headers.get("Range"), g.status) for g in gets] == [
        (None, 200),
        ("bytes=700000-", 503),
        ("bytes=700000-", 206),
        ("bytes=1200000-", 206),
    ]
    check_layout(tmp_path)


def test_token_auth_front(
    token_proxy: RegistryServer, pushed: dict[str, str], freeze: Freeze, tmp_path: Path
) -> None:
    run = freeze(tmp_path, "multi", "--registry", token_proxy.url, *FAST)
    assert run.status == 0, run.err
    tokens = [r for r in token_proxy.requests if r.path.startswith("/token")]
    assert len(tokens) == 1 and "library%2Fmulti" in tokens[0].path
    v2 = [r for r in token_proxy.requests if r.path.startswith("/v2/")]
    assert [r.status for r in v2 if "Authorization" not in r.headers] == [401]
    check_layout(tmp_path)


@pytest.mark.parametrize("program", [CONSOLE, SCRIPT])
def test_installed_commands(
    registry: LocalRegistry, pushed: dict[str, str], tmp_path: Path, program: Path
) -> None:
    """The console script and the scripts/ wrapper, as separate processes."""
    env = {**os.environ, "PATH": f"{CONSOLE.parent}:{os.environ['PATH']}"}
    ok = subprocess.run(
        [str(program), str(tmp_path), "app:1", "--registry", registry.url, "--insecure", "-q"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert (ok.returncode, ok.stderr) == (0, "")
    assert json.loads((tmp_path / "manifest.json").read_text())[0]["RepoTags"] == ["app:1"]
    bad = subprocess.run(
        [str(program), str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 2 and len(bad.stderr.splitlines()) == 1
    missing = subprocess.run(
        [str(program), str(tmp_path), "nope", "--registry", registry.url, "--insecure"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert missing.returncode == 1
    assert missing.stderr.splitlines()[-1].startswith(
        "dind-frozen-images: error: manifest library/nope:latest: not found"
    )
