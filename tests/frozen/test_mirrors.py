"""Mirrors with fallback: in the order given, then the origin; one attempt per object each.

The origin is the real docker-registry; mirrors are the test server (tests/frozen/
server.py): in front of the registry with faults, or serving content of its own.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from dind.errors import UsageError
from dind.frozen.sources import parse_mirror, parse_mirrors
from tests.frozen import images
from tests.frozen.conftest import Run, partial
from tests.frozen.server import Fault, RegistryServer, sha256
from tests.frozen.test_download import check_layout
from tests.support.registry import LocalRegistry

Freeze = Callable[..., Run]
FAST = ("--insecure", "--backoff", "0", "--retries", "3")
BIG = images.layer({"mirror/big": images.noise(800_000, 50)})
SMALL = images.layer({"mirror/small": images.noise(50_000, 51)})
IMG = images.image([BIG, SMALL], label="mirrored")
ARM = images.image([SMALL], arch="arm64", label="mirrored-arm")
WRONG = images.noise(len(BIG.blob), 52)


@pytest.fixture(scope="module")
def origin(registry: LocalRegistry) -> Iterator[LocalRegistry]:
    with httpx.Client(timeout=30) as client:
        images.push(client, registry.url, "mirrored/app", "1", IMG)
        images.push_index(client, registry.url, "mirrored/multi", "1", [IMG, ARM])
    yield registry


@pytest.fixture
def dead() -> str:
    """A loopback port nothing listens on: connections are refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def summary(run: Run) -> dict[str, object]:
    record = json.loads(run.lines[-1])
    assert record["message"].startswith("froze "), record
    return dict(record)


def warnings(run: Run) -> list[str]:
    return [r["message"] for r in map(json.loads, run.lines) if r["level"] == "WARNING"]


