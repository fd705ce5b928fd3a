"""The shared cache (``--cache DIR``): two runs at once, a warm cache with the registry
stopped, and a cache that was tampered with (corrupt blobs, planted links, another
user's files). The origin is a real docker-registry."""

from __future__ import annotations

import hashlib
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
from tests.support.registry import LocalRegistry, run_registry

Freeze = Callable[..., Run]
CONSOLE = Path(sys.executable).with_name("dind-frozen-images")
FAST = ("--insecure", "--backoff", "0", "--retries", "2")
BASE = images.layer({"cache/base": images.noise(600_000, 70)})
MID = images.layer({"cache/mid": images.noise(300_000, 71)})
TOP = images.layer({"cache/top": images.noise(100_000, 72)})
ONE = images.image([BASE, MID], label="one")
TWO = images.image([BASE, TOP], label="two")
THREE = images.image([MID], label="three")
ALL = {lay.digest for lay in (BASE, MID, TOP)} | {i.config_digest for i in (ONE, TWO, THREE)}


@pytest.fixture(scope="module")
def origin(registry: LocalRegistry) -> Iterator[LocalRegistry]:
    with httpx.Client(timeout=30) as client:
        for name, img in (("one", ONE), ("two", TWO), ("three", THREE)):
            images.push(client, registry.url, f"cache/{name}", "1", img)
    yield registry


def cache_files(cache: Path) -> dict[str, int]:
    """Blob name -> inode, each checked against its name."""
    found = {}
    for path in (cache / "blobs/sha256").iterdir():
        assert hashlib.sha256(path.read_bytes()).hexdigest() == path.name, path
        found[path.name] = path.stat().st_ino
    return found


def last_record(err: str) -> dict[str, object]:
    record = json.loads(err.strip().splitlines()[-1])
    assert str(record["message"]).startswith("froze "), record
    return dict(record)


