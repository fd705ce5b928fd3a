"""Captures for ``--check``: ``python -m dind.check.capture DIR``, and reading them back.

``save`` writes what ``gather`` read (files at their own paths under DIR, the rest
in DIR/probes.json), so a report can be reproduced elsewhere: the fixtures under
tests/fixtures/check/ were made this way, and a bug report can attach one.
``load`` reads one back; probes a capture predates read as unknown. Reads only;
the capture holds process names, PID 1's command line, mount paths and kernel
options of this machine.
"""

from __future__ import annotations

import json
import os
import sys

from dind.check.model import Namespace, Proc, Snapshot
from dind.facts import Evidence
from dind.paths import MOUNTINFO

PROBES = "probes.json"


def _daemon_json(snapshot: Snapshot) -> dict[str, object] | None:
    daemon = snapshot.evidence.daemon
    return None if daemon is None else daemon.to_json()


def save(snapshot: Snapshot, directory: str) -> None:
    """Write ``snapshot`` as a capture directory: each file at its path, the rest in probes.json."""
    ev = snapshot.evidence
    for path, text in ev.files.items():
        target = os.path.join(directory, path.lstrip("/"))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "w", encoding="utf-8", errors="surrogateescape") as f:
            f.write(text)
    probes = {
        "errors": ev.errors,
        "statfs": ev.statfs,
        "writable": snapshot.writable,
        "namespaces": {
            k: {"link": v.link, "owner": v.owner} for k, v in snapshot.namespaces.items()
        },
        "links": {k: v for k, v in ev.links.items() if not k.startswith("self/")},
        "euid": snapshot.euid,
        "pid": snapshot.pid,
        "processes": [p.to_json() for p in snapshot.processes.values()],
        "container": ev.container,
        "cgroup_root": ev.cgroup_root,
        "root_entries": ev.root_entries,
        "root_symlink": ev.root_symlink,
        "tmp_entries": list(ev.tmp_entries),
        "securityfs_dir": ev.securityfs_dir,
        "sys_modules": list(snapshot.sys_modules),
        "release": snapshot.release,
        "proc_cgroup_source": ev.proc_cgroup_source,
        "mountinfo_source": ev.mountinfo_source,
        "runtime": snapshot.runtime,
        "keyring": snapshot.keyring,
        "probes": {k: v for k, v in ev.probes.items() if k != "keyring"},
        "daemon": _daemon_json(snapshot),
        "rootless": None if ev.rootless is None else ev.rootless.to_json(),
    }
    with open(os.path.join(directory, PROBES), "w", encoding="utf-8") as f:
        json.dump(probes, f, indent=2, sort_keys=True)
        f.write("\n")


def load(directory: str) -> Snapshot:
    """Read a capture directory written by ``save`` (a README.md there is ignored)."""
    from dind.daemon.facts import DaemonEvidence
    from dind.rootless.facts import RootlessEvidence

    with open(os.path.join(directory, PROBES), encoding="utf-8") as f:
        probes = json.load(f)
    files: dict[str, str] = {}
    for top, _dirs, names in os.walk(directory):
        for name in names:
            full = os.path.join(top, name)
            rel = os.path.relpath(full, directory)
            if rel in (PROBES, "README.md"):
                continue
            with open(full, encoding="utf-8", errors="surrogateescape") as f:
                files["/" + rel] = f.read()
    processes = {}
    for p in probes["processes"]:
        proc = Proc(p["pid"], p["name"], tuple(p["cmdline"]), p.get("ppid"), p.get("error"))
        processes[proc.pid] = proc
    namespaces = {k: Namespace(v["link"], v["owner"]) for k, v in probes["namespaces"].items()}
    links: dict[str, str | None] = {f"self/{k}": v.link for k, v in namespaces.items()}
    links.update(probes.get("links", {}))
    daemon = probes.get("daemon")
    rootless = probes.get("rootless")
    evidence = Evidence(
        files=files,
        errors=probes["errors"],
        statfs=probes["statfs"],
        cgroup_root=probes["cgroup_root"],
        root_entries=probes["root_entries"],
        root_symlink=probes.get("root_symlink"),
        tmp_entries=tuple(probes["tmp_entries"]),
        securityfs_dir=probes["securityfs_dir"],
        container=probes["container"],
        proc_cgroup_source=probes["proc_cgroup_source"],
        mountinfo_source=probes.get("mountinfo_source", MOUNTINFO),
        links=links,
        daemon=None if daemon is None else DaemonEvidence.from_json(daemon),
        probes={**probes.get("probes", {}), "keyring": probes.get("keyring")},
        rootless=None if rootless is None else RootlessEvidence.from_json(rootless),
    )
    return Snapshot(
        evidence=evidence,
        writable=probes["writable"],
        namespaces=namespaces,
        euid=probes["euid"],
        pid=probes["pid"],
        processes=processes,
        sys_modules=tuple(probes["sys_modules"]),
        release=probes["release"],
        runtime=probes.get("runtime", {}),
    )


def main(argv: list[str] | None = None) -> int:
    from dind.check.gather import gather
    from dind.settings import DEFAULT_ROOTLESS_USER, Settings, parse_bool

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        sys.stderr.write("usage: python -m dind.check.capture DIR\n")
        return 2
    os.makedirs(args[0], exist_ok=True)
    rootless = parse_bool("DIND_ROOTLESS", os.environ.get("DIND_ROOTLESS", ""))
    user = os.environ.get("DIND_ROOTLESS_USER") or DEFAULT_ROOTLESS_USER
    settings = Settings(command=[], check=True, rootless=rootless, rootless_user=user)
    save(gather(settings), args[0])  # DIND_ROOTLESS=1: the rootless user's evidence too
    return 0


if __name__ == "__main__":
    sys.exit(main())
