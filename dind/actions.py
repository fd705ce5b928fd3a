"""The plan's vocabulary: each operation is an object that describes and executes itself.

``--dry-run`` prints exactly the objects that a real run executes, so what users
read is what happens. ``status`` is decided at planning time from the evidence:
``pending`` (to do), ``satisfied`` (already so), ``conflict`` (something else is
in the way: warn, never stack on top of it), ``skipped`` (it cannot work at the
privilege found, e.g. securityfs in a user namespace: not attempted, the note says
why), ``refused`` (dind must not go on: it stops before changing anything).
"""

from __future__ import annotations

import contextlib
import os

from dind import steps
from dind.errors import SetupError
from dind.record import Record
from dind.syscalls import CLONE_NEWCGROUP, MS_BIND, MS_REC, MS_REMOUNT, MS_SHARED

TYPE_CHECKING = False
if TYPE_CHECKING:
    from dind.kernel import Kernel

PENDING = "pending"
SATISFIED = "satisfied"
CONFLICT = "conflict"
SKIPPED = "skipped"
REFUSED = "refused"


class Action(Record):
    """One operation of one step."""

    __slots__ = ("note", "status", "step")
    kind = "action"
    privileged = False
    """A mount(2)-like call: EPERM/EACCES on the first of these means "not privileged"."""

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

    def execute(self, kernel: Kernel) -> str | None:
        """Do it; return a line saying what was done when ``describe()`` does not say it all."""
        raise NotImplementedError

    def prepare(self) -> None:
        """Import what ``execute`` needs, before any mount: a tmpfs on /tmp may cover where
        dind's modules live."""
        return None


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

    def execute(self, kernel: Kernel) -> str | None:
        os.environ[self.name] = self.value
        return None


class MakeDir(Action):
    """``mkdir -p``, never through a symlink (the kernel interface refuses any)."""

    __slots__ = ("path",)
    kind = "mkdir"

    def __init__(self, step: str, path: str, status: str = PENDING, note: str = "") -> None:
        super().__init__(step, status, note)
        self.path = path

    def describe(self) -> str:
        return f"mkdir {self.path}"

    def details(self) -> dict[str, object]:
        return {"target": self.path}

    def execute(self, kernel: Kernel) -> str | None:
        parent = os.path.dirname(self.path)
        if parent != self.path and kernel.kind(parent) is None:
            MakeDir(self.step, parent).execute(kernel)
        kind = kernel.kind(self.path)
        if kind is None:
            try:
                kernel.mkdir(self.path)
            except FileExistsError:
                kind = kernel.kind(self.path)  # made meanwhile: fine if it is a directory
        if kind not in (None, "dir"):
            what = "a symlink" if kind == "link" else "not a directory"
            raise SetupError(
                f"{self.path} is {what}; dind does not mount through it", step=self.step
            )
        return None


class Mount(Action):
    """mount(2) of a new filesystem instance: ``mount -t FSTYPE -o DATA SOURCE TARGET``."""

    __slots__ = ("data", "flags", "fstype", "source", "target")
    kind = "mount"
    privileged = True

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

    def execute(self, kernel: Kernel) -> str | None:
        kernel.mount(self.source, self.target, self.fstype, self.flags, self.data)
        return None


class Bind(Action):
    """``mount --bind SOURCE TARGET``: both opened without following symlinks."""

    __slots__ = ("source", "target")
    kind = "bind"
    privileged = True

    def __init__(
        self, step: str, source: str, target: str, status: str = PENDING, note: str = ""
    ) -> None:
        super().__init__(step, status, note)
        self.source = source
        self.target = target

    def describe(self) -> str:
        return f"mount --bind {self.source} {self.target}"

    def details(self) -> dict[str, object]:
        return {"target": self.target, "source": self.source, "options": "bind"}

    def execute(self, kernel: Kernel) -> str | None:
        kernel.mount(self.source, self.target, None, MS_BIND, None)
        return None


