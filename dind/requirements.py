"""What nested Docker needs from the outer runtime: each requirement once, in each runtime's words.

One source for ``dind --recipe RUNTIME`` (the least-privilege outer options, to
paste) and for the fix every ``--check`` finding names: a missing capability is
``--cap-add NET_ADMIN`` under Docker, ``capabilities: {add: [NET_ADMIN]}`` under
Kubernetes, an LXC key or an nspawn setting elsewhere, never ``--privileged`` where
less does. Pure data and text; runs anywhere (no detection).
"""

from __future__ import annotations

from dind.paths import DEV_NET_TUN
from dind.record import Record

DOCKER = "docker"
PODMAN = "podman"
LXC = "lxc"
NSPAWN = "nspawn"
KUBERNETES = "kubernetes"
RUNTIMES = (DOCKER, PODMAN, LXC, NSPAWN, KUBERNETES)
"""The runtimes ``--recipe`` knows, by the name it takes."""
CONTAINERD = "containerd"
"""``ctr run``: named in fixes only (no recipe: ctr is a debugging client)."""

CHECK_NAMES = {
    "docker": DOCKER,
    "podman": PODMAN,
    "lxc": LXC,
    "systemd-nspawn": NSPAWN,
    "kubernetes": KUBERNETES,
    "containerd": CONTAINERD,
}
"""``--check``'s runtime names (dind.check.runtime) → the recipe's."""

SECCOMP_FILE = "dind-seccomp.json"
"""Where the recipes expect ``dind --seccomp-profile``'s output."""


class Requirement(Record):
    """One thing the outer runtime must grant: what it is, why, and how each runtime grants it.

    ``options`` maps a runtime to the option, key or field that grants it there; a
    runtime missing from it has no way short of the last resort (``privileged``).
    ``each`` maps a runtime to a template granting one item (``{}``) of what is missing,
    where the evidence names items (the device rules a container lacks).
    """

    __slots__ = ("each", "key", "options", "what", "why")

    def __init__(
        self,
        key: str,
        what: str,
        why: str,
        options: dict[str, str],
        each: dict[str, str] | None = None,
    ) -> None:
        self.key = key
        self.what = what
        self.why = why
        self.options = options
        self.each = each or {}

    def option(self, runtime: str) -> str | None:
        """The grant in ``runtime``'s words (``--check``'s names accepted); None if none."""
        return self.options.get(CHECK_NAMES.get(runtime, runtime))


def _caps(*names: str) -> dict[str, str]:
    """The capability options of every runtime for ``names`` (without ``CAP_``)."""
    return {
        DOCKER: " ".join(f"--cap-add {n}" for n in names),
        PODMAN: " ".join(f"--cap-add {n}" for n in names),
        LXC: f"keep {' '.join(n.lower() for n in names)} out of lxc.cap.drop",
        NSPAWN: " ".join(f"--capability=CAP_{n}" for n in names),
        KUBERNETES: f"securityContext: {{capabilities: {{add: [{', '.join(names)}]}}}}",
        CONTAINERD: " ".join(f"--cap-add CAP_{n}" for n in names),
    }


