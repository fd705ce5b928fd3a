"""An action's status from the evidence: what is already mounted, what is in the way. Pure."""

from __future__ import annotations

from dind.actions import CONFLICT, PENDING, SATISFIED

TYPE_CHECKING = False
if TYPE_CHECKING:
    from dind.mountinfo import MountTable


def mount_status(
    mounts: MountTable, target: str, fstype: str, items: frozenset[str] = frozenset()
) -> tuple[str, str]:
    """Status and note of mounting ``fstype`` (with options ``items``) on ``target``.

    Satisfied when that filesystem, with those options, is what is visible there;
    a conflict when anything else is: dind never stacks a mount on top of it.
    """
    top = mounts.at(target)
    if top is None:
        return PENDING, ""
    if top.fstype == fstype and items <= set(top.super_options.split(",")):
        return SATISFIED, f"{fstype} already mounted"
    opts = f" ({top.super_options})" if top.fstype == "cgroup" else ""
    return CONFLICT, f"{top.fstype}{opts} already mounted there; not stacking on top"


def dir_status(name: str, entries: dict[str, str]) -> tuple[str, str]:
    """Status of ``mkdir`` of ``name`` given a listing (``dir``, ``link:T``, ``other``)."""
    kind = entries.get(name)
    if kind is None:
        return PENDING, ""
    if kind == "dir":
        return SATISFIED, ""
    what = "a symlink" if kind.startswith("link:") else "not a directory"
    return CONFLICT, f"exists and is {what}; dind never mounts through it"