class Remount(Action):
    """``mount -o remount,bind,rw TARGET``: clear a mount's read-only flag, keep its others."""

    __slots__ = ("flags", "options", "target")
    kind = "remount"
    privileged = True

    def __init__(
        self,
        step: str,
        target: str,
        flags: int,
        options: str,
        status: str = PENDING,
        note: str = "",
    ) -> None:
        super().__init__(step, status, note)
        self.target = target
        self.flags = flags
        self.options = options

    def describe(self) -> str:
        return f"mount -o {self.options} {self.target}"

    def details(self) -> dict[str, object]:
        return {"target": self.target, "options": self.options}

    def execute(self, kernel: Kernel) -> str | None:
        kernel.mount(None, self.target, None, MS_REMOUNT | MS_BIND | self.flags, None)
        return None


class Umount(Action):
    """``umount -l TARGET``: detach a mount that shows the nested runtime the wrong tree."""

    __slots__ = ("target",)
    kind = "umount"
    privileged = True

    def __init__(self, step: str, target: str, status: str = PENDING, note: str = "") -> None:
        super().__init__(step, status, note)
        self.target = target

    def describe(self) -> str:
        return f"umount -l {self.target}"

    def details(self) -> dict[str, object]:
        return {"target": self.target}

    def execute(self, kernel: Kernel) -> str | None:
        kernel.umount(self.target)
        return None


class Propagation(Action):
    """``mount --make-rshared TARGET`` (its own mount(2) call, as the kernel requires)."""

    __slots__ = ("target",)
    kind = "propagation"
    privileged = True

    def __init__(self, step: str, target: str, status: str = PENDING, note: str = "") -> None:
        super().__init__(step, status, note)
        self.target = target

    def describe(self) -> str:
        return f"mount --make-rshared {self.target}"

    def details(self) -> dict[str, object]:
        return {"target": self.target, "propagation": steps.RSHARED}  # the step is named after it

    def execute(self, kernel: Kernel) -> str | None:
        kernel.mount(None, self.target, None, MS_REC | MS_SHARED, None)
        return None


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

    def execute(self, kernel: Kernel) -> str | None:
        kernel.symlink(self.link_target, self.path)
        return None


class UnshareCgroup(Action):
    """``unshare --cgroup``: dind's own cgroup becomes the root of what it and its children see."""

    __slots__ = ()
    kind = "unshare"
    privileged = True

    def describe(self) -> str:
        return "unshare --cgroup"

    def details(self) -> dict[str, object]:
        return {"namespace": "cgroup"}

    def execute(self, kernel: Kernel) -> str | None:
        kernel.unshare(CLONE_NEWCGROUP)
        return None


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

    def execute(self, kernel: Kernel) -> str | None:
        from dind.nesting import nest

        nest(kernel, self.path, self.group, self.step)
        return None

    def prepare(self) -> None:
        import dind.nesting  # noqa: F401


class RemoveFile(Action):
    """``rm PATH`` (a stale pid file), by unlinkat in its directory."""

    __slots__ = ("path",)
    kind = "rm"

    def __init__(self, step: str, path: str, status: str = PENDING, note: str = "") -> None:
        super().__init__(step, status, note)
        self.path = path

    def describe(self) -> str:
        return f"rm {self.path}"

    def details(self) -> dict[str, object]:
        return {"target": self.path}

    def execute(self, kernel: Kernel) -> str | None:
        with contextlib.suppress(FileNotFoundError):  # gone meanwhile: what was wanted
            kernel.unlink(self.path)
        return None


class Decision(Action):
    """A decision made from evidence and said out loud (a dockerd flag, a verdict).

    Its effect is on the command line the plan builds, or a refusal; executing it
    has nothing left to do.
    """

    __slots__ = ("text", "value")
    kind = "decision"

    def __init__(
        self, step: str, text: str, value: str = "", status: str = PENDING, note: str = ""
    ) -> None:
        super().__init__(step, status, note)
        self.text = text
        self.value = value

    def describe(self) -> str:
        return self.text

    def details(self) -> dict[str, object]:
        return {"decision": self.value} if self.value else {}

    def execute(self, kernel: Kernel) -> str | None:
        return None
