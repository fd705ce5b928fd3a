"""Pure parsers for the user database files a rootless daemon needs: /etc/passwd,
/etc/group, /etc/subuid and /etc/subgid. Text in, records out.

Lines that do not parse are ignored, as the C library and shadow's ``newuidmap``
ignore them; numbers are ASCII digits only (``int()`` would take ``'²'``).
"""

from __future__ import annotations

from dind.record import Record

MAX_ID = (1 << 32) - 2
"""The largest valid ID: (uid_t)-1 means "no change" to the kernel."""


class User(Record):
    """One /etc/passwd entry (the fields a daemon's environment needs)."""

    __slots__ = ("gid", "home", "name", "uid")

    def __init__(self, name: str, uid: int, gid: int, home: str) -> None:
        self.name = name
        self.uid = uid
        self.gid = gid
        self.home = home


class SubIds(Record):
    """One /etc/subuid or /etc/subgid range: ``count`` IDs from ``start``, for ``owner``."""

    __slots__ = ("count", "owner", "start")

    def __init__(self, owner: str, start: int, count: int) -> None:
        self.owner = owner
        self.start = start
        self.count = count

    def __str__(self) -> str:
        return f"{self.start}-{self.start + self.count - 1}"


def _number(word: str) -> int | None:
    if not word.isascii() or not word.isdigit() or len(word) > 10:
        return None
    value = int(word)
    return value if value <= MAX_ID else None


def parse_passwd(text: str) -> list[User]:
    """Entries ``name:password:uid:gid:gecos:home:shell``, in file order."""
    users = []
    for line in text.splitlines():
        fields = line.split(":")
        if len(fields) != 7 or not fields[0] or fields[0].startswith(("#", "+", "-")):
            continue
        uid, gid = _number(fields[2]), _number(fields[3])
        if uid is None or gid is None:
            continue
        users.append(User(fields[0], uid, gid, fields[5]))
    return users


def find_user(users: list[User], wanted: str | int) -> User | None:
    """The first entry with that name (a ``str``) or that UID (an ``int``), as getpwnam/getpwuid."""
    for user in users:
        if (user.name if isinstance(wanted, str) else user.uid) == wanted:
            return user
    return None


def supplementary_gids(text: str, user: User) -> tuple[int, ...]:
    """The user's groups: its primary group first, then those of /etc/group that list it
    (what initgroups(3) would set)."""
    gids = [user.gid]
    for line in text.splitlines():
        fields = line.split(":")
        if len(fields) != 4:
            continue
        gid = _number(fields[2])
        if gid is not None and user.name in fields[3].split(",") and gid not in gids:
            gids.append(gid)
    return tuple(gids)


def parse_subids(text: str) -> list[SubIds]:
    """Entries ``owner:start:count`` (owner a name or a UID), in file order."""
    ranges = []
    for line in text.splitlines():
        fields = line.strip().split(":")
        if len(fields) != 3 or not fields[0] or fields[0].startswith("#"):
            continue
        start, count = _number(fields[1]), _number(fields[2])
        if start is None or not count or start + count - 1 > MAX_ID:
            continue
        ranges.append(SubIds(fields[0], start, count))
    return ranges


def ranges_of(entries: list[SubIds], user: User) -> list[SubIds]:
    """The ranges that belong to ``user``, by name or by UID (as newuidmap reads them)."""
    return [e for e in entries if e.owner in (user.name, str(user.uid))]
