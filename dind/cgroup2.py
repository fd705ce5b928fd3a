"""cgroup v2 planning: the mount of a pure-v2 view, and whether nesting is needed. Pure.

Nesting itself (moving processes, delegating controllers) is executed by
``dind.nesting``; this only decides whether it is still to do.
"""

from __future__ import annotations

from dind import steps
from dind.actions import PENDING, SATISFIED, Action, MakeDir, Mount, NestCgroup2
from dind.status import mount_status

TYPE_CHECKING = False
if TYPE_CHECKING:
    from dind.mountinfo import MountTable

NEST_GROUP = "init"


def plan_mount(target: str, mounts: MountTable, target_exists: bool) -> list[Action]:
    """cgroup2 at ``target`` unless it is there already (a tmpfs root for v1 is not)."""
    step = steps.CGROUP_MOUNTS
    actions: list[Action] = [MakeDir(step, target, SATISFIED if target_exists else PENDING)]
    status, note = mount_status(mounts, target, "cgroup2")
    actions.append(Mount(step, "cgroup2", target, "cgroup2", status=status, note=note))
    return actions


def plan_nesting(
    path: str, controllers: tuple[str, ...] | None, subtree: tuple[str, ...] | None
) -> NestCgroup2:
    """Satisfied when every available controller is already delegated.

    Unknown controllers (None: not read, or the tree is replaced before nesting
    runs) leave it pending; execution reads them itself.
    """
    step = steps.CGROUP_NESTING
    if controllers is not None and subtree is not None and set(controllers) <= set(subtree):
        return NestCgroup2(
            step,
            path,
            NEST_GROUP,
            controllers,
            SATISFIED,
            "every controller is already enabled in cgroup.subtree_control",
        )
    return NestCgroup2(step, path, NEST_GROUP, controllers)