SYS_ADMIN = Requirement(
    "cap-sys-admin",
    "CAP_SYS_ADMIN",
    "dind mounts cgroups, a tmpfs and /proc/sys/net, and a nested dockerd creates "
    "namespaces and mounts for every container",
    _caps("SYS_ADMIN"),
)
NET_ADMIN = Requirement(
    "cap-net-admin",
    "CAP_NET_ADMIN",
    "a nested dockerd creates its bridge and NAT rules at start: without it dockerd exits "
    "(\"can't initialize iptables table 'nat': Permission denied\")",
    {**_caps("NET_ADMIN"), NSPAWN: "--private-network (it grants CAP_NET_ADMIN)"},
)
NESTED_CAPABILITIES = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
)
"""The capabilities a nested runc gives every container by default (Docker's and containerd's
default set): each must be in this container's bounding set."""
PODMAN_DROPS = ("MKNOD", "NET_RAW", "AUDIT_WRITE")
"""Of those, what podman's default set (and CRI-O's) leaves out."""
NESTED_CAPS = Requirement(
    "nested-capabilities",
    "the capabilities nested containers get by default (" + " ".join(NESTED_CAPABILITIES) + ")",
    "a nested runc grants them to every container; one missing from this container's "
    'bounding set fails every nested run ("unable to apply caps: operation not permitted")',
    {**_caps(*PODMAN_DROPS), DOCKER: "(Docker's default set has them)"},
)
NESTED_DEVICE_RULES = (
    "c *:* m",
    "b *:* m",
    "c 1:3 rwm",
    "c 1:5 rwm",
    "c 1:7 rwm",
    "c 1:8 rwm",
    "c 1:9 rwm",
    "c 5:0 rwm",
    "c 5:1 rwm",
    "c 5:2 rwm",
    "c 136:* rwm",
    "c 10:200 rwm",
)
"""The devices cgroup rules a nested runc writes for every container (Docker's and
containerd's default: mknod of any, null, zero, full, random, urandom, tty, console, ptmx,
pts, tun): on cgroup v1 each must lie within this container's own."""
PODMAN_DEVICE_RULES = ("c 5:1 rwm",)
"""Of those, what podman's default devices cgroup leaves out (/dev/console)."""
NESTED_DEVICES = Requirement(
    "nested-devices",
    "the devices nested containers get by default, in this container's devices cgroup",
    "a nested runc allows them for every container; one outside this container's devices "
    'cgroup fails every nested run ("devices.allow: operation not permitted")',
    {
        DOCKER: "(Docker's default devices cgroup has them)",
        PODMAN: " ".join(f"--device-cgroup-rule='{r}'" for r in PODMAN_DEVICE_RULES),
        KUBERNETES: "(containerd's default devices cgroup has them)",
    },
    each={
        DOCKER: "--device-cgroup-rule='{}'",
        PODMAN: "--device-cgroup-rule='{}'",
        LXC: "lxc.cgroup.devices.allow = {}",
        NSPAWN: "--property=DeviceAllow='{}'",
    },
)
SECCOMP = Requirement(
    "seccomp",
    "a seccomp filter that allows what a nested runtime calls",
    "runc joins a session keyring (keyctl) and enters every container's root with "
    'pivot_root; Docker\'s default filter refuses both ("unable to join session keyring", '
    "\"pivot_root .: operation not permitted\"); dind's profile is Docker's default plus "
    "exactly these",
    {
        DOCKER: f"--security-opt seccomp={SECCOMP_FILE}",
        PODMAN: f"--security-opt seccomp={SECCOMP_FILE}",
        LXC: "an lxc.seccomp.profile that does not refuse keyctl (LXC's common.seccomp does "
        "not; Proxmox VE: features: keyctl=1, or its errno 38 that runc tolerates)",
        NSPAWN: "--system-call-filter=@keyring",
        KUBERNETES: "securityContext: {seccompProfile: {type: Localhost, localhostProfile: "
        f"{SECCOMP_FILE}}}}}",
        CONTAINERD: f"--seccomp --seccomp-profile {SECCOMP_FILE} (or no --seccomp)",
    },
)
APPARMOR = Requirement(
    "apparmor",
    "no AppArmor profile that denies mount(2)",
    "docker-default and lxc-container-default deny mount: every dind step fails with EACCES",
    {
        DOCKER: "--security-opt apparmor=unconfined",
        PODMAN: "--security-opt apparmor=unconfined",
        LXC: "lxc.apparmor.profile = generated and lxc.apparmor.allow_nesting = 1 "
        "(Proxmox VE: features: nesting=1)",
        NSPAWN: "(nspawn confines nothing by AppArmor unless told)",
        KUBERNETES: "securityContext: {appArmorProfile: {type: Unconfined}}",
        CONTAINERD: "(no --apparmor-default-profile)",
    },
)
SELINUX = Requirement(
    "selinux",
    "an SELinux type that may mount and write cgroups",
    "container_t denies most mounts and cgroup writes",
    {
        DOCKER: "--security-opt label=disable",
        PODMAN: "--security-opt label=disable",
        LXC: "lxc.selinux.context = unconfined_u:unconfined_r:unconfined_t:s0",
        KUBERNETES: "securityContext: {seLinuxOptions: {type: spc_t}}",
    },
)
CGROUP_DELEGATION = Requirement(
    "cgroup-delegation",
    "this container's cgroup owned by its root (delegated to its user namespace)",
    "in a user namespace, cgroups owned by root outside it cannot be written: every nested "
    'run fails ("mkdir /sys/fs/cgroup/cpuset/docker: permission denied")',
    {
        LXC: "(LXC delegates an unprivileged container's cgroup itself)",
        PODMAN: "a cgroup v2 host with --cgroup-manager=systemd (podman does not delegate "
        "cgroup v1 hierarchies to a user namespace)",
        KUBERNETES: "a cgroup v2 node whose runtime delegates the pod's cgroup to its user "
        "namespace",
    },
)
ALL_CAPS = Requirement(
    "all-capabilities",
    "every capability the kernel has",
    "a nested `docker run --privileged` asks runc for all of them",
    {
        DOCKER: "--cap-add ALL",
        PODMAN: "--cap-add ALL",
        LXC: "lxc.cap.drop = (empty)",
        NSPAWN: "--capability=all",
        KUBERNETES: "securityContext: {capabilities: {add: [ALL]}}",
    },
)
ALL_DEVICES = Requirement(
    "all-devices",
    "every device allowed by the devices cgroup",
    "a nested `docker run --privileged` allows its container every device "
    '("devices.allow: operation not permitted" unless this container may use them all)',
    {
        DOCKER: "--device-cgroup-rule='a *:* rwm'",
        PODMAN: "--device-cgroup-rule='a *:* rwm'",
        LXC: "lxc.cgroup.devices.allow = a (a privileged container: no lxc.idmap)",
        NSPAWN: "--property=DevicePolicy=auto --property=DeviceAllow='char-* rwm' "
        "--property=DeviceAllow='block-* rwm'",
    },
)
USERNS_SECCOMP = Requirement(
    "userns-seccomp",
    "a seccomp filter that lets an unprivileged user make namespaces (unshare, mount, pivot_root)",
    "the rootless daemon: rootlesskit, as its user, creates a user, mount and network "
    "namespace and mounts in them; Docker's default filter allows those calls only with "
    "CAP_SYS_ADMIN (unshare: EPERM)",
    {
        DOCKER: "--security-opt seccomp=unconfined",
        PODMAN: "--security-opt seccomp=unconfined",
        KUBERNETES: "securityContext: {seccompProfile: {type: Unconfined}}",
    },
)
UNMASKED_PROC = Requirement(
    "unmasked-proc",
    "a fully visible /proc (no masked or read-only path)",
    "the rootless daemon: the kernel mounts a new procfs for a nested PID namespace only "
    "when nothing of /proc is masked, and dockerd writes /proc/sys in rootlesskit's "
    "namespaces",
    {
        DOCKER: "--security-opt systempaths=unconfined",
        PODMAN: "--security-opt unmask=ALL",
        KUBERNETES: "securityContext: {procMount: Unmasked}",
    },
)
TUN = Requirement(
    "tun-device",
    DEV_NET_TUN,
    "the rootless daemon: slirp4netns gives it its network through a tap device",
    {DOCKER: f"--device {DEV_NET_TUN}", PODMAN: f"--device {DEV_NET_TUN}"},
)
ROOTLESS = (USERNS_SECCOMP, APPARMOR, UNMASKED_PROC, TUN)
"""What the rootless daemon (DIND_ROOTLESS, README "Rootless") needs from the outer runtime,
in the order its recipe gives them (measured with Docker)."""
PRIVILEGED = {
    DOCKER: "docker run --privileged",
    PODMAN: "podman run --privileged",
    LXC: "a privileged container (no lxc.idmap) with lxc.cap.drop = (empty) and "
    "lxc.cgroup.devices.allow = a",
    NSPAWN: "systemd-nspawn --capability=all",
    KUBERNETES: "securityContext: {privileged: true}",
    CONTAINERD: "ctr run --privileged",
}
"""The last resort, for what no narrower grant allows (nested --privileged containers)."""

