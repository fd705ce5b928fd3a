"""End to end with real docker: push with a docker client, freeze, load into another
daemon, run. Needs root and the engine (CI has both: it runs there every time)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.frozen.conftest import Run
from tests.frozen.test_download import check_layout
from tests.support.registry import LocalRegistry

if os.geteuid() != 0:
    pytest.skip("needs root for a docker daemon (CI runs as root)", allow_module_level=True)

from tests.support.dockerd import Dockerd, base_image, ensure_engine, start_dockerd

Freeze = Callable[..., Run]
CACHE = Path("/var/cache/dind-e2e")
HELLO = "frozen images work\n"


@dataclass
class Pushed:
    registry: LocalRegistry
    base_id: str
    app_id: str


@pytest.fixture(scope="module")
def pushed(registry: LocalRegistry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pushed]:
    """A Debian base (1 layer) and an app on it (2 layers, the first shared), pushed
    to the loopback registry by a private daemon with the docker client."""
    ensure_engine()
    work = tmp_path_factory.mktemp("pusher")
    d = start_dockerd(work / "d")
    try:
        base = base_image(d, CACHE)
        cid = d.docker("create", base, "true").stdout.strip()
        (work / "hello.txt").write_text(HELLO)
        d.docker("cp", work / "hello.txt", f"{cid}:/hello.txt")
        d.docker("commit", "--change", 'CMD ["cat", "/hello.txt"]', cid, "local/app:1")
        d.docker("rm", cid)
        host = registry.hostport
        for src, dst in (
            (base, f"{host}/library/debian:bookworm"),
            ("local/app:1", f"{host}/library/app:1"),
        ):
            d.docker("tag", src, dst)
            d.docker("push", dst)
        ids = [
            d.docker("image", "inspect", "-f", "{{.Id}}", ref).stdout.strip()
            for ref in (base, "local/app:1")
        ]
        yield Pushed(registry, ids[0], ids[1])
    finally:
        d.stop(remove_workdir=True)


@pytest.fixture
def loader(tmp_path: Path) -> Iterator[Dockerd]:
    """An empty daemon to `docker load` into."""
    d = start_dockerd(tmp_path / "loader")
    try:
        yield d
    finally:
        d.stop(remove_workdir=True)


def load(d: Dockerd, directory: Path) -> str:
    """`tar -C DIR -c . | docker load`, exactly as the README says."""
    tar = subprocess.Popen(["tar", "-C", str(directory), "-c", "."], stdout=subprocess.PIPE)
    assert tar.stdout is not None
    try:
        out = d.docker("load", stdin=tar.stdout).stdout
    finally:
        tar.stdout.close()
        assert tar.wait() == 0
    return out


def test_frozen_images_load_and_run(
    pushed: Pushed, loader: Dockerd, freeze: Freeze, tmp_path: Path
) -> None:
    out = tmp_path / "frozen"
    reg = pushed.registry
    run = freeze(
        out, "debian:bookworm", "app:1", "--registry", reg.url, "--insecure", "--jobs", "4"
    )
    assert run.status == 0, run.err
    entries = check_layout(out)
    assert [e["RepoTags"] for e in entries] == [["debian:bookworm"], ["app:1"]]
    assert entries[1]["Layers"][0] == entries[0]["Layers"][0]  # shared, stored once
    assert len(list((out / "blobs/sha256").iterdir())) == 4

    loaded = load(loader, out)
    assert "Loaded image: debian:bookworm" in loaded and "Loaded image: app:1" in loaded
    # Same config bytes, same image IDs as in the daemon that pushed them.
    ids = [
        loader.docker("image", "inspect", "-f", "{{.Id}}", r).stdout.strip()
        for r in ("debian:bookworm", "app:1")
    ]
    assert ids == [pushed.base_id, pushed.app_id]
    assert loader.docker("run", "--rm", "app:1").stdout == HELLO
    assert loader.docker(
        "run", "--rm", "debian:bookworm", "cat", "/etc/debian_version"
    ).stdout.startswith("12")


def test_digest_pinned_load(
    pushed: Pushed, loader: Dockerd, freeze: Freeze, tmp_path: Path
) -> None:
    """A reference with registry:port and a digest pin; digest-only gets no tag."""
    host = pushed.registry.hostport
    run = freeze(tmp_path / "first", f"{host}/library/app:1", "--insecure")
    assert run.status == 0, run.err
    digest = run.lines[0].split()[2]  # "dind-frozen-images: REF: DIGEST (N layers)"
    out = tmp_path / "pinned"
    run = freeze(
        out, f"{host}/library/app:1@{digest}", f"{host}/library/app@{digest}", "--insecure"
    )
    assert run.status == 0, run.err
    assert check_layout(out)[0]["RepoTags"] == [f"{host}/library/app:1"]
    load(loader, out)
    assert loader.docker("run", "--rm", f"{host}/library/app:1").stdout == HELLO
