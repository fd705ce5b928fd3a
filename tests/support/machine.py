"""The machine must be as the tests found it: links, mounts and cgroups, before and after.

Tests start Docker daemons, containers of other runtimes and namespace sandboxes as
root. Every one of them must leave the machine as it was (issue 12: a test daemon
once deleted the machine's ``docker0``). :class:`MachineGuard`, registered by
tests/conftest.py for every pytest run under tests/, takes a :class:`Snapshot` when
the session starts and another when it ends (after every fixture is torn down),
and fails the run (exit status 1, the difference shown) when they differ:

- **links** of the machine's network namespace (PID 1's): name and kind;
  where even root may not open PID 1's ns/ and root/ links (ptrace rules on
  some machines), the test process's own namespaces and view stand for them;
- **mounts** of PID 1's mount table (/proc/1/mountinfo): mount point and
  filesystem type, counted, so a mount stacked on an existing one shows too;
- **cgroups**: the directories directly under each cgroup hierarchy mounted under
  /sys/fs/cgroup (v1 ones and the cgroup2 one, /sys/fs/cgroup/unified on a hybrid
  host), and the cgroup2 root's ``cgroup.subtree_control``; and the v1
  hierarchies that exist (/proc/self/cgroup lists them all, mounted anywhere or
  not): a mount of a new controller set, left in some namespace, keeps one alive.

Legitimately volatile, hence ignored (:func:`volatile`):

- always: ``/run/user/<uid>`` mounts (log-ins come and go) and
  ``/proc/sys/fs/binfmt_misc`` (an automount that mounts on first access);
- while an engine of the machine runs, at start or at end (a dockerd, containerd,
  podman or conmon in PID 1's mount namespace; the tests' own engines all run in
  mount namespaces of their own): mounts under the engines' state directories
  (/var/lib/docker, /run/docker, /run/containerd, /var/lib/containerd,
  /var/lib/containers, /run/containers, /run/netns, /run/libpod); links that are
  veths attached to ``docker0`` or a ``br-<id>`` bridge, ``br-<id>`` bridges,
  and ``docker0`` *appearing* (never disappearing); the cgroups those engines
  create at the top of each hierarchy (``docker``, ``libpod_parent``,
  ``machine.slice``). The machine's own containers start and stop on their own.
- another test session (tests/support/dockerd.py allows two at once): cgroups
  named ``dind-test-<pid>-...`` with a ``<pid>`` other than this process's that
  vanished, or that appeared and whose process still runs; and, while such a
  session runs, the cgroup2 root's ``subtree_control`` (the last test daemon to
  stop disables what the daemons enabled there). The test helpers put their own
  PID in the groups they create.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest

PROC1 = Path("/proc/1")
CGROUP_ROOT = "/sys/fs/cgroup"
ENGINES = frozenset({"dockerd", "containerd", "podman", "conmon"})
ENGINE_STATE_DIRS = (
    "/var/lib/docker",
    "/run/docker",
    "/run/containerd",
    "/var/lib/containerd",
    "/var/lib/containers",
    "/run/containers",
    "/run/netns",
    "/run/libpod",
)
ENGINE_CGROUPS = frozenset({"docker", "libpod_parent", "machine.slice"})
_ALWAYS_VOLATILE_MOUNTS = re.compile(r"^/run/user/\d+$|^/proc/sys/fs/binfmt_misc$")
_DOCKER_BRIDGE = re.compile(r"^(docker0|br-[0-9a-f]{12})$")
_SESSION_GROUP = re.compile(r"^dind-test-(\d+)-")


@dataclass(frozen=True)
class Link:
    name: str
    kind: str  # "bridge", "veth", ... or the link type ("ether", "loopback")
    master: str = ""


@dataclass
class Snapshot:
    """What the guard compares. ``errors`` are things it could not read (a failure too)."""

    links: dict[str, Link] = field(default_factory=dict)
    mounts: Counter[tuple[str, str]] = field(default_factory=Counter)
    cgroups: set[str] = field(default_factory=set)  # "<hierarchy>/<child>"
    subtree_control: str = ""
    hierarchies: set[str] = field(default_factory=set)  # v1 controller lists
    engines: set[str] = field(default_factory=set)  # "<comm>[<pid>]" of the machine
    errors: list[str] = field(default_factory=list)


def unescape(field_text: str) -> str:
    """mountinfo's octal escapes (``\\040`` for a space...) decoded."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field_text)


def parse_mounts(text: str) -> Counter[tuple[str, str]]:
    """(mount point, fstype) of each line of a mountinfo table, counted."""
    mounts: Counter[tuple[str, str]] = Counter()
    for line in text.splitlines():
        before, sep, after = line.partition(" - ")
        fields = before.split()
        if not sep or len(fields) < 5 or not after.split():
            raise ValueError(f"malformed mountinfo line: {line!r}")
        mounts[(unescape(fields[4]), after.split()[0])] += 1
    return mounts


