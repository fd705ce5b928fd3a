"""Fuzz target for the ``--check`` decoders (``dind.procfs``, ``dind.namespaces``).

Contract: they never raise; garbage gives None, an empty result or "unknown", so a
report is still printed when one file is odd. One input goes through every decoder,
the way a capture's files would.
"""

from __future__ import annotations

import json

from dind import namespaces, procfs
from tests.fuzz.runner import FIXTURES, Target, fixture_files


def check(data: bytes) -> None:
    text = data.decode("utf-8", "surrogateescape")
    fields = procfs.status_fields(text)
    for value in [text, *fields.values()]:
        mask = procfs.cap_mask(value)
        if mask is not None:
            names = procfs.cap_names(mask)
            assert all(isinstance(n, str) for n in names)
            procfs.has_cap(mask, "CAP_SYS_ADMIN")
    procfs.cap_last(text)
    entries = procfs.id_map(text)
    if entries is not None:
        for inside in (0, 1, 65534, 4294967294):
            procfs.outside_id(entries, inside)
    procfs.words(text)
    procfs.loaded_modules(text)
    procfs.listed_modules(text)
    procfs.kernel_config(text)
    procfs.filesystems(text)
    procfs.security_label(text)
    for kind in ("cgroup", "mnt", "user"):
        namespaces.is_initial(kind, text)
    namespaces.ns_inode(text)


def seeds() -> list[bytes]:
    """Every file of the --check captures, and the namespace links of their probes."""
    found = [
        path.read_bytes()
        for path in sorted((FIXTURES / "check").rglob("*"))
        if path.is_file() and ("/proc/" in path.as_posix() or "/sys/" in path.as_posix())
    ]
    for probes in fixture_files("probes.json"):
        found += [s.encode() for s in _strings(json.loads(probes)) if ":[" in s]
    # What the kernel never writes but a capture could hold: a sign, another script's
    # digits (isdigit() is true for "\u00b2", int() refuses it).
    return [*found, b"CapEff:\t-1\n", "0 \u00b2 1\n".encode(), "cgroup:[\u0661]".encode()]


def _strings(doc: object) -> list[str]:
    if isinstance(doc, str):
        return [doc]
    if isinstance(doc, dict):
        return [s for v in doc.values() for s in _strings(v)]
    if isinstance(doc, list):
        return [s for v in doc for s in _strings(v)]
    return []


TARGETS = {
    "procfs": Target(
        check=check,
        seeds=seeds,
        big=lambda: [
            b"f" * (1 << 20),
            b"CapEff:\t" + b"f" * (1 << 20) + b"\n",
            b"-1",
            b"0 0 " + b"9" * (1 << 20) + b"\n",
            b"cgroup:[" + b"9" * (1 << 20) + b"]",
        ],
    ),
}
