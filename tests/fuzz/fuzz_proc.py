"""Fuzz targets for the /proc parsers: /proc/PID/cgroup and mountinfo (+ ``MountTable``).

Contract: ``ParseError`` (a ``DindError``) is the only exception; what parses holds
the properties the rest of dind relies on. Text is decoded as ``procfile`` does
(UTF-8, undecodable bytes as surrogate escapes).
"""

from __future__ import annotations

import posixpath

from dind import mountinfo, proccgroup
from dind.errors import DindError
from tests.fuzz.runner import Target, fixture_files


def _text(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def check_cgroup(data: bytes) -> None:
    try:
        hierarchies = proccgroup.parse(_text(data))
    except DindError:
        return
    for h in hierarchies:
        # The controller list becomes a directory under the cgroup root.
        assert h.unified or h.directory not in ("", ".", ".."), h
        assert "/" not in h.directory and "\0" not in h.directory, h
        assert h.path.startswith("/"), h


def check_mountinfo(data: bytes) -> None:
    try:
        mounts = mountinfo.parse(_text(data))
    except DindError:
        return
    table = mountinfo.MountTable(mounts)
    for m in mounts:
        assert m.mountpoint.startswith("/"), m
        if not _canonical(m.mountpoint):
            continue  # the kernel prints canonical paths; lookups assume them
        visible = table.at(m.mountpoint)
        assert visible is not None and visible.mountpoint == m.mountpoint, m
        below = table.covering(m.mountpoint.rstrip("/") + "/fuzz/below")
        assert below is not None and below.mountpoint in (m.mountpoint, *_deeper(m.mountpoint))
    table.covering("/")


def _canonical(path: str) -> bool:
    return path == "/" or (posixpath.normpath(path) == path and not path.startswith("//"))


def _deeper(mountpoint: str) -> tuple[str, ...]:
    base = mountpoint.rstrip("/")
    return (f"{base}/fuzz", f"{base}/fuzz/below")


TARGETS = {
    "cgroup": Target(
        check=check_cgroup,
        seeds=lambda: fixture_files("proc_1_cgroup", "proc_self_cgroup", "proc/1/cgroup"),
    ),
    "mountinfo": Target(
        check=check_mountinfo,
        seeds=lambda: fixture_files("mountinfo"),
        big=lambda: [
            b"1 0 8:1 / / rw - ext4 /dev/sda1 rw\n" + b"\\" * 60000 + b"\n",
            b"1 0 8:1 / /" + b"\\134" * 16000 + b" rw - ext4 /dev/sda1 rw\n",
        ],
    ),
}
