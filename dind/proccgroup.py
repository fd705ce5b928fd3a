"""Parse /proc/PID/cgroup (``hierarchy-ID:controller-list:path``): pure text in, hierarchies out.

Controller lists become directory names under the cgroup root, so they are held
to the kernel's own naming rules here; anything else could name a path outside it.
The path field is only carried along: it may hold any bytes a cgroup name may.
"""

from __future__ import annotations

from dind.errors import ParseError, shown
from dind.paths import PROC_1_CGROUP
from dind.procfile import lines
from dind.record import Record

MAX_SIZE = 1 << 20
MAX_NAME = 64
"""MAX_CGROUP_ROOT_NAMELEN and the longest controller name the kernel accepts."""
NAME_MAX = 255

_CONTROLLER_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
_NAME_CHARS = _CONTROLLER_CHARS | frozenset(".-")


class Hierarchy(Record):
    """One line: a v1 hierarchy (ID > 0) or the unified v2 hierarchy (``0::``)."""

    __slots__ = ("controllers", "hierarchy_id", "lineno", "name", "options", "path")

    def __init__(
        self,
        *,
        hierarchy_id: int,
        options: str,
        controllers: tuple[str, ...],
        name: str | None,
        path: str,
        lineno: int,
    ) -> None:
        self.hierarchy_id = hierarchy_id
        self.options = options
        self.controllers = controllers
        self.name = name
        self.path = path
        self.lineno = lineno

    @property
    def unified(self) -> bool:
        return self.hierarchy_id == 0

    @property
    def directory(self) -> str:
        """Directory under the cgroup root: the list as written, minus a leading ``name=``."""
        return self.options.removeprefix("name=")


def _check_item(item: str) -> str | None:
    """Return why ``item`` breaks the kernel's naming rules, or None if it is fine."""
    if not item:
        return "empty controller name"
    if item.startswith("name="):
        value = item[5:]
        if not value:
            return "empty name= value"
        if len(value) > MAX_NAME:
            return f"name= value longer than {MAX_NAME} characters"
        if value in (".", ".."):
            return f"name= value {shown(value)} would name a directory outside the cgroup root"
        if not _NAME_CHARS.issuperset(value):
            return f"name= value {shown(value)} is not [A-Za-z0-9_.-]+"
        return None
    if len(item) > MAX_NAME:
        return f"controller name longer than {MAX_NAME} characters"
    if not _CONTROLLER_CHARS.issuperset(item):
        return f"controller name {shown(item)} is not [A-Za-z0-9_]+"
    return None


def parse(text: str, source: str = PROC_1_CGROUP) -> list[Hierarchy]:
    """Parse and validate every line; the first bad one raises ParseError naming it."""
    hierarchies: list[Hierarchy] = []
    seen_ids: dict[int, int] = {}
    seen_items: dict[str, int] = {}
    for lineno, line in lines(text, source):
        fields = line.split(":", 2)
        if len(fields) != 3:
            raise ParseError(source, lineno, "expected hierarchy-ID:controller-list:path", line)
        id_text, options, path = fields
        if not id_text.isascii() or not id_text.isdigit() or len(id_text) > 9:
            raise ParseError(source, lineno, "hierarchy ID is not a number", line)
        hierarchy_id = int(id_text)
        if not path.startswith("/"):
            raise ParseError(source, lineno, "cgroup path does not start with /", line)
        if hierarchy_id in seen_ids:
            raise ParseError(
                source,
                lineno,
                f"hierarchy {hierarchy_id} already listed on line {seen_ids[hierarchy_id]}",
                line,
            )
        seen_ids[hierarchy_id] = lineno
        if hierarchy_id == 0:
            if options:
                raise ParseError(
                    source, lineno, "hierarchy 0 (cgroup2) has no controller list", line
                )
            hierarchies.append(
                Hierarchy(
                    hierarchy_id=0, options="", controllers=(), name=None, path=path, lineno=lineno
                )
            )
            continue
        if not options:
            raise ParseError(source, lineno, "empty controller list for a v1 hierarchy", line)
        controllers: list[str] = []
        name: str | None = None
        for item in options.split(","):
            problem = _check_item(item)
            if problem:
                raise ParseError(source, lineno, problem, line)
            if item in seen_items:
                raise ParseError(
                    source, lineno, f"{shown(item)} already listed on line {seen_items[item]}", line
                )
            seen_items[item] = lineno
            if item.startswith("name="):
                if name is not None:
                    raise ParseError(source, lineno, "two name= values in one hierarchy", line)
                name = item[5:]
            else:
                controllers.append(item)
        if len(options) > NAME_MAX:
            raise ParseError(source, lineno, f"controller list longer than {NAME_MAX}", line)
        hierarchies.append(
            Hierarchy(
                hierarchy_id=hierarchy_id,
                options=options,
                controllers=tuple(controllers),
                name=name,
                path=path,
                lineno=lineno,
            )
        )
    return hierarchies
