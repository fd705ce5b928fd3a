"""Step names, their order and their failure policy: defined once, used everywhere.

Kernel steps prepare the container's view of the kernel for any nested runtime;
daemon steps run only when dind starts a dockerd (``dind dockerd``,
``--with-dockerd``); with ``DIND_ROOTLESS`` the rootless steps follow them.
``environment``, ``host`` and ``rootless`` cannot be skipped.
"""

from __future__ import annotations

HOST = "host"
ENVIRONMENT = "environment"
SECURITYFS = "securityfs"
TMP = "tmp"
CGROUP_CONFINE = "cgroup-confine"
CGROUP_MOUNTS = "cgroup-mounts"
CGROUP_REMOUNT = "cgroup-remount"
CGROUP_NESTING = "cgroup-nesting"
NET_SYSCTLS = "net-sysctls"
RSHARED = "rshared"
STALE_PID = "stale-pid"
DATA_ROOT = "data-root"
TLS = "tls"
HOSTS = "hosts"
IPTABLES = "iptables"
MTU = "mtu"
ROOTLESS = "rootless"
CGROUP_DELEGATE = "cgroup-delegate"
EXEC = "exec"
DOCKERD = "dockerd"
"""Not a step: the rows ``--dry-run`` prints last, for what dind then runs (``exec``) and the
daemon ``--with-dockerd`` starts before it (``dockerd``)."""

KERNEL_STEPS = (
    SECURITYFS,
    TMP,
    CGROUP_CONFINE,
    CGROUP_MOUNTS,
    CGROUP_REMOUNT,
    CGROUP_NESTING,
    NET_SYSCTLS,
    RSHARED,
)
DAEMON_STEPS = (STALE_PID, DATA_ROOT, TLS, HOSTS, IPTABLES, MTU)
ROOTLESS_STEPS = (ROOTLESS, CGROUP_DELEGATE)
"""The rootless daemon's: its user's checks and root-only preparation, then cgroup v2
delegation (the limits decision)."""
STEPS = (*KERNEL_STEPS, *DAEMON_STEPS, CGROUP_DELEGATE)
"""Accepted by ``--skip``, in the order dind runs them."""

REQUIRED = frozenset({CGROUP_MOUNTS, DATA_ROOT, TLS, HOSTS, ROOTLESS, CGROUP_DELEGATE})
"""A failure here stops dind (exit 125); every other step is best effort unless --strict."""

MOUNTING = (SECURITYFS, TMP, CGROUP_CONFINE, CGROUP_MOUNTS, CGROUP_REMOUNT, NET_SYSCTLS, RSHARED)
"""Steps that decide from the mount table: when all are skipped, it is not read."""

CONSEQUENCE = {
    SECURITYFS: "nested containers get no AppArmor profile",
    TMP: "/tmp stays on the container's root filesystem",
    CGROUP_CONFINE: "nested containers' cgroups land outside this container's",
    CGROUP_REMOUNT: "a nested runtime finds read-only cgroups and cannot create its groups",
    CGROUP_NESTING: "nested containers get no cgroup v2 controllers (no resource limits)",
    NET_SYSCTLS: "a nested dockerd cannot set its network sysctls: it stops when ip_forward is "
    "0, and Docker 26 cannot start containers ('failed to disable IPv6')",
    RSHARED: "rshared volume mounts fail in nested containers",
    STALE_PID: "dockerd refuses to start while a stale pid file is there",
    IPTABLES: "dockerd uses the image's default iptables, which may not match the rules here",
    MTU: "nested containers keep MTU 1500 and large transfers may hang",
    CGROUP_DELEGATE: "the rootless daemon's containers get no resource limits",
}
"""What a failure of a best-effort step means, for warnings and ``--check``."""
