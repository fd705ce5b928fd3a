"""The ``docker save`` directory: ``manifest.json`` and ``repositories`` over the blobs.

Merging is pure (old entries + new images -> new entries); writing goes through a
temporary file, fsync and rename, ``repositories`` first and ``manifest.json`` last,
because ``manifest.json`` is what makes the directory look complete to ``docker load``.
An existing ``manifest.json`` is checked entry by entry first: one ``docker load``
would reject (a bad tag, a path outside the directory, a missing file) is an error.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Callable
from dataclasses import dataclass

from dind.errors import UsageError
from dind.frozen.errors import StoreError
from dind.frozen.jsondoc import parse_json
from dind.frozen.outdir import Dir
from dind.frozen.reference import parse_repo_tag

MANIFEST = "manifest.json"
REPOSITORIES = "repositories"
MAX_LAYOUT_BYTES = 64 * 1024 * 1024
"""A ``manifest.json`` larger than this is not one this tool wrote (~1 kB per image)."""


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


def read_manifest(root: Dir) -> list[dict[str, object]]:
    """The entries the directory already holds (none if there is no manifest.json).

    Entries ``docker load`` would reject are not carried over silently: the first one
    found is an error naming it, and nothing is written.
    """
    path = root.path / MANIFEST
    try:
        data = root.read(MANIFEST, MAX_LAYOUT_BYTES)
        doc = parse_json(data) if data is not None else []
    except ValueError as err:
        raise StoreError(f"{path} is unreadable, refusing to overwrite it: {err}") from None
    if not isinstance(doc, list):
        raise StoreError(f"{path} is not a docker save manifest, refusing to overwrite it")
    for number, entry in enumerate(doc, 1):
        problem = entry_problem(entry, root.is_file)
        if problem:
            raise StoreError(
                f"{path}: entry {number}{_label(entry)}: {problem}; "
                "fix or remove that entry, then run again"
            )
    return doc


def entry_problem(entry: object, present: Callable[[str], bool]) -> str | None:
    """Why ``docker load`` would refuse this ``manifest.json`` entry, or None.

    ``present(rel)`` says whether a path inside the directory is a regular file.
    """
    if not isinstance(entry, dict):
        return "not a JSON object"
    config, layers, tags = entry.get("Config"), entry.get("Layers"), entry.get("RepoTags")
    if not isinstance(config, str):
        return "Config is not a string"
    if not isinstance(layers, list):
        return "Layers is not a list"
    if tags is not None and not isinstance(tags, list):
        return "RepoTags is not a list"
    for tag in tags or ():
        if not isinstance(tag, str) or not _valid_tag(tag):
            return f"tag {tag!r} is not a valid image reference (NAME:TAG)"
    for rel in (config, *layers):
        if not isinstance(rel, str) or not _inside(rel):
            return f"{rel!r} is not a path inside the directory"
        if not present(rel):
            return f"{rel} is missing or not a regular file"
    return None


def _valid_tag(text: str) -> bool:
    try:
        parse_repo_tag(text)
    except UsageError:
        return False
    return True


def _inside(rel: str) -> bool:
    """A plain relative path: no ``..``, ``.``, empty component, leading ``/`` or NUL."""
    return (
        bool(rel)
        and "\0" not in rel
        and posixpath.normpath(rel) == rel
        and not (rel.startswith("/") or rel == ".." or rel.startswith("../"))
    )


def _label(entry: object) -> str:
    """`` (tag, tag)`` for an entry with tags, to name it beside its number."""
    tags = entry.get("RepoTags") if isinstance(entry, dict) else None
    if isinstance(tags, list) and tags and all(isinstance(t, str) for t in tags):
        return f" ({', '.join(tags)})"
    return ""


def write_layout(
    root: Dir, existing: list[dict[str, object]], images: list[LayoutImage]
) -> list[dict[str, object]]:
    """Merge ``images`` into ``existing``; write ``repositories``, then ``manifest.json``.

    Every blob must already be in the directory.
    """
    for image in images:
        for rel in (image.config, *image.layers):
            if not root.is_file(rel):
                raise StoreError(f"{root.path / rel} is missing; not writing {MANIFEST}")
    # The blobs' renames must reach the disk before the manifest that names them.
    for rel in sorted({posixpath.dirname(r) for i in images for r in (i.config, *i.layers)}):
        folder = root.walk(rel) if rel else None
        if folder is None:
            root.fsync()
            continue
        with folder:
            folder.fsync()
    entries = merge(existing, images)
    root.write_atomic(REPOSITORIES, dumps(repositories(entries)))
    root.write_atomic(MANIFEST, dumps(entries))
    return entries


def dumps(doc: object) -> bytes:
    """A layout file's bytes: compact JSON and a newline, as docker save writes them."""
    return json.dumps(doc, indent=None, separators=(",", ":")).encode() + b"\n"