ALL = (
    SYS_ADMIN,
    NET_ADMIN,
    NESTED_CAPS,
    NESTED_DEVICES,
    SECCOMP,
    APPARMOR,
    SELINUX,
    CGROUP_DELEGATION,
    ALL_CAPS,
    ALL_DEVICES,
    USERNS_SECCOMP,
    UNMASKED_PROC,
    TUN,
)
BY_KEY = {r.key: r for r in ALL}


COMMAND = {
    DOCKER: "docker run ",
    PODMAN: "podman run ",
    NSPAWN: "systemd-nspawn ",
    CONTAINERD: "ctr run ",
}
"""What a runtime's options follow, in a fix."""


def fix(
    runtime: str,
    keys: list[str] | tuple[str, ...],
    items: dict[str, tuple[str, ...]] | None = None,
) -> str:
    """The grants for ``keys`` in ``runtime``'s words, joined; generic words elsewhere.

    ``items`` names, per requirement key, what exactly is missing (device rules), for the
    requirements that grant item by item.
    """
    name = CHECK_NAMES.get(runtime, runtime)
    parts = []
    for key in keys:
        requirement = BY_KEY[key]
        option = requirement.option(name)
        template = requirement.each.get(name)
        wanted = (items or {}).get(key, ())
        if template and wanted:
            option = " ".join(template.format(item) for item in wanted)
        if not option:
            parts.append(f"grant {requirement.what}")
        elif option.startswith("("):
            parts.append(option.strip("()"))
        elif option.startswith("--"):
            parts.append(COMMAND.get(name, "") + option)
        else:
            parts.append(option)
    return "; ".join(dict.fromkeys(parts))


def last_resort(runtime: str) -> str:
    return PRIVILEGED.get(CHECK_NAMES.get(runtime, runtime), "a privileged container")
