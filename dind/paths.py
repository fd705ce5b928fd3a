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

# The rootless daemon (``DIND_ROOTLESS``): its user, helpers and places.
PASSWD = "/etc/passwd"  # noqa: S105 (a path, not a password)
GROUP = "/etc/group"
SUBUID = "/etc/subuid"
SUBGID = "/etc/subgid"
ETC_DOCKER = "/etc/docker"
RUN_USER = "/run/user"
"""XDG_RUNTIME_DIR is RUN_USER/UID (systemd's pam_systemd convention, docker:dind-rootless's)."""
ROOTLESS_DATA = ".local/share/docker"
"""The data root below the user's home ($XDG_DATA_HOME/docker, dockerd's rootless default)."""
ROOTLESSKIT_STATE = "dockerd-rootless"
"""rootlesskit's --state-dir below XDG_RUNTIME_DIR (its api.sock, lock, child_pid)."""
MAX_USER_NAMESPACES = "/proc/sys/user/max_user_namespaces"
UNPRIVILEGED_USERNS_CLONE = "/proc/sys/kernel/unprivileged_userns_clone"
APPARMOR_RESTRICT_USERNS = "/proc/sys/kernel/apparmor_restrict_unprivileged_userns"
DELEGATED_CGROUP = "dind-rootless"
"""The cgroup2 subtree given to the rootless daemon's user, below dind's cgroup root."""


def runtime_dir(uid: int) -> str:
    """The user's XDG_RUNTIME_DIR."""
    return f"{RUN_USER}/{uid}"


def rootless_socket(uid: int) -> str:
    """The rootless daemon's API socket (dockerd's rootless default, as a unix:// address)."""
    return f"unix://{runtime_dir(uid)}/docker.sock"


def under(path: str, tree: str) -> bool:
    """``path`` is ``tree`` or lies below it (both normalised, absolute)."""
    return path == tree or path.startswith(tree.rstrip("/") + "/")
