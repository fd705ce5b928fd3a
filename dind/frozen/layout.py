"""The ``docker save`` directory: ``manifest.json`` and ``repositories`` over the blobs.

Merging is pure (old entries + new images -> new entries); writing goes through a
temporary file, fsync and rename, ``repositories`` first and ``manifest.json`` last,
because ``manifest.json`` is what makes the directory look complete to ``docker load``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from dind.frozen.errors import StoreError

MANIFEST = "manifest.json"
REPOSITORIES = "repositories"


@dataclass(frozen=True)
class LayoutImage:
    """One image of the directory: paths relative to it, and the tags it carries."""

    config: str
    layers: tuple[str, ...]
    repo_tags: tuple[str, ...]


def merge(existing: list[dict[str, object]], images: list[LayoutImage]) -> list[dict[str, object]]:
    """New entries over old ones: same config -> one entry; a tag moves to its new image.

    Old entries keep their order, new ones are appended; an old entry whose tags all
    moved away stays (untagged, as ``docker save`` of an image ID gives).
    """
    claimed = {tag for image in images for tag in image.repo_tags}
    by_config: dict[str, dict[str, object]] = {}
    result: list[dict[str, object]] = []
    for entry in existing:
        config = str(entry.get("Config", ""))
        tags = [t for t in _tags(entry) if t not in claimed]
        kept = dict(entry, RepoTags=tags or None)
        if config in by_config:
            _add_tags(by_config[config], tags)
            continue
        by_config[config] = kept
        result.append(kept)
    for image in images:
        entry = by_config.get(image.config) or {}
        if not entry:
            entry = {"Config": image.config, "RepoTags": None, "Layers": []}
            by_config[image.config] = entry
            result.append(entry)
        entry["Layers"] = list(image.layers)
        _add_tags(entry, list(image.repo_tags))
    return result


def _tags(entry: dict[str, object]) -> list[str]:
    tags = entry.get("RepoTags")
    return [str(t) for t in tags] if isinstance(tags, list) else []


def _add_tags(entry: dict[str, object], tags: list[str]) -> None:
    merged = _tags(entry)
    merged += [t for t in tags if t not in merged]
    entry["RepoTags"] = merged or None


def repositories(entries: list[dict[str, object]]) -> dict[str, dict[str, str]]:
    """The legacy ``repositories`` file: name -> tag -> top layer's file name.

    ``docker load`` uses ``manifest.json`` when present; this file is kept for the
    ``docker save`` layout and for tools that still read it.
    """
    repos: dict[str, dict[str, str]] = {}
    for entry in entries:
        layers = entry.get("Layers")
        if not isinstance(layers, list) or not layers:
            continue
        top = str(layers[-1]).rsplit("/", 1)[-1]
        for tag in _tags(entry):
            name, _, tagname = tag.rpartition(":")
            repos.setdefault(name, {})[tagname] = top
    return repos


def read_manifest(root: Path) -> list[dict[str, object]]:
    """The entries the directory already holds (none if there is no manifest.json)."""
    path = root / MANIFEST
    try:
        doc = json.loads(path.read_bytes())
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as err:
        raise StoreError(f"{path} is unreadable, refusing to overwrite it: {err}") from None
    if not isinstance(doc, list) or not all(isinstance(e, dict) and "Config" in e for e in doc):
        raise StoreError(f"{path} is not a docker save manifest, refusing to overwrite it")
    return doc


def write_layout(root: Path, images: list[LayoutImage]) -> list[dict[str, object]]:
    """Merge ``images`` into the directory's manifest; every blob must already be there."""
    for image in images:
        for rel in (image.config, *image.layers):
            if not (root / rel).is_file():
                raise StoreError(f"{root / rel} is missing; not writing {MANIFEST}")
    # The blobs' renames must reach the disk before the manifest that names them.
    for folder in {
        (root / rel).parent for image in images for rel in (image.config, *image.layers)
    }:
        fsync_dir(folder)
    entries = merge(read_manifest(root), images)
    write_atomic(root / REPOSITORIES, _dumps(repositories(entries)))
    write_atomic(root / MANIFEST, _dumps(entries))
    return entries


def _dumps(doc: object) -> bytes:
    return json.dumps(doc, indent=None, separators=(",", ":")).encode() + b"\n"


def write_atomic(path: Path, data: bytes) -> None:
    """Write beside ``path``, fsync, rename over it, fsync the directory."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with tmp.open("wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise StoreError(f"cannot write {path}: {err.strerror or err}") from None


def fsync_dir(path: Path) -> None:
    """Make the renames done in ``path`` durable."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as err:
        raise StoreError(f"cannot sync {path}: {err.strerror or err}") from None
