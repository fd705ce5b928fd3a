"""Well-known paths, defined once (the kernel's and Docker's own locations)."""

from __future__ import annotations

PROC_1_CGROUP = "/proc/1/cgroup"
PROC_SELF_CGROUP = "/proc/self/cgroup"
MOUNTINFO = "/proc/self/mountinfo"
SYS_FS_CGROUP = "/sys/fs/cgroup"
UNIFIED = "/sys/fs/cgroup/unified"
SECURITYFS = "/sys/kernel/security"
TMP = "/tmp"
DEFAULT_CGROUP_ROOT = "/cgroup"
PROC_SELF_STATUS = "/proc/self/status"
PROC_SELF_UID_MAP = "/proc/self/uid_map"
CAP_LAST_CAP = "/proc/sys/kernel/cap_last_cap"
ATTR_CURRENT = "/proc/self/attr/current"
ATTR_APPARMOR = "/proc/self/attr/apparmor/current"
PROC_SYS = "/proc/sys"
PROC_SYS_NET = "/proc/sys/net"
IP_FORWARD = "/proc/sys/net/ipv4/ip_forward"
SYSRQ_TRIGGER = "/proc/sysrq-trigger"
PROC_KCORE = "/proc/kcore"
SYS = "/sys"
DEVICES_LIST = "/sys/fs/cgroup/devices/devices.list"
"""The v1 devices controller's allowances for this container's group (Docker, podman, LXC
bind its own group there)."""
DEV_NET_TUN = "/dev/net/tun"
DEV_FUSE = "/dev/fuse"
KERNEL_TREES = ("/proc", "/sys", "/dev")
"""Kernel-provided trees: a cgroup root there would cover kernel files (but /sys/fs/cgroup)."""

RUN = "/run"
VAR_RUN = "/var/run"
DOCKER_SOCKET = "unix:///var/run/docker.sock"
DAEMON_JSON = "/etc/docker/daemon.json"
DATA_ROOT = "/var/lib/docker"
DOCKERD_LOG = "/var/log/dockerd.log"
DIND_RUN = "/run/dind"
IPTABLES_DIR = "/run/dind/iptables"


def under(path: str, tree: str) -> bool:
    """``path`` is ``tree`` or lies below it (both normalised, absolute)."""
    return path == tree or path.startswith(tree.rstrip("/") + "/")
