"""End to end with real docker: push with a docker client, freeze, load into another
daemon, run. Needs root and the engine (CI has both: it runs there every time)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.frozen.conftest import HELLO, EngineImages, Run
from tests.frozen.engine import load
from tests.frozen.test_download import check_layout

if os.geteuid() != 0:
    pytest.skip("needs root for a docker daemon (CI runs as root)", allow_module_level=True)

from tests.support.dockerd import Dockerd

Freeze = Callable[..., Run]


def test_frozen_images_load_and_run(
    engine_images: EngineImages, loader: Dockerd, freeze: Freeze, tmp_path: Path
) -> None:
    out = tmp_path / "frozen"
    reg = engine_images.registry
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
    assert ids == [engine_images.base_id, engine_images.app_id]
    assert loader.docker("run", "--rm", "app:1").stdout == HELLO
    assert loader.docker(
        "run", "--rm", "debian:bookworm", "cat", "/etc/debian_version"
    ).stdout.startswith("12")


def test_digest_pinned_load(
    engine_images: EngineImages, loader: Dockerd, freeze: Freeze, tmp_path: Path
) -> None:
    """A reference with registry:port and a digest pin; digest-only gets no tag."""
    host = engine_images.registry.hostport
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
