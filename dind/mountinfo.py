"""Parse /proc/PID/mountinfo (see proc(5)): pure text in, mount entries out.

dind decides "already mounted" from this table rather than from
``os.path.ismount``, which cannot tell what is mounted, nor see a mount whose
root is a bind of the same filesystem.
"""

from __future__ import annotations

from dind.errors import ParseError
from dind.procfile import lines
from dind.record import Record

MAX_SIZE = 64 << 20
"""A host with ten thousand mounts has a few MB of mountinfo; more is not mountinfo."""


class MountEntry(Record):
    """One line of mountinfo, with octal escapes (``\\040``) decoded."""

    __slots__ = (
        "fstype",
        "major",
        "minor",
        "mount_id",
        "mount_options",
        "mountpoint",
        "optional",
        "parent_id",
        "root",
        "source",
        "super_options",
    )

    def __init__(
        self,
        *,
        mount_id: int,
        parent_id: int,
        major: int,
        minor: int,
        root: str,
        mountpoint: str,
        mount_options: str,
        optional: tuple[str, ...],
        fstype: str,
        source: str,
        super_options: str,
    ) -> None:
        self.mount_id = mount_id
        self.parent_id = parent_id
        self.major = major
        self.minor = minor
        self.root = root
        self.mountpoint = mountpoint
        self.mount_options = mount_options
        self.optional = optional
        self.fstype = fstype
        self.source = source
        self.super_options = super_options

    @property
    def shared(self) -> bool:
        """True when the mount is in a shared peer group (``shared:N``)."""
        return any(tag.startswith("shared:") for tag in self.optional)

    @property
    def propagation(self) -> str:
        """The propagation type as mount(8) names it: shared, slave, private or unbindable."""
        kinds = [tag.split(":", 1)[0] for tag in self.optional]
        if "unbindable" in kinds:
            return "unbindable"
        if "shared" in kinds and "master" in kinds:
            return "shared,slave"
        if "shared" in kinds:
            return "shared"
        if "master" in kinds:
            return "slave"
        return "private"


def unescape(field: str) -> str:
    """Decode the kernel's ``\\ooo`` octal escapes (space, tab, newline, backslash)."""
    if "\\" not in field:
        return field
    out: list[str] = []
    i = 0
    n = len(field)
    while i < n:
        c = field[i]
        digits = field[i + 1 : i + 4]
        if c == "\\" and len(digits) == 3 and all("0" <= d <= "7" for d in digits):
            value = int(digits, 8)
            # Values above 0x7f stand for raw bytes; keep them as surrogate escapes
            # so they round-trip like the rest of the file.
            out.append(chr(value) if value < 0x80 else chr(0xDC00 + value))
            i += 4
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _number(text: str, source: str, lineno: int, line: str, what: str) -> int:
    if not text.isascii() or not text.isdigit():
        raise ParseError(source, lineno, f"{what} is not a number", line)
    return int(text)


def parse(text: str, source: str = "mountinfo") -> list[MountEntry]:
    """Parse the whole table; any malformed line raises ParseError naming it."""
    mounts: list[MountEntry] = []
    for lineno, line in lines(text, source):
        fields = line.split(" ")
        try:
            sep = fields.index("-", 6)
        except ValueError:
            raise ParseError(source, lineno, "no ' - ' separator field", line) from None
        if len(fields) < 7 or len(fields) - sep != 4:
            raise ParseError(source, lineno, "wrong number of fields", line)
        major, colon, minor = fields[2].partition(":")
        if not colon:
            raise ParseError(source, lineno, "device is not major:minor", line)
        mountpoint = unescape(fields[4])
        if not mountpoint.startswith("/"):
            raise ParseError(source, lineno, "mount point is not an absolute path", line)
        mounts.append(
            MountEntry(
                mount_id=_number(fields[0], source, lineno, line, "mount ID"),
                parent_id=_number(fields[1], source, lineno, line, "parent ID"),
                major=_number(major, source, lineno, line, "major"),
                minor=_number(minor, source, lineno, line, "minor"),
                root=unescape(fields[3]),
                mountpoint=mountpoint,
                mount_options=fields[5],
                optional=tuple(f for f in fields[6:sep] if f),
                fstype=unescape(fields[sep + 1]),
                source=unescape(fields[sep + 2]),
                super_options=unescape(fields[sep + 3]),
            )
        )
    return mounts


class MountTable:
    """Lookups over a parsed table: what is visible at a mount point right now."""

    __slots__ = ("_by_id", "_top", "_visible", "mounts")

    def __init__(self, mounts: list[MountEntry]) -> None:
        self.mounts = mounts
        self._by_id = {m.mount_id: m for m in mounts}
        self._visible: dict[int, bool] = {}
        groups: dict[str, list[MountEntry]] = {}
        for m in mounts:
            groups.setdefault(m.mountpoint, []).append(m)
        top: dict[str, MountEntry] = {}
        for path, stack in groups.items():
            # A mount stacked on another at the same point has it as parent: the
            # visible one is the mount no other mount there sits on.
            parents = {m.parent_id for m in stack}
            visible = [m for m in stack if m.mount_id not in parents]
            top[path] = visible[-1] if visible else stack[-1]
        self._top = top

    def at(self, path: str) -> MountEntry | None:
        """The mount on top at ``path`` if ``path`` is a mount point, else None."""
        return self._top.get(path)

    def visible(self, m: MountEntry) -> bool:
        """Whether ``m`` is reached by path: on top at its mount point, and under a visible
        parent that is what covers its directory.

        A mount under a directory that another mount later covered (the v1 hierarchies
        under /sys/fs/cgroup once cgroup2 is mounted there) is still listed, but hidden.
        """
        known = self._visible.get(m.mount_id)
        if known is None:
            self._visible[m.mount_id] = False  # a cycle in a corrupt table reads as hidden
            known = self._top.get(m.mountpoint) is m and self._reached(m)
            self._visible[m.mount_id] = known
        return known

    def _reached(self, m: MountEntry) -> bool:
        """Path resolution reaches ``m``'s mount point through its parent."""
        parent = self._by_id.get(m.parent_id)
        depth = 0
        while parent is not None and parent.mountpoint == m.mountpoint and depth < len(self.mounts):
            m, parent = parent, self._by_id.get(parent.parent_id)  # stacked: through the one below
            depth += 1
        if parent is None or parent is m:
            return True
        directory = m.mountpoint.rsplit("/", 1)[0] or "/"
        return self.covering(directory) is parent and self.visible(parent)

    def covering(self, path: str) -> MountEntry | None:
        """The mount that contains absolute ``path`` (the longest mount-point prefix)."""
        if not path.startswith("/"):
            return None
        probe = path
        while True:
            m = self._top.get(probe)
            if m is not None:
                return m
            if probe == "/":
                return None
            probe = probe.rsplit("/", 1)[0] or "/"
