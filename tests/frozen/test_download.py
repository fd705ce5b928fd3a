"""The tool against the in-memory test registry: layout, resume, retries, verification.

Every fault is a real HTTP misbehaviour served over a socket (see server.py); the
client under test is the real CLI, run in this process for speed.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dind.frozen.manifest import DOCKER_MANIFEST
from dind.frozen.progress import Progress
from tests.frozen import images
from tests.frozen.conftest import Run, partial
from tests.frozen.server import Fault, RegistryServer, sha256

Freeze = Callable[..., Run]

BASE = images.layer({"etc/os-release": b"ID=test\n", "bin/big": images.noise(600_000, 1)})
TOP = images.layer({"app/data": images.noise(300_000, 2)})
BASE_IMG = images.image([BASE], label="base")
APP_IMG = images.image([BASE, TOP], label="app")
ARM_IMG = images.image([images.layer({"arm": b"64"})], arch="arm64", variant="v8", oci=True)
FAST = ("--insecure", "--backoff", "0", "--retries", "3")


@pytest.fixture
def hub(fake: RegistryServer) -> RegistryServer:
    """Docker Hub look-alike content: library/base, library/app, a multi-arch index."""
    images.publish(fake.content, "library/base", "latest", BASE_IMG)
    images.publish(fake.content, "library/app", "1.0", APP_IMG)
    images.publish_index(fake.content, "library/multi", "latest", [APP_IMG, ARM_IMG])
    return fake


def blob_files(root: Path) -> dict[str, int]:
    return {p.name: p.stat().st_ino for p in (root / "blobs/sha256").iterdir()}


def check_layout(root: Path) -> list[dict[str, Any]]:
    """Every file the manifest names exists and matches the digest in its name."""
    entries = json.loads((root / "manifest.json").read_text())
    for entry in entries:
        for rel in [entry["Config"], *entry["Layers"]]:
            data = (root / rel).read_bytes()
            assert "sha256:" + hashlib.sha256(data).hexdigest() == "sha256:" + Path(rel).name
    return list(entries)


def test_freezes_several_images_sharing_layers(
    hub: RegistryServer, freeze: Freeze, tmp_path: Path
) -> None:
    out = tmp_path / "frozen"
    run = freeze(out, "base", "app:1.0", "multi", "--registry", hub.url, *FAST, "--jobs", "4")
    assert run.status == 0, run.err
    entries = check_layout(out)
    assert [e["RepoTags"] for e in entries] == [["base:latest"], ["app:1.0", "multi:latest"]]
    assert entries[1]["Layers"] == [
        f"blobs/sha256/{BASE.digest[7:]}",
        f"blobs/sha256/{TOP.digest[7:]}",
    ]
    # base layer, top layer, two configs: the shared layer is stored (and fetched) once
    assert len(blob_files(out)) == 4
    assert len(hub.blob_gets(BASE.digest)) == 1
    assert json.loads((out / "repositories").read_text()) == {
        "base": {"latest": BASE.digest[7:]},
        "app": {"1.0": TOP.digest[7:]},
        "multi": {"latest": TOP.digest[7:]},
    }
    assert sorted(p.name for p in out.iterdir()) == ["blobs", "manifest.json", "repositories"]
    assert "froze 3 image(s)" in run.err and "4 downloaded" in run.err


def test_rerun_fetches_nothing_and_rewrites_nothing(
    hub: RegistryServer, freeze: Freeze, tmp_path: Path
) -> None:
    out = tmp_path / "frozen"
    assert freeze(out, "app:1.0", "--registry", hub.url, *FAST).status == 0
    before = blob_files(out)
    hub.requests.clear()
    run = freeze(out, "app:1.0", "base", "--registry", hub.url, *FAST)
    assert run.status == 0, run.err
    assert blob_files(out) == before | {
        BASE_IMG.config_digest[7:]: blob_files(out)[BASE_IMG.config_digest[7:]]
    }
    assert [r.path for r in hub.blob_gets()] == [f"/v2/library/base/blobs/{BASE_IMG.config_digest}"]
    assert "3 already present" in run.err
    assert [e["RepoTags"] for e in check_layout(out)] == [["app:1.0"], ["base:latest"]]


def test_resumes_a_cut_download_with_range(
    hub: RegistryServer, freeze: Freeze, tmp_path: Path
) -> None:
    hub.fault(Fault(f"/blobs/{BASE.digest}", "drop", after=200_000, times=2))
    run = freeze(tmp_path, "base", "--registry", hub.url, *FAST)
    assert run.status == 0, run.err
    gets = hub.blob_gets(BASE.digest)
    assert [g.headers.get("Range") for g in gets] == [None, "bytes=200000-", "bytes=400000-"]
    check_layout(tmp_path)
    assert not (tmp_path / ".incomplete").exists()


def test_restarts_when_range_is_ignored(
    hub: RegistryServer, freeze: Freeze, tmp_path: Path
) -> None:
    hub.fault(
        Fault(f"/blobs/{BASE.digest}", "drop", after=100_000),
        Fault(f"/blobs/{BASE.digest}", "ignore-range"),
    )
    assert freeze(tmp_path, "base", "--registry", hub.url, *FAST).status == 0
    assert [g.status for g in hub.blob_gets(BASE.digest)] == [200, 200]
    check_layout(tmp_path)


def test_retries_500_and_429(hub: RegistryServer, freeze: Freeze, tmp_path: Path) -> None:
    hub.fault(
        Fault("/manifests/1.0", "status", status=503),
        Fault(f"/blobs/{TOP.digest}", "status", status=429, retry_after="0"),
        Fault(f"/blobs/{BASE.digest}", "status", status=500, times=2),
    )
    run = freeze(tmp_path, "app:1.0", "--registry", hub.url, *FAST)
    assert run.status == 0, run.err
    assert [g.status for g in hub.blob_gets(BASE.digest)] == [500, 500, 200]
    check_layout(tmp_path)


def test_retries_count_attempts(hub: RegistryServer, freeze: Freeze, tmp_path: Path) -> None:
    hub.fault(Fault(f"/blobs/{BASE.digest}", "status", status=502, times=2))
    run = freeze(
        tmp_path, "base", "--registry", hub.url, "--insecure", "--backoff", "0", "--retries", "2"
    )
    assert run.status == 1
    assert run.errors == [
        f"dind-frozen-images: error: blob {BASE.digest}: 502 INJECTED: injected fault "
        "(gave up after 2 attempts)"
    ]
    assert not (tmp_path / "manifest.json").exists()


def test_corrupt_blob_is_refetched_never_accepted(
    hub: RegistryServer, freeze: Freeze, tmp_path: Path
) -> None:
    hub.fault(Fault(f"/blobs/{TOP.digest}", "corrupt", after=1234))
    assert freeze(tmp_path, "app:1.0", "--registry", hub.url, *FAST).status == 0
    assert [g.headers.get("Range") for g in hub.blob_gets(TOP.digest)] == [None, None]
    check_layout(tmp_path)

    out = tmp_path / "again"
    hub.fault(Fault(f"/blobs/{TOP.digest}", "corrupt", after=5, times=3))
    run = freeze(out, "app:1.0", "--registry", hub.url, *FAST)
    assert run.status == 1
    assert len(run.errors) == 1
    assert f"blob {TOP.digest}: digest mismatch: the registry sent sha256:" in run.err
    assert not (out / "manifest.json").exists()
    assert not (out / "blobs/sha256" / TOP.digest[7:]).exists()
    assert not partial(out, TOP.digest, hub.url).exists()


def test_failed_run_resumes_on_rerun(hub: RegistryServer, freeze: Freeze, tmp_path: Path) -> None:
    hub.fault(Fault(f"/blobs/{BASE.digest}", "drop", after=300_000, times=3))
    run = freeze(tmp_path, "base", "--registry", hub.url, *FAST, "--retries", "1")
    assert run.status == 1
    assert "after 300000 of" in run.err and "gave up after 1 attempts" in run.err
    assert not (tmp_path / "manifest.json").exists()
    assert partial(tmp_path, BASE.digest, hub.url).stat().st_size == 300_000
    hub.faults.clear()
    hub.requests.clear()
    assert freeze(tmp_path, "base", "--registry", hub.url, *FAST).status == 0
    assert [g.headers.get("Range") for g in hub.blob_gets(BASE.digest)] == ["bytes=300000-"]
    check_layout(tmp_path)


def test_stalled_connection_times_out_and_resumes(
    hub: RegistryServer, freeze: Freeze, tmp_path: Path
) -> None:
    hub.fault(Fault(f"/blobs/{BASE.digest}", "stall", after=65536, seconds=3))
    run = freeze(tmp_path, "base", "--registry", hub.url, *FAST, "--timeout", "0.5")
    assert run.status == 0, run.err
    assert [g.headers.get("Range") for g in hub.blob_gets(BASE.digest)] == [None, "bytes=65536-"]


def test_present_but_corrupt_blob_is_replaced(
    hub: RegistryServer, freeze: Freeze, tmp_path: Path
) -> None:
    assert freeze(tmp_path, "base", "--registry", hub.url, *FAST).status == 0
    layer = tmp_path / "blobs/sha256" / BASE.digest[7:]
    data = bytearray(layer.read_bytes())
    data[100] ^= 1
    layer.write_bytes(bytes(data))
    assert freeze(tmp_path, "base", "--registry", hub.url, *FAST).status == 0
    check_layout(tmp_path)


def test_finished_partial_is_renamed_without_download(
    hub: RegistryServer, freeze: Freeze, tmp_path: Path
) -> None:
    (tmp_path / ".incomplete").mkdir()
    partial(tmp_path, BASE.digest, hub.url).write_bytes(BASE.blob)
    partial(tmp_path, f"sha256:{'0' * 64}", hub.url).write_bytes(b"stale, from another run")
    assert freeze(tmp_path, "base", "--registry", hub.url, *FAST).status == 0
    assert hub.blob_gets(BASE.digest) == []
    check_layout(tmp_path)
    assert not (tmp_path / ".incomplete").exists()  # a successful run leaves no partials


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        (
            "nosuch",
            "manifest library/nosuch:latest: not found (404 MANIFEST_UNKNOWN: manifest unknown)",
        ),
        ("base:nosuch", "manifest library/base:nosuch: not found (404 MANIFEST_UNKNOWN"),
    ],
)
def test_unknown_image(
    hub: RegistryServer, freeze: Freeze, tmp_path: Path, ref: str, message: str
) -> None:
    run = freeze(tmp_path, ref, "--registry", hub.url, *FAST)
    assert run.status == 1
    assert len(run.errors) == 1 and message in run.err
    assert not (tmp_path / "manifest.json").exists()


def test_missing_blob_is_one_line(hub: RegistryServer, freeze: Freeze, tmp_path: Path) -> None:
    del hub.content.blobs[TOP.digest]
    run = freeze(tmp_path, "app:1.0", "--registry", hub.url, *FAST)
    assert run.status == 1
    assert run.errors == [
        f"dind-frozen-images: error: blob {TOP.digest}: not found (404 BLOB_UNKNOWN: blob unknown)"
    ]
    assert not (tmp_path / "manifest.json").exists()


def test_digest_pins(hub: RegistryServer, freeze: Freeze, tmp_path: Path) -> None:
    index_digest = hub.content.manifests[("library/multi", "latest")]
    multi = sha256(index_digest[1])
    ok = [
        f"multi@{multi}",
        f"multi@{APP_IMG.digest}",
        f"multi:latest@{multi}",
        f"multi:latest@{APP_IMG.digest}",
        f"app:1.0@{APP_IMG.digest}",
    ]
    run = freeze(tmp_path, *ok, "--registry", hub.url, *FAST)
    assert run.status == 0, run.err
    # Digest-only references get no tag; the tagged ones keep theirs.
    assert [e["RepoTags"] for e in check_layout(tmp_path)] == [["multi:latest", "app:1.0"]]


def test_moved_tag_is_an_error_naming_both_digests(
    hub: RegistryServer, freeze: Freeze, tmp_path: Path
) -> None:
    run = freeze(tmp_path, f"app:1.0@{BASE_IMG.digest}", "--registry", hub.url, *FAST)
    assert run.status == 1
    assert run.errors == [
        f"dind-frozen-images: error: app:1.0@{BASE_IMG.digest}: "
        f"tag '1.0' now points to {APP_IMG.digest}, "
        f"not to the pinned {BASE_IMG.digest}"
    ]
    multi = sha256(hub.content.manifests[("library/multi", "latest")][1])
    run = freeze(tmp_path, f"multi:latest@{ARM_IMG.digest}", "--registry", hub.url, *FAST)
    assert run.status == 1
    assert f"now points to {multi} (its linux/amd64 manifest is {APP_IMG.digest})" in run.err


def test_tampered_manifest_by_digest_is_refused(
    hub: RegistryServer, freeze: Freeze, tmp_path: Path
) -> None:
    hub.content.manifests[("library/app", APP_IMG.digest)] = (DOCKER_MANIFEST, BASE_IMG.manifest)
    run = freeze(tmp_path, f"app@{APP_IMG.digest}", "--registry", hub.url, *FAST)
    assert run.status == 1
    assert f"the registry sent a manifest with digest {BASE_IMG.digest}" in run.err


def test_platform_selection(hub: RegistryServer, freeze: Freeze, tmp_path: Path) -> None:
    run = freeze(tmp_path, "multi", "--platform", "linux/arm64", "--registry", hub.url, *FAST)
    assert run.status == 0, run.err
    assert check_layout(tmp_path)[0]["Config"] == f"blobs/sha256/{ARM_IMG.config_digest[7:]}"
    run = freeze(tmp_path, "multi", "--platform", "linux/s390x", "--registry", hub.url, *FAST)
    assert run.status == 1
    assert "no image for platform linux/s390x (available: linux/amd64, linux/arm64)" in run.err
    # A single-platform image of another platform: an error only when asked explicitly.
    run = freeze(tmp_path, "base", "--platform", "linux/arm64", "--registry", hub.url, *FAST)
    assert run.status == 1 and "image is for linux/amd64, not linux/arm64" in run.err


def test_config_and_manifest_must_agree(
    fake: RegistryServer, freeze: Freeze, tmp_path: Path
) -> None:
    two = images.image([BASE, TOP])
    doc = json.loads(two.manifest)
    doc["layers"] = doc["layers"][:1]
    bad = images.Image(two.config, two.layers, json.dumps(doc).encode(), DOCKER_MANIFEST)
    images.publish(fake.content, "library/bad", "latest", bad)
    run = freeze(tmp_path, "bad", "--registry", fake.url, *FAST)
    assert run.status == 1
    assert run.errors == [
        "dind-frozen-images: error: bad:latest: the manifest lists 1 layers "
        "but the config 2 diff_ids"
    ]
    assert not (tmp_path / "manifest.json").exists()


def test_oversized_blob_is_refused(fake: RegistryServer, freeze: Freeze, tmp_path: Path) -> None:
    img = images.image([BASE])
    images.publish(fake.content, "library/big", "latest", img)
    fake.content.blobs[img.config_digest] = img.config + b" "
    run = freeze(tmp_path, "big", "--registry", fake.url, *FAST)
    assert run.status == 1
    assert (
        f"blob {img.config_digest}: the registry sent more than {len(img.config)} bytes" in run.err
    )


def test_token_auth_and_renewal(freeze: Freeze, tmp_path: Path) -> None:
    with RegistryServer(token_auth=True) as server:
        images.publish(server.content, "library/app", "1.0", APP_IMG)
        server.fault(Fault(f"/blobs/{BASE.digest}", "drop", after=100_000))
        run = freeze(tmp_path, f"{server.hostport}/library/app:1.0", *FAST, "--jobs", "1")
        assert run.status == 0, run.err
        tokens = [r for r in server.requests if r.path.startswith("/token")]
        assert len(tokens) == 1
        assert "scope=repository%3Alibrary%2Fapp%3Apull" in tokens[0].path
        assert "service=test-registry" in tokens[0].path
        assert all(r.headers.get("Authorization") for r in server.blob_gets())
        assert check_layout(tmp_path)[0]["RepoTags"] == [f"{server.hostport}/library/app:1.0"]
        # An expired/revoked token is renewed once, transparently.
        server.revoke_tokens()
        run = freeze(tmp_path / "2", f"{server.hostport}/library/app:1.0", *FAST)
        assert run.status == 0, run.err


def test_auth_refused(freeze: Freeze, tmp_path: Path) -> None:
    with RegistryServer(token_auth=True) as server:
        images.publish(server.content, "library/app", "1.0", APP_IMG)
        server.fault(Fault("/token", "status", status=401, times=10))
        run = freeze(tmp_path, f"{server.hostport}/library/app:1.0", *FAST)
        assert run.status == 1
        assert run.errors == [
            f"dind-frozen-images: error: {server.hostport}: the token server {server.url}/token "
            "answered 401 (INJECTED: injected fault); give credentials with --auth-file "
            "(docker's config.json) or --username and --password-stdin"
        ]


def test_redirect_to_another_host_drops_authorization(freeze: Freeze, tmp_path: Path) -> None:
    with RegistryServer(token_auth=True) as server, RegistryServer() as cdn:
        images.publish(server.content, "library/app", "1.0", APP_IMG)
        cdn.content.add_blob(TOP.blob)
        server.fault(
            Fault(
                f"/blobs/{TOP.digest}",
                "redirect",
                location=cdn.url.replace("127.0.0.1", "localhost"),
            )
        )
        run = freeze(tmp_path, f"{server.hostport}/library/app:1.0", *FAST)
        assert run.status == 0, run.err
        (got,) = cdn.blob_gets(TOP.digest)
        assert "Authorization" not in got.headers
        check_layout(tmp_path)


def test_json_logs(hub: RegistryServer, freeze: Freeze, tmp_path: Path) -> None:
    run = freeze(tmp_path, "base", "--registry", hub.url, *FAST, "--log-format", "json")
    assert run.status == 0
    records = [json.loads(line) for line in run.lines]
    assert records[0]["image"] == "base:latest" and records[0]["digest"] == BASE_IMG.digest
    assert records[-1]["downloaded_blobs"] == 2 and records[-1]["level"] == "INFO"
    run = freeze(tmp_path, "nosuch", "--registry", hub.url, *FAST, "--log-format", "json")
    (error,) = [json.loads(line) for line in run.lines]
    assert error["level"] == "ERROR" and "not found" in error["message"]


def test_quiet_prints_nothing_on_success(
    hub: RegistryServer, freeze: Freeze, tmp_path: Path
) -> None:
    run = freeze(tmp_path, "base", "--registry", hub.url, *FAST, "-q")
    assert (run.status, run.err) == (0, "")


def test_one_writer_per_directory(hub: RegistryServer, freeze: Freeze, tmp_path: Path) -> None:
    fd = os.open(tmp_path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        run = freeze(tmp_path, "base", "--registry", hub.url, *FAST)
    finally:
        os.close(fd)
    assert run.status == 1 and "is being written by another process" in run.err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["out"], "Missing argument 'IMAGES...'"),
        (["out", "UPPER"], "invalid reference 'UPPER'"),
        (["out", "x", "--jobs", "0"], "--jobs"),
        (["out", "x", "--retries", "0"], "--retries"),
        (["out", "x", "--platform", "linux"], "invalid platform"),
        (["out", "x", "--registry", "http://127.0.0.1:1"], "plain HTTP needs --insecure"),
        (["out", "x", "--log-format", "xml"], "--log-format"),
    ],
)
def test_usage_errors_are_one_line_exit_2(
    freeze: Freeze, tmp_path: Path, args: list[str], message: str
) -> None:
    run = freeze(*[str(tmp_path / a) if a == "out" else a for a in args])
    assert run.status == 2
    assert len(run.errors) == 1 and message in run.err
    assert "Traceback" not in run.err


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root for a private tmpfs (CI runs as root)")
def test_disk_full(hub: RegistryServer, tmp_path: Path) -> None:
    """A 512 kB tmpfs in a private mount namespace: ENOSPC is one line, exit 1."""
    out = tmp_path / "small"
    out.mkdir()
    console = Path(sys.executable).with_name("dind-frozen-images")
    script = 'mount -t tmpfs -o size=512k frozen-test "$1" && shift && exec "$@"'
    argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", str(out)]
    argv += [str(console), str(out), "base", "--registry", hub.url, *FAST, "--retries", "1"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.splitlines()[-1].startswith("dind-frozen-images: error: disk full writing ")
    assert "No space left on device" in proc.stderr
    assert list(out.iterdir()) == []  # the tmpfs went away with its namespace


def test_progress_lines() -> None:
    """What a terminal shows: one line per blob in flight, then the total."""
    stream = io.StringIO()
    progress = Progress(stream, enabled=True)
    progress.expect("sha256:" + "a" * 64, 2_000_000)
    progress.expect("sha256:" + "b" * 64, 1000)
    progress.update("sha256:" + "b" * 64, 1000)
    progress.update("sha256:" + "a" * 64, 500_000)
    time.sleep(0.3)
    assert "\x1b[J  aaaaaaaaaaaa  500.0 kB / 2.0 MB\n" in stream.getvalue()
    assert progress.lines() == [
        "  aaaaaaaaaaaa  500.0 kB / 2.0 MB",
        "  total 501.0 kB / 2.0 MB (1/2 blobs)",
    ]
    progress.close()
    assert "total" in stream.getvalue() and stream.getvalue().endswith("\x1b[J")
