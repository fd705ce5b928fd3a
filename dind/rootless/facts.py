"""What the rootless daemon plans from: the evidence read (raw) and what it means (pure).

``RootlessEvidence`` is what ``dind.rootless.detect`` read, serialisable into a
``--check`` capture. The functions below judge it: is the user there, with
subordinate ranges; can ``newuidmap``/``newgidmap`` work here (setuid root versus
file capabilities, ``no_new_privs``); ``/dev/net/tun``; user namespaces; a /proc
that a nested PID namespace can mount. Each verdict that fails names the outer
option that fixes it, from ``NEEDS`` (dind.requirements): one source for ``--check``,
the refusal of a real run and ``--recipe RUNTIME --rootless``.
"""

from __future__ import annotations

import stat

from dind import paths, procfs, requirements, userdb
from dind.record import Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from dind.mountinfo import MountTable

OK = "ok"
TUN_DEVICE = (10, 200)
"""/dev/net/tun's character device numbers (misc, TUN_MINOR)."""
HELPERS = {"newuidmap": "CAP_SETUID", "newgidmap": "CAP_SETGID"}
"""shadow's ID-mapping helpers and the capability each needs to write another user's map."""
TOOLS = ("rootlesskit", "slirp4netns", "rootlesskit-docker-proxy", "dind-rootlesskit-docker-proxy")
VFS_CAP_FLAGS_EFFECTIVE = 0x1
PROC_UNMASKED = frozenset({"/proc/sys/fs/binfmt_misc"})
"""Mounts below /proc that do not hide anything (on an empty directory of procfs)."""


NEEDS = {
    "seccomp": requirements.USERNS_SECCOMP,
    "apparmor": requirements.APPARMOR,
    "systempaths": requirements.UNMASKED_PROC,
    "tun": requirements.TUN,
}
"""The outer runtime's grants a rootless dockerd needs (dind.requirements: one source with
``--check``'s fixes and ``--recipe RUNTIME --rootless``), by what they are about here."""


def option(key: str) -> str:
    """The grant ``NEEDS[key]`` in Docker's words (a real run cannot tell the runtime:
    ``--check`` words it for the runtime it sees)."""
    return NEEDS[key].option(requirements.DOCKER) or f"grant {NEEDS[key].what}"


NO_NEW_PRIVS_FIX = "run the container without --security-opt no-new-privileges"


class FileInfo(Record):
    """What lstat (and the ``security.capability`` xattr) said about a file."""

    __slots__ = ("caps", "gid", "mode", "path", "rdev", "uid")

    def __init__(
        self,
        path: str,
        mode: int,
        uid: int,
        gid: int,
        rdev: tuple[int, int] = (0, 0),
        caps: str | None = None,
    ) -> None:
        self.path = path
        self.mode = mode
        self.uid = uid
        self.gid = gid
        self.rdev = rdev
        self.caps = caps
        """The raw xattr in hex (struct vfs_cap_data), or None."""

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)

    def to_json(self) -> list[object]:
        return [self.path, self.mode, self.uid, self.gid, list(self.rdev), self.caps]

    @classmethod
    def from_json(cls, doc: list[Any] | None) -> FileInfo | None:
        if doc is None:
            return None
        return cls(
            str(doc[0]),
            int(doc[1]),
            int(doc[2]),
            int(doc[3]),
            (int(doc[4][0]), int(doc[4][1])),
            doc[5],
        )