def cgroup_hierarchies(mounts: Counter[tuple[str, str]]) -> list[str]:
    """Mount points of the cgroup and cgroup2 hierarchies under /sys/fs/cgroup."""
    return sorted(
        point
        for point, fstype in mounts
        if fstype in ("cgroup", "cgroup2")
        and (point == CGROUP_ROOT or point.startswith(CGROUP_ROOT + "/"))
    )


def parse_links(ip_json: str) -> dict[str, Link]:
    """``ip -json -details link show`` output into links by name."""
    links = {}
    for entry in json.loads(ip_json):
        kind = entry.get("linkinfo", {}).get("info_kind") or entry.get("link_type", "")
        links[entry["ifname"]] = Link(entry["ifname"], kind, entry.get("master", ""))
    return links


def machine_namespace(kind: str) -> str:
    """PID 1's namespace file of ``kind``, or this process's when PID 1's is out of reach.

    Some machines deny even root PID 1's ns/ and root/ links (ptrace rules); the
    test process then has to be in the machine's namespaces, as it is on CI.
    """
    try:
        os.readlink(PROC1 / "ns" / kind)
    except OSError:
        return f"/proc/self/ns/{kind}"
    return str(PROC1 / "ns" / kind)


def parse_net_dev(text: str) -> dict[str, Link]:
    """Link names from /proc/net/dev (no kinds: for machines without iproute2)."""
    names = [line.split(":", 1)[0].strip() for line in text.splitlines()[2:] if ":" in line]
    return {name: Link(name, "?") for name in names}


def parse_hierarchies(proc_cgroup: str) -> set[str]:
    """The v1 hierarchies (controller lists) of a /proc/PID/cgroup text; ``0::`` is v2."""
    found = set()
    for line in proc_cgroup.splitlines():
        number, controllers, _path = line.split(":", 2)
        if number != "0":
            found.add(controllers)
    return found


def _machine_engines() -> set[str]:
    """Container engines running in the machine's mount namespace: the machine's, not ours."""
    machine_mnt = os.readlink(machine_namespace("mnt"))
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            comm = (entry / "comm").read_text().strip()
            if comm in ENGINES and os.readlink(entry / "ns" / "mnt") == machine_mnt:
                found.add(f"{comm}[{entry.name}]")
        except OSError:  # gone meanwhile
            continue
    return found


def take_snapshot() -> Snapshot:
    """Read the machine's links, PID 1's mount table and the top-level cgroups."""
    snap = Snapshot(engines=_machine_engines())
    argv = ["ip", "-json", "-details", "link", "show"]
    netns = machine_namespace("net")
    if os.readlink(netns) != os.readlink("/proc/self/ns/net"):
        argv = ["nsenter", f"--net={netns}", "--", *argv]
    try:
        if shutil.which("ip") is None and netns == "/proc/self/ns/net":
            snap.links = parse_net_dev(Path("/proc/self/net/dev").read_text())
        else:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True)
            snap.links = parse_links(out.stdout)
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        snap.errors.append(f"links: {' '.join(argv)}: {exc}")
    try:
        snap.mounts = parse_mounts((PROC1 / "mountinfo").read_text(errors="surrogateescape"))
    except (OSError, ValueError) as exc:
        snap.errors.append(f"mounts: {exc}")
    try:
        snap.hierarchies = parse_hierarchies(Path("/proc/self/cgroup").read_text())
    except (OSError, ValueError) as exc:
        snap.errors.append(f"hierarchies: {exc}")
    # PID 1's view of each hierarchy, through its root (the same as ours, normally).
    root = PROC1 / "root" if os.access(PROC1 / "root", os.X_OK) else Path("/")
    for point in cgroup_hierarchies(snap.mounts):
        name = point.removeprefix(CGROUP_ROOT).lstrip("/") or "."
        try:
            with os.scandir(f"{root}{point}".replace("//", "/")) as entries:
                snap.cgroups.update(
                    f"{name}/{e.name}" for e in entries if e.is_dir(follow_symlinks=False)
                )
            control = Path(f"{root}{point}/cgroup.subtree_control".replace("//", "/"))
            if control.exists():
                snap.subtree_control = " ".join(sorted(control.read_text().split()))
        except OSError as exc:
            snap.errors.append(f"cgroups: {point}: {exc}")
    return snap


