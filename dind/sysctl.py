"""The net-sysctls step: /proc/sys/net writable, the rest of /proc/sys read-only. Pure planning.

A runtime that does not run a container privileged mounts /proc/sys read-only. A
nested dockerd writes network sysctls at start (``net.ipv4.ip_forward``; it stops
when forwarding is off and it cannot turn it on) and for each container (Docker 26
disables IPv6 on a container's interface through /proc/sys/net, or refuses to start
it). Network sysctls belong to the container's own network namespace, so dind binds
/proc/sys/net onto itself and remounts that bind read-write: kernel.*, vm.* and the
host-wide rest stay read-only. In the host's network namespace (``--network host``)
they would be the host's: the step is then skipped, with that reason.
"""

from __future__ import annotations

from dind import paths, steps
from dind.actions import PENDING, SKIPPED, Action, Bind, Remount
from dind.cgroup1 import kept_flags

TYPE_CHECKING = False
if TYPE_CHECKING:
    from dind.mountinfo import MountTable


def plan_net_sysctls(
    mounts: MountTable, net_host: bool | None, sys_admin: bool | None = None
) -> list[Action]:
    """The bind and remount that make /proc/sys/net writable (skipped, with the reason, in the
    host's network namespace or without CAP_SYS_ADMIN: the step is new, and a container
    that skipped every other mounting step must not start failing at it); nothing when it
    is writable already or there is no /proc."""
    covering = mounts.covering(paths.PROC_SYS_NET)
    if covering is None or covering.fstype != "proc":
        return []  # no /proc here: nothing to make writable, nothing a nested dockerd reads
    options = covering.mount_options.split(",")
    flags, kept = kept_flags(options)
    remount_options = ",".join(["remount", "bind", "rw", *kept])
    if "ro" not in options:
        return []  # writable already (a privileged container): nothing to do, as cgroup-remount
    bound = covering.mountpoint == paths.PROC_SYS_NET
    status = PENDING
    note = (
        f"{covering.mountpoint} is read-only; network sysctls are this container's own "
        "network namespace's"
    )
    if net_host:
        status = SKIPPED
        note = (
            "this is the host's network namespace: its sysctls are the host's, dind leaves "
            f"{covering.mountpoint} read-only"
        )
    elif sys_admin is False:
        status = SKIPPED
        note = f"no CAP_SYS_ADMIN: {covering.mountpoint} stays read-only"
    actions: list[Action] = []
    if not bound:
        actions.append(
            Bind(steps.NET_SYSCTLS, paths.PROC_SYS_NET, paths.PROC_SYS_NET, status, note)
        )
    actions.append(
        Remount(steps.NET_SYSCTLS, paths.PROC_SYS_NET, flags, remount_options, status, note)
    )
    return actions