def test_dead_cut_and_lying_mirrors_then_the_origin(
    origin: LocalRegistry, dead: str, freeze: Freeze, tmp_path: Path
) -> None:
    with RegistryServer(upstream=origin.url) as cutter, RegistryServer() as liar:
        cutter.fault(Fault(f"/blobs/{BIG.digest}", "drop", after=len(BIG.blob) // 2))
        images.publish(liar.content, "mirrored/app", "1", IMG)
        liar.content.blobs[BIG.digest] = WRONG
        out = tmp_path / "out"
        run = freeze(
            out,
            f"{origin.hostport}/mirrored/app:1",
            *FAST,
            "-v",
            "--log-format",
            "json",
            "--mirror",
            dead,
            "--mirror",
            cutter.url,
            "--mirror",
            liar.url,
        )
        assert run.status == 0, run.err
        check_layout(out)
        assert not (out / ".incomplete").exists()
        for path in out.rglob("*"):
            assert not path.is_file() or path.read_bytes() != WRONG
        # The liar is named once, and asked nothing after its lie.
        assert warnings(run) == [
            f"mirror {liar.url} is not used for the rest of this run: it sent "
            f"{sha256(WRONG)} for blob {BIG.digest}"
        ]
        assert [r.path.rsplit("/", 1)[1] for r in liar.requests] == [BIG.digest]
        # Tags are resolved at the origin: no mirror was asked for one.
        assert not [r for r in (*cutter.requests, *liar.requests) if "/manifests/" in r.path]
        # Bytes by source: the config and the small layer from the cutter, the big
        # layer whole from the origin (never resumed from the cutter's half).
        record = summary(run)
        assert record["sources"] == {
            cutter.url: len(IMG.config) + len(SMALL.blob),
            f"http://{origin.hostport}": len(BIG.blob),
        }
        assert f"from {cutter.url}" in str(record["message"])
        # -v names each object's source, and each mirror skipped.
        debug = [r["message"] for r in map(json.loads, run.lines) if r["level"] == "DEBUG"]
        assert f"blob {BIG.digest}: {len(BIG.blob)} bytes from http://{origin.hostport}" in debug
        assert f"blob {SMALL.digest}: {len(SMALL.blob)} bytes from {cutter.url}" in debug
        skipped = [m for m in debug if "skipped" in m]
        assert any(m.startswith(f"blob {BIG.digest}: mirror {dead} skipped: ") for m in skipped)
        assert any(
            m.startswith(f"blob {BIG.digest}: mirror {cutter.url} skipped: ") for m in skipped
        )
        assert f"manifest mirrored/app:1: from http://{origin.hostport}" in debug


def test_a_cut_body_resumes_from_the_same_mirror_on_the_next_run(
    origin: LocalRegistry, freeze: Freeze, tmp_path: Path
) -> None:
    """The first run keeps the mirror's half and fails at the origin; the next one asks the
    mirror for the rest (Range), never the origin."""
    with RegistryServer(upstream=origin.url) as mirror:
        mirror.fault(Fault(f"/blobs/{BIG.digest}", "drop", after=300_000))
        out = tmp_path / "out"
        # --registry to a dead origin: the mirror is the only source.
        run = freeze(
            out,
            "mirrored/app:1",
            "--registry",
            origin.url,
            "--mirror",
            mirror.url,
            "--mirror-tags",
            *FAST,
        )
        assert run.status == 0, run.err
        gets = [(g.headers.get("Range"), g.status) for g in mirror.blob_gets(BIG.digest)]
        assert gets == [(None, 200)]  # one attempt: the rest came from the origin
        out2 = tmp_path / "out2"
        mirror.fault(Fault(f"/blobs/{BIG.digest}", "drop", after=300_000))
        mirror.requests.clear()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            gone = f"http://127.0.0.1:{s.getsockname()[1]}"
        run = freeze(
            out2,
            "mirrored/app:1",
            "--registry",
            gone,
            "--mirror",
            mirror.url,
            "--mirror-tags",
            *FAST,
            "--retries",
            "1",
        )
        assert run.status == 1
        assert partial(out2, BIG.digest, mirror.url).stat().st_size == 300_000
        run = freeze(
            out2,
            "mirrored/app:1",
            "--registry",
            gone,
            "--mirror",
            mirror.url,
            "--mirror-tags",
            *FAST,
        )
        assert run.status == 0, run.err
        assert [g.headers.get("Range") for g in mirror.blob_gets(BIG.digest)] == [
            None,
            "bytes=300000-",
        ]
        check_layout(out2)


def test_mirror_tags(origin: LocalRegistry, dead: str, freeze: Freeze, tmp_path: Path) -> None:
    """With the origin down, tags need --mirror-tags; content by digest never does."""
    with RegistryServer(upstream=origin.url) as mirror:
        args = ("mirrored/app:1", "--registry", dead, "--mirror", mirror.url, *FAST)
        run = freeze(tmp_path / "a", *args, "--retries", "1")
        assert run.status == 1
        (error,) = run.errors
        assert error.startswith("dind-frozen-images: error: manifest mirrored/app:1: ConnectError")
        run = freeze(tmp_path / "b", *args, "--mirror-tags")
        assert run.status == 0, run.err
        check_layout(tmp_path / "b")
        digest = IMG.digest
        run = freeze(
            tmp_path / "c",
            f"mirrored/app@{digest}",
            "--registry",
            dead,
            "--mirror",
            mirror.url,
            *FAST,
        )
        assert run.status == 0, run.err


def test_lying_manifest_by_digest(origin: LocalRegistry, freeze: Freeze, tmp_path: Path) -> None:
    """The index is resolved at the origin; the platform manifest, by digest, is asked of
    the mirror first: one that answers other bytes is distrusted, the origin's are used."""
    with RegistryServer() as liar:
        liar.content.manifests[("mirrored/multi", IMG.digest)] = (IMG.media_type, ARM.manifest)
        run = freeze(
            tmp_path / "out",
            "mirrored/multi:1",
            "--registry",
            origin.url,
            "--mirror",
            liar.url,
            *FAST,
            "--log-format",
            "json",
        )
        assert run.status == 0, run.err
        assert warnings(run) == [
            f"mirror {liar.url} is not used for the rest of this run: it sent {ARM.digest} "
            f"({len(ARM.manifest)} bytes) for manifest mirrored/multi@{IMG.digest}"
        ]
        assert [r.path for r in liar.requests] == [f"/v2/mirrored/multi/manifests/{IMG.digest}"]
        assert check_layout(tmp_path / "out")[0]["Config"].endswith(IMG.config_digest[7:])


def test_slow_and_failing_mirrors_are_skipped_once_each(
    origin: LocalRegistry, freeze: Freeze, tmp_path: Path
) -> None:
    """A stall past --timeout, a 404 and a 503: each object goes on to the next source at
    once (no retries, no backoff on a mirror), and the run is not slowed by retries."""
    with (
        RegistryServer(upstream=origin.url) as slow,
        RegistryServer(upstream=origin.url) as failing,
    ):
        slow.fault(Fault(f"/blobs/{BIG.digest}", "stall", after=1000, seconds=5))
        failing.fault(
            Fault(f"/blobs/{BIG.digest}", "status", status=503),
            Fault(f"/blobs/{SMALL.digest}", "status", status=404),
        )
        started = time.monotonic()
        run = freeze(
            tmp_path / "out",
            "mirrored/app:1",
            "--registry",
            origin.url,
            "--mirror",
            slow.url,
            "--mirror",
            failing.url,
            "--timeout",
            "1",
            "--insecure",
            "--backoff",
            "10",
            "--log-format",
            "json",
        )
        assert run.status == 0, run.err
        assert time.monotonic() - started < 8  # a retry of any mirror would wait 5-10 s
        assert len(slow.blob_gets(BIG.digest)) == 1 and len(failing.blob_gets(BIG.digest)) == 1
        assert summary(run)["sources"] == {
            slow.url: len(IMG.config) + len(SMALL.blob),
            origin.url: len(BIG.blob),
        }
        assert warnings(run) == []


def test_mirror_urls() -> None:
    assert parse_mirrors(["mirror.example", "https://mirror.example/"], insecure=False) == [
        "https://mirror.example"
    ]
    assert parse_mirror("127.0.0.1:5000", insecure=True) == "http://127.0.0.1:5000"
    assert parse_mirror("https://m.example/prefix/", insecure=False) == "https://m.example/prefix"
    assert parse_mirror("http://[::1]:5000", insecure=True) == "http://[::1]:5000"
    assert parse_mirrors(["http://a:1 http://b:2", "http://a:1"], insecure=True) == [
        "http://a:1",
        "http://b:2",
    ]
    for bad in ("", "https://", "https://m.example/../x", "file:///etc", "https://m ex"):
        with pytest.raises(UsageError):
            parse_mirror(bad, insecure=True)
