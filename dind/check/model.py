"""What ``--check`` looks at: the planning evidence plus the probes only a diagnosis needs.

``Snapshot.evidence`` is what ``dind.detect.read`` returns, the very reader a real
run plans from; the rest (capabilities, namespace owners, access(2) answers,
processes, modules) is read by ``dind.check.gather`` alone.
"""

from __future__ import annotations

from dind.record import Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from dind.facts import Evidence


class Proc(Record):
    """What psutil tells about one process (``error`` when it could not)."""

    __slots__ = ("cmdline", "error", "name", "pid", "ppid")

    def __init__(
        self,
        pid: int,
        name: str = "",
        cmdline: tuple[str, ...] = (),
        ppid: int | None = None,
        error: str | None = None,
    ) -> None:
        self.pid = pid
        self.name = name
        self.cmdline = cmdline
        self.ppid = ppid
        self.error = error

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"pid": self.pid, "name": self.name, "cmdline": list(self.cmdline)}
        if self.ppid is not None:
            out["ppid"] = self.ppid
        if self.error:
            out["error"] = self.error
        return out


class Namespace(Record):
    """This process's namespace of one kind: its link, and who owns it.

    ``owner`` is the owning user namespace relative to ours (ioctl NS_GET_USERNS):
    ``ours``, ``ancestor`` (EPERM: it lies outside our user namespace, where our
    capabilities do not count), ``descendant``, or None when unknown.
    """

    __slots__ = ("link", "owner")

    def __init__(self, link: str | None, owner: str | None = None) -> None:
        self.link = link
        self.owner = owner


class Snapshot(Record):
    """Everything ``--check`` looks at, uninterpreted."""

    __slots__ = (
        "euid",
        "evidence",
        "namespaces",
        "pid",
        "processes",
        "release",
        "runtime",
        "sys_modules",
        "writable",
    )

    def __init__(
        self,
        *,
        evidence: Evidence,
        writable: dict[str, bool] | None = None,
        namespaces: dict[str, Namespace] | None = None,
        euid: int = 0,
        pid: int = 0,
        processes: dict[int, Proc] | None = None,
        sys_modules: tuple[str, ...] = (),
        release: str = "",
        runtime: dict[str, object] | None = None,
    ) -> None:
        self.evidence = evidence
        self.writable = writable or {}
        self.namespaces = namespaces or {}
        self.euid = euid
        self.pid = pid
        self.processes = processes or {}
        self.sys_modules = sys_modules
        self.release = release
        self.runtime = runtime or {}

    @property
    def keyring(self) -> str | None:
        """The session-keyring probe (dind.probes), read by the reader with the privilege
        evidence."""
        return self.evidence.probes.get("keyring")

    @property
    def files(self) -> dict[str, str]:
        return self.evidence.files

    @property
    def errors(self) -> dict[str, str]:
        return self.evidence.errors

    def text(self, path: str) -> str | None:
        """The captured text of ``path``; None when missing or unreadable."""
        return self.evidence.files.get(path)

    @property
    def modules_builtin(self) -> str:
        return f"/lib/modules/{self.release}/modules.builtin"

    @property
    def modules_dep(self) -> str:
        return f"/lib/modules/{self.release}/modules.dep"