def test_two_runs_at_once_then_the_registry_stopped(tmp_path: Path) -> None:
    """Two processes, one cache, overlapping images, a shared blob held back so they meet
    on it: each blob crosses the network once. Then, with the registry stopped, a third
    run gets everything from the cache."""
    (tmp_path / "registry").mkdir()
    cache = tmp_path / "cache"
    with run_registry(tmp_path / "registry") as reg:
        with httpx.Client(timeout=30) as client:
            for name, img in (("one", ONE), ("two", TWO), ("three", THREE)):
                images.push(client, reg.url, f"cache/{name}", "1", img)
        with RegistryServer(upstream=reg.url) as front:
            front.fault(Fault(f"/blobs/{BASE.digest}", "stall", after=1000, seconds=1.5))
            argv = [str(CONSOLE), "--cache", str(cache), "--registry", front.url, *FAST]
            argv += ["--log-format", "json"]
            runs = [
                subprocess.Popen(
                    [*argv, str(tmp_path / out), *refs],
                    stderr=subprocess.PIPE,
                    text=True,
                )
                for out, refs in (
                    ("a", ["cache/one:1", "cache/two:1"]),
                    ("b", ["cache/two:1", "cache/three:1"]),
                )
            ]
            errs = [proc.communicate(timeout=120)[1] for proc in runs]
            assert [proc.returncode for proc in runs] == [0, 0], errs
            gets = [r.path.rsplit("/", 1)[1] for r in front.blob_gets()]
            assert sorted(gets) == sorted(ALL)  # every blob once, for both runs
        records = [last_record(err) for err in errs]
        assert sum(int(str(r["downloaded_blobs"])) for r in records) == len(ALL)
        per_run = 5  # distinct blobs each run needs
        assert sum(int(str(r["cached_blobs"])) for r in records) == 2 * per_run - len(ALL)
        in_cache = cache_files(cache)
        for out in ("a", "b"):
            check_layout(tmp_path / out)
            for path in (tmp_path / out / "blobs/sha256").iterdir():
                assert path.stat().st_ino == in_cache[path.name]  # a hard link, not a copy
                assert not path.is_symlink()
        assert not list((cache / ".incomplete").iterdir())
    # The registry (and its front) stopped, connections refused: tags come from the
    # cache's record of what they resolved to, everything else from its blobs.
    run = subprocess.run(
        [
            str(CONSOLE),
            str(tmp_path / "c"),
            "cache/one:1",
            "cache/three:1",
            "--registry",
            front.url,
            "--cache",
            str(cache),
            *FAST,
            "--log-format",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    record = last_record(run.stderr)
    assert (record["downloaded_bytes"], record["cached_blobs"], record["sources"]) == (0, 4, {})
    warnings = [json.loads(line) for line in run.stderr.splitlines()]
    warnings = [w["message"] for w in warnings if w["level"] == "WARNING"]
    assert len(warnings) == 2 and all(
        "using the cache: the tag named sha256:" in w for w in warnings
    )
    check_layout(tmp_path / "c")
    # ...but a tag the cache never saw still needs the registry: one line, exit 1.
    run = subprocess.run(
        [
            str(CONSOLE),
            str(tmp_path / "d"),
            "cache/nosuch:1",
            "--registry",
            front.url,
            "--cache",
            str(cache),
            *FAST,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 1 and len(run.stderr.splitlines()) == 1, run.stderr
    assert "ConnectError" in run.stderr and "gave up after 2 attempts" in run.stderr


def test_a_corrupt_cached_blob_is_fetched_again(
    origin: LocalRegistry, freeze: Freeze, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    args = ("cache/one:1", "--registry", origin.url, "--cache", cache, *FAST)
    assert freeze(tmp_path / "a", *args).status == 0
    cached = cache / "blobs/sha256" / BASE.digest[7:]
    cached.unlink()  # the output keeps its link; the cache gets other bytes under the name
    cached.write_bytes(b"not the blob")
    run = freeze(tmp_path / "b", *args, "--log-format", "json")
    assert run.status == 0, run.err
    record = last_record(run.err)
    assert (record["downloaded_blobs"], record["downloaded_bytes"]) == (1, len(BASE.blob))
    check_layout(tmp_path / "a")
    check_layout(tmp_path / "b")
    cache_files(cache)


def test_planted_links_in_the_cache_are_not_followed(
    origin: LocalRegistry, freeze: Freeze, tmp_path: Path
) -> None:
    """A symlink under a blob's name (to the right content, even) is not the blob: it is
    replaced; a symlink as a lock file is refused, one line."""
    cache = tmp_path / "cache"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_bytes(BASE.blob)
    (cache / "blobs/sha256").mkdir(parents=True)
    (cache / "blobs/sha256" / BASE.digest[7:]).symlink_to(elsewhere)
    args = ("cache/one:1", "--registry", origin.url, "--cache", cache, *FAST)
    run = freeze(tmp_path / "a", *args)
    assert run.status == 0, run.err
    assert not (cache / "blobs/sha256" / BASE.digest[7:]).is_symlink()
    assert elsewhere.read_bytes() == BASE.blob
    cache_files(cache)
    lock = cache / "locks" / f"sha256-{MID.digest[7:]}"
    lock.unlink()
    lock.symlink_to(elsewhere)
    (cache / "blobs/sha256" / MID.digest[7:]).unlink()
    run = freeze(tmp_path / "b", *args)
    assert run.status == 1
    assert run.errors == [
        f"dind-frozen-images: error: {lock} is a symbolic link; refusing to follow it"
    ]
    assert elsewhere.read_bytes() == BASE.blob


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root (CI runs as root)")
def test_another_users_cached_file_is_copied_not_linked(
    origin: LocalRegistry, freeze: Freeze, tmp_path: Path
) -> None:
    """Its owner could change it after it was hashed, under both names: the output gets
    a copy, hashed as it is written."""
    cache = tmp_path / "cache"
    args = ("cache/three:1", "--registry", origin.url, "--cache", cache, *FAST)
    assert freeze(tmp_path / "a", *args).status == 0
    cached = cache / "blobs/sha256" / MID.digest[7:]
    os.chown(cached, 65534, 65534)
    run = freeze(tmp_path / "b", *args)
    assert run.status == 0, run.err
    copy = tmp_path / "b/blobs/sha256" / MID.digest[7:]
    assert copy.stat().st_ino != cached.stat().st_ino and copy.stat().st_uid == 0
    check_layout(tmp_path / "b")


def test_an_output_directory_fills_the_cache(
    origin: LocalRegistry, freeze: Freeze, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Blobs an output already holds go into the cache (DIND_FROZEN_CACHE here), so a
    second output directory needs no network."""
    args = ("cache/two:1", "--registry", origin.url, *FAST, "--log-format", "json")
    assert freeze(tmp_path / "a", *args).status == 0
    monkeypatch.setenv("DIND_FROZEN_CACHE", str(tmp_path / "cache"))
    run = freeze(tmp_path / "a", *args)
    assert run.status == 0, run.err
    assert last_record(run.err)["reused_blobs"] == 3
    run = freeze(tmp_path / "b", *args)
    assert run.status == 0, run.err
    record = last_record(run.err)
    assert (record["cached_blobs"], record["downloaded_bytes"]) == (3, 0)
    check_layout(tmp_path / "b")
