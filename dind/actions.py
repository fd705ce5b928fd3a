"""The plan's vocabulary: each filesystem operation is an object that describes and executes itself.

``--dry-run`` prints exactly the objects that a real run executes, so what users
read is what happens. ``status`` is decided at planning time from mountinfo and
the filesystem: ``pending`` (to do), ``satisfied`` (already so), ``conflict``
(something else is in the way: warn, never stack on top of it).
"""

from __future__ import annotations

import os

from dind.errors import SetupError
from dind.record import Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from dind.mountinfo import MountTable
    from dind.syscalls import Kernel

PENDING = "pending"
SATISFIED = "satisfied"
CONFLICT = "conflict"

MS_REC = 0x4000
MS_SHARED = 1 << 20


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


class Action(Record):
    """One operation of one step."""

    __slots__ = ("note", "status", "step")
    kind = "action"

    def __init__(self, step: str, status: str = PENDING, note: str = "") -> None:
        self.step = step
        self.status = status
        self.note = note

    def describe(self) -> str:
        raise NotImplementedError

    def details(self) -> dict[str, object]:
        """Fields for JSON output and structured logs (target, fstype, options...)."""
        return {}

    def fields(self) -> dict[str, object]:
        out: dict[str, object] = {"step": self.step, "action": self.kind}
        out.update(self.details())
        out["status"] = self.status
        if self.note:
            out["note"] = self.note
        return out

    def execute(self, kernel: Kernel) -> None:
        raise NotImplementedError


class SetEnv(Action):
    """Export a variable to the command's environment (``container=docker``)."""

    __slots__ = ("name", "value")
    kind = "setenv"

    def __init__(self, step: str, name: str, value: str, status: str = PENDING, note: str = ""):
        super().__init__(step, status, note)
        self.name = name
        self.value = value

    def describe(self) -> str:
        return f"export {self.name}={self.value}"

    def details(self) -> dict[str, object]:
        return {"variable": self.name, "value": self.value}

    def execute(self, kernel: Kernel) -> None:
        os.environ[self.name] = self.value


class MakeDir(Action):
    """``mkdir -p`` that refuses to go through a symlink at the last component."""

    __slots__ = ("path",)
    kind = "mkdir"

    def __init__(self, step: str, path: str, status: str = PENDING, note: str = "") -> None:
        super().__init__(step, status, note)
        self.path = path

    def describe(self) -> str:
        return f"mkdir {self.path}"

    def details(self) -> dict[str, object]:
        return {"target": self.path}

    def execute(self, kernel: Kernel) -> None:
        parent = os.path.dirname(self.path)
        if parent != self.path and kernel.lstat_kind(parent) is None:
            MakeDir(self.step, parent).execute(kernel)
        kind = kernel.lstat_kind(self.path)
        if kind is None:
            kernel.mkdir(self.path)
        elif kind != "dir":
            what = "a symlink" if kind == "link" else "not a directory"
            raise SetupError(
                f"{self.path} is {what}; dind does not mount through it", step=self.step
            )


class Mount(Action):
    """mount(2) of a new filesystem instance: ``mount -t FSTYPE -o DATA SOURCE TARGET``."""

    __slots__ = ("data", "flags", "fstype", "source", "target")
    kind = "mount"

    def __init__(
        self,
        step: str,
        source: str,
        target: str,
        fstype: str,
        data: str = "",
        flags: int = 0,
        status: str = PENDING,
        note: str = "",
    ) -> None:
        super().__init__(step, status, note)
        self.source = source
        self.target = target
        self.fstype = fstype
        self.data = data
        self.flags = flags

    def describe(self) -> str:
        opts = f" -o {self.data}" if self.data else ""
        return f"mount -t {self.fstype}{opts} {self.source} {self.target}"

    def details(self) -> dict[str, object]:
        return {
            "target": self.target,
            "fstype": self.fstype,
            "source": self.source,
            "options": self.data,
        }

    def execute(self, kernel: Kernel) -> None:
        if kernel.lstat_kind(self.target) == "link":
            raise SetupError(
                f"{self.target} is a symlink; dind does not mount through it", step=self.step
            )
        kernel.mount(self.source, self.target, self.fstype, self.flags, self.data)


class Propagation(Action):
    """Change a mount's propagation (its own mount(2) call, as the kernel requires)."""

    __slots__ = ("flags", "target")
    kind = "propagation"

    def __init__(self, step: str, target: str, flags: int, status: str = PENDING, note: str = ""):
        super().__init__(step, status, note)
        self.target = target
        self.flags = flags

    @property
    def mode(self) -> str:
        name = "shared" if self.flags & MS_SHARED else "private"
        return ("r" if self.flags & MS_REC else "") + name

    def describe(self) -> str:
        return f"mount --make-{self.mode} {self.target}"

    def details(self) -> dict[str, object]:
        return {"target": self.target, "propagation": self.mode}

    def execute(self, kernel: Kernel) -> None:
        kernel.mount(None, self.target, None, self.flags, None)


class Symlink(Action):
    """``ln -s LINK_TARGET PATH`` (relative, so the tree can be bind-mounted elsewhere)."""

    __slots__ = ("link_target", "path")
    kind = "symlink"

    def __init__(
        self, step: str, path: str, link_target: str, status: str = PENDING, note: str = ""
    ) -> None:
        super().__init__(step, status, note)
        self.path = path
        self.link_target = link_target

    def describe(self) -> str:
        return f"ln -s {self.link_target} {self.path}"

    def details(self) -> dict[str, object]:
        return {"target": self.path, "link": self.link_target}

    def execute(self, kernel: Kernel) -> None:
        kernel.symlink(self.link_target, self.path)


class NestCgroup2(Action):
    """Move every process of a cgroup2 root into a child group, then delegate all controllers."""

    __slots__ = ("controllers", "group", "path")
    kind = "nest"

    def __init__(
        self,
        step: str,
        path: str,
        group: str,
        controllers: tuple[str, ...] | None,
        status: str = PENDING,
        note: str = "",
    ) -> None:
        super().__init__(step, status, note)
        self.path = path
        self.group = group
        self.controllers = controllers

    def describe(self) -> str:
        wanted = " ".join(self.controllers) if self.controllers else "all controllers"
        return (
            f"move processes of {self.path} into {self.group}/, "
            f"enable {wanted} in cgroup.subtree_control"
        )

    def details(self) -> dict[str, object]:
        return {
            "target": self.path,
            "group": self.group,
            "controllers": list(self.controllers or ()),
        }

    def execute(self, kernel: Kernel) -> None:
        from dind.cgroup2 import nest

        nest(kernel, self.path, self.group)