def volatile(kind: str, key: str, before: Snapshot, after: Snapshot, *, added: bool) -> bool:
    """Whether a change to ``key`` is the machine's own doing, not the tests' (see above)."""
    engine = bool(before.engines or after.engines)
    if kind == "mount":
        if _ALWAYS_VOLATILE_MOUNTS.match(key):
            return True
        return engine and any(key == d or key.startswith(d + "/") for d in ENGINE_STATE_DIRS)
    if kind == "link" and engine:
        link = (after if added else before).links[key]
        if link.name == "docker0":
            return added
        if link.kind == "veth":
            return bool(_DOCKER_BRIDGE.match(link.master))
        return bool(_DOCKER_BRIDGE.match(link.name))
    if kind == "cgroup":
        name = key.split("/", 1)[1]
        owner = _SESSION_GROUP.match(name)
        if owner and int(owner.group(1)) != os.getpid():
            return not added or _alive(int(owner.group(1)))
        return engine and name in ENGINE_CGROUPS
    return False


def _other_session_running(snap: Snapshot) -> bool:
    """A live test session other than this one holds cgroups (and may keep controllers on:
    the last test daemon to stop disables what tests/support/dockerd.py enabled)."""
    for group in snap.cgroups:
        owner = _SESSION_GROUP.match(group.split("/", 1)[1])
        if owner and int(owner.group(1)) != os.getpid() and _alive(int(owner.group(1))):
            return True
    return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def compare(before: Snapshot, after: Snapshot) -> list[str]:
    """The differences the tests made, one line each (``+`` appeared, ``-`` vanished)."""
    lines = [f"! cannot read {e}" for e in after.errors if e not in before.errors]
    # (kind, key for volatile(), what to show, appeared)
    changes: list[tuple[str, str, str, bool]] = []
    for name in sorted(after.links.keys() - before.links.keys()):
        changes.append(("link", name, f"{name} ({after.links[name].kind})", True))
    for name in sorted(before.links.keys() - after.links.keys()):
        changes.append(("link", name, f"{name} ({before.links[name].kind})", False))
    for (point, fstype), n in sorted((after.mounts - before.mounts).items()):
        changes.append(("mount", point, f"{point} ({fstype})" + (f" x{n}" if n > 1 else ""), True))
    for (point, fstype), n in sorted((before.mounts - after.mounts).items()):
        changes.append(("mount", point, f"{point} ({fstype})" + (f" x{n}" if n > 1 else ""), False))
    for group in sorted(after.cgroups - before.cgroups):
        changes.append(("cgroup", group, f"{CGROUP_ROOT}/{group}", True))
    for group in sorted(before.cgroups - after.cgroups):
        changes.append(("cgroup", group, f"{CGROUP_ROOT}/{group}", False))
    for kind, key, shown, appeared in changes:
        if not volatile(kind, key, before, after, added=appeared):
            lines.append(f"{'+' if appeared else '-'} {kind} {shown}")
    for hierarchy in sorted(after.hierarchies - before.hierarchies):
        lines.append(f"+ cgroup hierarchy {hierarchy}")
    for hierarchy in sorted(before.hierarchies - after.hierarchies):
        lines.append(f"- cgroup hierarchy {hierarchy}")
    for name in sorted(before.links.keys() & after.links.keys()):
        old, new = before.links[name].kind, after.links[name].kind
        if old != new:
            lines.append(f"~ link {name}: {old} -> {new}")
    if before.subtree_control != after.subtree_control and not _other_session_running(after):
        lines.append(
            f"~ cgroup2 root cgroup.subtree_control: {before.subtree_control!r}"
            f" -> {after.subtree_control!r}"
        )
    return lines


class MachineGuard:
    """pytest plugin: snapshot at session start, compare at the very end, fail on a change."""

    def __init__(self) -> None:
        self.before: Snapshot | None = None
        self.differences: list[str] = []

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        self.before = take_snapshot()

    @pytest.hookimpl(trylast=True)  # after the runner's, which tears the fixtures down
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.before is None:
            return
        self.differences = compare(self.before, take_snapshot())
        if os.geteuid() == 0:  # as root (CI) everything is readable: not reading is a failure
            self.differences[:0] = [f"! cannot read {e}" for e in self.before.errors]
        if self.differences and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    @pytest.hookimpl(trylast=True)  # after the other summaries, before the final line
    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if self.before is not None and self.before.errors and os.geteuid() != 0:
            terminalreporter.section("machine guard: unreadable (not root)", yellow=True)
            for error in self.before.errors:
                terminalreporter.write_line(error)
        if self.differences:
            terminalreporter.section("the tests changed the machine", red=True, bold=True)
            for line in self.differences:
                terminalreporter.write_line(line, red=True)
            terminalreporter.write_line(
                "(links of PID 1's netns, PID 1's mounts, top-level cgroups; "
                "see tests/support/machine.py)"
            )
            # The final line then reads "N passed, M left on the machine", exit status 1.
            terminalreporter.stats.setdefault("left on the machine", []).extend(self.differences)