class RootlessEvidence(Record):
    """What detection read for the rootless daemon, uninterpreted."""

    __slots__ = (
        "errors",
        "euid",
        "files",
        "helpers",
        "paths",
        "tools",
        "tun",
        "tun_open",
        "userns",
        "var_run",
    )

    def __init__(
        self,
        *,
        euid: int = 0,
        files: dict[str, str] | None = None,
        errors: dict[str, str] | None = None,
        helpers: dict[str, FileInfo | None] | None = None,
        tun: FileInfo | None = None,
        tun_open: str | None = None,
        userns: str | None = None,
        tools: dict[str, str | None] | None = None,
        paths: dict[str, FileInfo | None] | None = None,
        var_run: str | None = None,
    ) -> None:
        self.euid = euid
        self.files = files or {}
        """Texts by path: the user database, /proc/self/status, the userns sysctls."""
        self.errors = errors or {}
        self.helpers = helpers or {}
        self.tun = tun
        self.tun_open = tun_open
        """open(/dev/net/tun, O_RDWR) as dind: ``ok``, an errno name, or None (not tried)."""
        self.userns = userns
        """unshare(CLONE_NEWUSER) as the user, in a child: ``ok``, an errno name, or None."""
        self.tools = tools or {}
        self.paths = paths or {}
        """lstat of the places dind prepares (None: missing)."""
        self.var_run = var_run
        """readlink /var/run (``/run`` on Debian), None when it is a directory."""

    def to_json(self) -> dict[str, object]:
        return {
            "euid": self.euid,
            "files": self.files,
            "errors": self.errors,
            "helpers": {k: None if v is None else v.to_json() for k, v in self.helpers.items()},
            "tun": None if self.tun is None else self.tun.to_json(),
            "tun_open": self.tun_open,
            "userns": self.userns,
            "tools": self.tools,
            "paths": {k: None if v is None else v.to_json() for k, v in self.paths.items()},
            "var_run": self.var_run,
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> RootlessEvidence:
        return cls(
            euid=int(doc.get("euid", 0)),
            files=dict(doc.get("files") or {}),
            errors=dict(doc.get("errors") or {}),
            helpers={k: FileInfo.from_json(v) for k, v in (doc.get("helpers") or {}).items()},
            tun=FileInfo.from_json(doc.get("tun")),
            tun_open=doc.get("tun_open"),
            userns=doc.get("userns"),
            tools=dict(doc.get("tools") or {}),
            paths={k: FileInfo.from_json(v) for k, v in (doc.get("paths") or {}).items()},
            var_run=doc.get("var_run"),
        )


class Verdict(Record):
    """One requirement judged: met or not (None: cannot tell), the value seen, why, the fix."""

    __slots__ = ("fix", "key", "name", "ok", "value", "why")

    def __init__(
        self, name: str, ok: bool | None, value: str, why: str, fix: str = "", key: str = ""
    ) -> None:
        self.name = name
        self.ok = ok
        self.value = value
        self.why = why
        self.fix = fix
        self.key = key
        """The dind.requirements key of the outer grant that fixes it, when one does."""


def socket_link(var_run: str | None) -> str:
    """Where the /var/run/docker.sock link goes: created in the real directory (dind
    creates nothing through a symlink, and /var/run is one to /run on Debian)."""
    real = paths.RUN if var_run in (paths.RUN, paths.RUN.lstrip("/"), "../run") else paths.VAR_RUN
    return f"{real}/docker.sock"


def _status(ev: RootlessEvidence) -> dict[str, str]:
    return procfs.status_fields(ev.files.get(paths.PROC_SELF_STATUS, ""))


def capabilities(ev: RootlessEvidence) -> tuple[int | None, int | None]:
    """dind's effective and bounding capability sets."""
    fields = _status(ev)
    return procfs.cap_mask(fields.get("CapEff")), procfs.cap_mask(fields.get("CapBnd"))


def no_new_privs(ev: RootlessEvidence) -> bool | None:
    value = _status(ev).get("NoNewPrivs")
    return None if value not in ("0", "1") else value == "1"


def seccomp_filtered(ev: RootlessEvidence) -> bool | None:
    value = _status(ev).get("Seccomp")
    return None if value is None or not value.isdigit() else value == "2"


def find_user(ev: RootlessEvidence, name: str) -> tuple[userdb.User | None, str]:
    """The daemon's user: ``name`` when dind is root, else dind's own user. The problem if none."""
    text = ev.files.get(paths.PASSWD)
    if text is None:
        return None, f"{paths.PASSWD} cannot be read ({ev.errors.get(paths.PASSWD, 'ENOENT')})"
    users = userdb.parse_passwd(text)
    if ev.euid != 0:
        user = userdb.find_user(users, ev.euid)
        if user is None:
            return None, f"dind runs as uid {ev.euid}, which has no entry in {paths.PASSWD}"
        return user, ""
    user = userdb.find_user(users, name)
    if user is None:
        return None, f"no user {name!r} in {paths.PASSWD} (DIND_ROOTLESS_USER names the user)"
    if user.uid == 0:
        return None, f"{name!r} is uid 0: a rootless daemon runs as an unprivileged user"
    return user, ""


def subordinate(
    ev: RootlessEvidence, user: userdb.User, path: str
) -> tuple[list[userdb.SubIds], str]:
    """The user's ranges in ``path`` (/etc/subuid or /etc/subgid), and the problem if none."""
    text = ev.files.get(path)
    if text is None:
        return [], f"{path} cannot be read ({ev.errors.get(path, 'ENOENT')})"
    ranges = userdb.ranges_of(userdb.parse_subids(text), user)
    if not ranges:
        return [], f"{path} has no range for {user.name} (uid {user.uid})"
    return ranges, ""


def file_caps(hex_text: str | None) -> tuple[int, bool] | None:
    """(permitted mask, effective) of a ``security.capability`` xattr (struct vfs_cap_data,
    revision 1, 2 or 3, little-endian); None when absent or malformed."""
    if not hex_text:
        return None
    try:
        data = bytes.fromhex(hex_text)
    except ValueError:
        return None
    if len(data) < 12:
        return None
    magic = int.from_bytes(data[0:4], "little")
    revision = magic & 0xFF000000
    permitted = int.from_bytes(data[4:8], "little")
    if revision in (0x02000000, 0x03000000) and len(data) >= 20:
        permitted |= int.from_bytes(data[12:16], "little") << 32
    elif revision != 0x01000000:
        return None
    return permitted, bool(magic & VFS_CAP_FLAGS_EFFECTIVE)


def helper_verdict(ev: RootlessEvidence, name: str) -> Verdict:
    """Can ``newuidmap``/``newgidmap`` write the user's map here?

    Without --privileged a setuid-root helper runs as euid 0 without CAP_SYS_ADMIN
    over the user's new namespace: the kernel refuses its write to uid_map (EPERM).
    File capabilities (``cap_setuid=ep``) keep the user's euid, the namespace's
    owner, so that write is allowed. ``no_new_privs`` disables both.
    """
    needed = HELPERS[name]
    info = ev.helpers.get(name)
    if info is None:
        return Verdict(
            name,
            False,
            "not found",
            f"{name} is not on PATH: rootlesskit maps IDs with it",
            "install uidmap",
        )
    _, bnd = capabilities(ev)
    caps = file_caps(info.caps)
    setuid_root = bool(info.mode & stat.S_ISUID) and info.uid == 0
    if no_new_privs(ev):
        value = "file capabilities" if caps else "setuid root" if setuid_root else "neither"
        return Verdict(
            name,
            False,
            f"{value}, under no_new_privs",
            "no_new_privs is set: exec raises no privilege, by setuid bit or file capabilities",
            NO_NEW_PRIVS_FIX,
        )
    if caps is not None and caps[1] and procfs.has_cap(caps[0], needed):
        value = f"file capabilities ({needed.lower().removeprefix('cap_')})"
        if procfs.has_cap(bnd, needed) is False:
            return Verdict(
                name,
                False,
                value,
                f"the bounding set lacks {needed}: the file capability is dropped",
                f"--cap-add {needed.removeprefix('CAP_')}",
            )
        return Verdict(
            name, True, value, f"{info.path}: raises {needed} only, keeping the user's uid"
        )
    if setuid_root:
        if procfs.has_cap(bnd, "CAP_SYS_ADMIN"):
            return Verdict(
                name, True, "setuid root", "setuid root, with CAP_SYS_ADMIN in the bounding set"
            )
        return Verdict(
            name,
            False if bnd is not None else None,
            "setuid root",
            "setuid root is not enough without CAP_SYS_ADMIN in the bounding set: the kernel "
            "refuses its write to uid_map (EPERM)",
            f"give {info.path} file capabilities instead (chmod u-s; setcap "
            f"{needed.lower()}=ep), as dind's image does, or --privileged",
        )
    return Verdict(
        name,
        False,
        "no setuid bit, no file capability",
        f"{info.path} cannot write another user's ID map",
        f"setcap {needed.lower()}=ep {info.path}",
    )


def _mode(info: FileInfo) -> str:
    return f"mode {stat.S_IMODE(info.mode):04o}, uid {info.uid}"


def tun_verdict(ev: RootlessEvidence, user: userdb.User | None, groups: tuple[int, ...]) -> Verdict:
    """/dev/net/tun for slirp4netns: there, the tun device, openable here (the device
    cgroup), and read-write for the user, or given to it by dind as root."""
    fix = option("tun")
    info = ev.tun
    if info is None:
        return Verdict(
            "tun",
            False,
            "missing",
            "slirp4netns needs it for the daemon's network",
            fix,
            requirements.TUN.key,
        )
    if not stat.S_ISCHR(info.mode) or info.rdev != TUN_DEVICE:
        return Verdict(
            "tun",
            False,
            "not the tun device",
            f"{_mode(info)}, device {info.rdev[0]}:{info.rdev[1]}",
            fix,
            requirements.TUN.key,
        )
    if ev.tun_open == "EPERM":
        return Verdict(
            "tun",
            False,
            "open: EPERM",
            "the device cgroup refuses it: the runtime did not give this container the device",
            fix,
            requirements.TUN.key,
        )
    if ev.euid == 0:
        return Verdict(
            "tun", True, _mode(info), "dind gives it to the user before rootlesskit starts"
        )
    if user is None:
        return Verdict("tun", None, _mode(info), "no user to judge the mode for")
    mode = stat.S_IMODE(info.mode)
    usable = (
        (info.uid == user.uid and mode & 0o600 == 0o600)
        or (info.gid in groups and mode & 0o060 == 0o060)
        or mode & 0o006 == 0o006
    )
    if usable:
        return Verdict("tun", True, _mode(info), f"read-write for uid {user.uid}")
    return Verdict(
        "tun",
        False,
        _mode(info),
        f"slirp4netns, as uid {user.uid}, cannot open it, and dind started as uid {user.uid} "
        "cannot give it (as root it does)",
        "start the container as root: dind gives the device to the user; or use a host whose "
        "/dev/net/tun is mode 0666",
    )


def masked_proc(mounts: MountTable) -> list[str]:
    """Mounts below /proc that hide part of it (Docker's masked and read-only paths)."""
    return sorted(
        {
            m.mountpoint
            for m in mounts.mounts
            if m.mountpoint.startswith("/proc/")
            and m.mountpoint not in PROC_UNMASKED
            and mounts.visible(m)
        }
    )


def proc_verdict(mounts: MountTable | None) -> Verdict:
    need = NEEDS["systempaths"]
    if mounts is None:
        return Verdict("proc", None, "unknown", "the mount table could not be read")
    masked = masked_proc(mounts)
    if not masked:
        return Verdict("proc", True, "fully visible", "nothing is mounted over part of /proc")
    shown = ", ".join(masked[:4]) + (", ..." if len(masked) > 4 else "")
    why = (
        "the kernel mounts a new procfs for a nested PID namespace only when no file of /proc "
        "is masked, and dockerd writes /proc/sys"
    )
    value = f"{len(masked)} path(s) masked ({shown})"
    return Verdict("proc", False, value, why, option("systempaths"), need.key)


def _sysctl(ev: RootlessEvidence, path: str) -> str | None:
    text = ev.files.get(path)
    return None if text is None else text.strip()


def userns_verdict(ev: RootlessEvidence) -> Verdict:
    """May the user create a user namespace? The probe, explained by the sysctls and seccomp."""
    most = _sysctl(ev, paths.MAX_USER_NAMESPACES)
    if most == "0":
        return Verdict(
            "userns",
            False,
            "user.max_user_namespaces=0",
            "the kernel allows no user namespace",
            "sysctl -w user.max_user_namespaces=28633 on the host",
        )
    if _sysctl(ev, paths.UNPRIVILEGED_USERNS_CLONE) == "0":
        return Verdict(
            "userns",
            False,
            "kernel.unprivileged_userns_clone=0",
            "this kernel allows user namespaces to root only",
            "sysctl -w kernel.unprivileged_userns_clone=1 on the host",
        )
    if _sysctl(ev, paths.APPARMOR_RESTRICT_USERNS) == "1":
        return Verdict(
            "userns",
            False,
            "kernel.apparmor_restrict_unprivileged_userns=1",
            "AppArmor takes every capability from an unprivileged process's new user "
            "namespace (Ubuntu 23.10 and later)",
            "sysctl -w kernel.apparmor_restrict_unprivileged_userns=0 on the host",
        )
    probe = ev.userns
    if probe is None:
        return Verdict("userns", None, f"max {most or 'unknown'}", "not probed")
    if probe == OK:
        return Verdict("userns", True, "allowed", "unshare(CLONE_NEWUSER) as the user works")
    key = NEEDS["seccomp"].key
    if probe == "EPERM" and seccomp_filtered(ev):
        why = (
            "a seccomp filter refuses unshare(CLONE_NEWUSER) (Docker's default allows it, with "
            "mount and pivot_root, only with CAP_SYS_ADMIN)"
        )
        return Verdict("userns", False, f"unshare: {probe}", why, option("seccomp"), key)
    if probe == "EPERM":
        why = "the kernel refuses the user a user namespace"
        return Verdict("userns", False, f"unshare: {probe}", why, option("seccomp"), key)
    why = "the kernel refuses the user a user namespace"
    return Verdict("userns", False, f"unshare: {probe}", why, "see the errno")
