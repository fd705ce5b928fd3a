"""The docker save layout: merging manifest.json, the repositories file, atomic writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dind.frozen.errors import StoreError
from dind.frozen.layout import LayoutImage, merge, read_manifest, repositories, write_layout
from dind.frozen.outdir import Dir


def img(config: str, layers: tuple[str, ...], *tags: str) -> LayoutImage:
    return LayoutImage(f"blobs/sha256/{config}", tuple(f"blobs/sha256/{x}" for x in layers), tags)


def test_merge_adds_keeps_and_moves_tags() -> None:
    old: list[dict[str, object]] = [
        {
            "Config": "blobs/sha256/c1",
            "RepoTags": ["busybox:latest", "busybox:1"],
            "Layers": ["blobs/sha256/l1"],
        },
        {"Config": "blobs/sha256/c2", "RepoTags": ["alpine:3"], "Layers": ["blobs/sha256/l2"]},
    ]
    new = [img("c3", ("l1", "l3"), "busybox:latest"), img("c2", ("l2",), "alpine:edge")]
    merged = merge(old, new)
    assert merged == [
        {"Config": "blobs/sha256/c1", "RepoTags": ["busybox:1"], "Layers": ["blobs/sha256/l1"]},
        {
            "Config": "blobs/sha256/c2",
            "RepoTags": ["alpine:3", "alpine:edge"],
            "Layers": ["blobs/sha256/l2"],
        },
        {
            "Config": "blobs/sha256/c3",
            "RepoTags": ["busybox:latest"],
            "Layers": ["blobs/sha256/l1", "blobs/sha256/l3"],
        },
    ]
    assert repositories(merged) == {
        "busybox": {"1": "l1", "latest": "l3"},
        "alpine": {"3": "l2", "edge": "l2"},
    }


def test_merge_digest_only_and_moved_away() -> None:
    merged = merge(
        [{"Config": "blobs/sha256/c1", "RepoTags": ["a:1"], "Layers": []}],
        [img("c2", (), "a:1"), img("c3", ("l",))],
    )
    assert merged[0]["RepoTags"] is None  # kept, untagged, as docker save of an ID
    assert merged[2] == {
        "Config": "blobs/sha256/c3",
        "RepoTags": None,
        "Layers": ["blobs/sha256/l"],
    }
    assert merge(merged, []) == merged


def test_write_layout_needs_every_blob_and_writes_manifest_last(tmp_path: Path) -> None:
    (tmp_path / "blobs/sha256").mkdir(parents=True)
    (tmp_path / "blobs/sha256/c").write_text("{}")
    with Dir.open_root(tmp_path) as root:
        with pytest.raises(StoreError, match="blobs/sha256/l is missing"):
            write_layout(root, [], [img("c", ("l",), "x:1")])
        assert not (tmp_path / "manifest.json").exists()
        (tmp_path / "blobs/sha256/l").write_text("layer")
        write_layout(root, [], [img("c", ("l",), "x:1")])
    assert json.loads((tmp_path / "manifest.json").read_text()) == [
        {"Config": "blobs/sha256/c", "RepoTags": ["x:1"], "Layers": ["blobs/sha256/l"]}
    ]
    assert json.loads((tmp_path / "repositories").read_text()) == {"x": {"1": "l"}}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blobs", "manifest.json", "repositories"]


def test_refuses_foreign_manifest(tmp_path: Path) -> None:
    with Dir.open_root(tmp_path) as root:
        assert read_manifest(root) == []
        (tmp_path / "manifest.json").write_text('{"not": "a docker save manifest"}')
        with pytest.raises(StoreError, match="refusing to overwrite"):
            read_manifest(root)
        (tmp_path / "manifest.json").write_text("[{")
        with pytest.raises(StoreError, match="unreadable"):
            read_manifest(root)
        (tmp_path / "manifest.json").write_bytes(b"[" + b" " * (64 << 20) + b"]")
        with pytest.raises(StoreError, match="larger than 67108864 bytes"):
            read_manifest(root)


def test_paths_inside_never_leave_the_directory(tmp_path: Path) -> None:
    """``..`` is no symlink, but it leaves the directory all the same."""
    (tmp_path / "out" / "a").mkdir(parents=True)
    (tmp_path / "secret").write_text("x")
    (tmp_path / "out" / "link").symlink_to(tmp_path / "secret")
    with Dir.open_root(tmp_path / "out") as root:
        assert root.is_file("a/../../secret") is False
        assert root.is_file("link") is False
        for rel in ("..", "a/..", "a/../..", "a//b", "a/./b"):
            with pytest.raises(StoreError, match="not a name inside"):
                root.walk(rel)
