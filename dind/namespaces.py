"""Namespace identity from ``/proc/PID/ns/*`` links: pure decisions over link texts.

The kernel gives the initial namespaces fixed inode numbers; a mount namespace has
none, so "is this the host" is decided by comparing with PID 1's own namespaces.
"""

from __future__ import annotations

INITIAL_NAMESPACE = {
    "ipc": 0xEFFFFFFF,
    "uts": 0xEFFFFFFE,
    "user": 0xEFFFFFFD,
    "pid": 0xEFFFFFFC,
    "cgroup": 0xEFFFFFFB,
    "time": 0xEFFFFFFA,
}
"""Fixed inode numbers of the initial namespaces (include/linux/proc_ns.h, PROC_*_INIT_INO).

Any other number is a namespace created later. mnt and net have no fixed number
on older kernels, so they are not listed.
"""


def ns_inode(link: str | None) -> int | None:
    """The number in a namespace link such as ``cgroup:[4026531835]``."""
    if not link or not link.endswith("]") or ":[" not in link or len(link) > 64:
        return None
    digits = link[link.index(":[") + 2 : -1]
    return int(digits) if digits.isascii() and digits.isdigit() else None


def is_initial(kind: str, link: str | None) -> bool | None:
    """True for the initial (host) namespace of ``kind``, False for another, None if unknown."""
    number = ns_inode(link)
    if number is None or kind not in INITIAL_NAMESPACE:
        return None
    return number == INITIAL_NAMESPACE[kind]


def mount_ids(mountinfo_text: str) -> set[str]:
    """The mount IDs (first field) of a mountinfo text; unparsable lines are skipped."""
    ids = set()
    for line in mountinfo_text.splitlines():
        first = line.split(" ", 1)[0]
        if first.isascii() and first.isdigit():
            ids.add(first)
    return ids


def host_mount_namespace(
    self_pid: str | None,
    self_mnt: str | None,
    init_mnt: str | None,
    self_mountinfo: str | None,
    init_mountinfo: str | None,
) -> tuple[bool | None, str]:
    """Whether this process shares the host's own mount namespace, and the evidence.

    The host is the initial PID namespace's PID 1. In another PID namespace this is
    a container. In the initial one (the host, or ``--pid host``), the mount
    namespace decides: PID 1's own, or another. When PID 1's link cannot be read,
    the mount tables are the remaining evidence: a mount namespace made by copying
    gives every mount a new ID, so tables sharing a mount ID are one namespace's,
    whatever was mounted between the two reads; otherwise "unknown".
    """
    pid_initial = is_initial("pid", self_pid)
    if pid_initial is False:
        return False, f"{self_pid} is not the initial PID namespace: this is a container"
    if pid_initial is None:
        return None, "/proc/self/ns/pid could not be read"
    if self_mnt and init_mnt:
        if self_mnt == init_mnt:
            return (
                True,
                f"the initial PID namespace, and the mount namespace of its PID 1 ({init_mnt})",
            )
        return False, f"{self_mnt} is not the mount namespace of PID 1 ({init_mnt})"
    if self_mountinfo is not None and init_mountinfo is not None:
        ours, theirs = mount_ids(self_mountinfo), mount_ids(init_mountinfo)
        if ours & theirs:
            return True, "the initial PID namespace, and the mounts of its PID 1 (same mount IDs)"
        if ours and theirs:
            return False, "no mount ID in common with PID 1's: another mount namespace"
    return None, "the initial PID namespace, but PID 1's mount namespace could not be read"
