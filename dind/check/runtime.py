"""Which runtime started this container, from evidence; and each fix in that runtime's words.

A finding's fix is only useful in the runtime's own vocabulary: ``--cap-add`` means
nothing to LXC, and nspawn's seccomp filter is lifted with its own option; the words
themselves are dind.requirements', the one source ``--recipe`` prints too. Evidence,
strongest first: sysboxfs mounts, Kubernetes' service variables and secrets, the
``container`` variable runtimes put in PID 1's environment (podman, LXC,
systemd-nspawn; not docker's, which dind itself may have set), the marker files
runtimes leave (/run/.containerenv, /.dockerenv), then the cgroup path of PID 1.
Pure.
"""

from __future__ import annotations

from dind.namespaces import is_initial

TYPE_CHECKING = False
if TYPE_CHECKING:
    from dind.check.model import Snapshot
    from dind.mountinfo import MountTable
    from dind.proccgroup import Hierarchy

DOCKER = "docker"
PODMAN = "podman"
CONTAINERD = "containerd"
LXC = "lxc"
NSPAWN = "systemd-nspawn"
KUBERNETES = "kubernetes"
SYSBOX = "sysbox"
HOST = "none"
UNKNOWN = "unknown"


def identify(
    snap: Snapshot, hierarchies: list[Hierarchy] | None, mounts: MountTable | None
) -> tuple[str, list[str]]:
    """The runtime and the evidence for it, strongest first (PID 1's hierarchies, our mounts)."""
    probes = snap.runtime
    evidence: list[str] = []
    raw = probes.get("markers")
    markers = [str(m) for m in raw] if isinstance(raw, list) else []
    pid1 = probes.get("pid1_container")
    paths = [h.path for h in hierarchies or []]
    if mounts is not None and any(
        m.source == "sysboxfs" or "sysboxfs" in m.fstype for m in mounts.mounts
    ):
        return SYSBOX, ["sysboxfs is mounted"]
    if probes.get("kubernetes") or "/var/run/secrets/kubernetes.io" in markers:
        evidence.append("KUBERNETES_SERVICE_HOST is set / a service account is mounted")
        return KUBERNETES, evidence
    if any("/kubepods" in p for p in paths):
        return KUBERNETES, ["PID 1's cgroup is below /kubepods"]
    named = {"podman": PODMAN, "lxc": LXC, "systemd-nspawn": NSPAWN}
    if isinstance(pid1, str) and pid1 in named:
        return named[pid1], [f"PID 1's environment has container={pid1}"]
    container_file = (snap.text("/run/systemd/container") or "").strip()
    if container_file in named:
        return named[container_file], [f"/run/systemd/container says {container_file}"]
    if "/run/.containerenv" in markers:
        return PODMAN, ["/run/.containerenv exists"]
    if any(p.startswith(("/lxc.payload.", "/lxc/")) for p in paths):
        return LXC, ["PID 1's cgroup is below /lxc.payload"]
    if "/.dockerenv" in markers:
        return DOCKER, ["/.dockerenv exists"]
    if any(p.startswith("/docker/") or "/docker-" in p for p in paths):
        return DOCKER, ["PID 1's cgroup is below /docker"]
    ns = snap.namespaces.get("pid")
    initial = is_initial("pid", None if ns is None else ns.link)
    if initial:
        return HOST, ["the initial PID namespace: no container"]
    if any(p.count("/") == 2 and p != "/" and not p.endswith(".scope") for p in paths):
        return CONTAINERD, [f"PID 1's cgroup {paths[0]} has containerd's /NAMESPACE/ID shape"]
    return UNKNOWN, ["no runtime left its marks here"]
