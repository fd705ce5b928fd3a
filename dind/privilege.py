"""The privilege this container runs at: the facts that decide it, and its level. Pure.

From what the one reader read (``dind.facts.Evidence``: /proc/self/status, uid_map,
cap_last_cap, the devices cgroup's list, the mount table, links and probes), a
``Privilege`` of plain facts, then a level:

- **privileged**: every capability the runtime could give, no seccomp filter, /sys and
  /proc/sys writable, every device (``docker run --privileged``);
- **capabilities**: root of the host's user namespace with CAP_SYS_ADMIN, but a
  filter, masked paths or a devices list (``--cap-add SYS_ADMIN ...``);
- **user-namespace**: root here is another user outside (LXC unprivileged, podman
  ``--uidmap``, Kubernetes ``hostUsers: false``);
- **none**: no CAP_SYS_ADMIN: dind cannot mount, a nested dockerd cannot start.

What nested Docker can do at a level is dind.abilities' to say: ``--check``, the
start-up warning and the start-up summary use these two modules alone, so they cannot
disagree. This one is small and on every start's path; a privileged container (today's
common case) needs nothing more, unless dind starts dockerd (the summary names the level).
"""

from __future__ import annotations

from dind import paths, procfs
from dind.namespaces import is_initial, ns_inode
from dind.record import Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Protocol

    from dind.mountinfo import MountTable

    class Evidence(Protocol):
        """What dind.facts.Evidence offers (typed here, so privilege does not know facts)."""

        links: dict[str, str | None]
        probes: dict[str, str | None]

        def text(self, path: str) -> str | None: ...


PRIVILEGED = "privileged"
CAPABILITIES = "capabilities"
USER_NAMESPACE = "user-namespace"
NONE = "none"

READ_ONLY = (paths.PROC_SYS, paths.SYSRQ_TRIGGER, paths.SYS)
"""What a runtime makes read-only for a container that is not privileged."""
NET_NS_INIT = 0xEFFFFFF9
"""The initial network namespace's inode (PROC_NET_INIT_INO); fixed since Linux 6.x, earlier
kernels number it like any other, which then reads as "not the host's"."""
SECCOMP_MODES = {0: "disabled", 1: "strict", 2: "filter"}


class Privilege(Record):
    """The facts that decide privilege, as read (None: unknown)."""

    __slots__ = (
        "bounding",
        "cap_last",
        "cgroup_owner",
        "devices",
        "effective",
        "fuse",
        "keyring",
        "label",
        "masked",
        "net_host",
        "net_owner",
        "no_new_privs",
        "pivot_root",
        "read_only",
        "root_outside",
        "seccomp",
        "seccomp_filters",
        "tun",
        "user_ns",
    )

    def __init__(
        self,
        *,
        effective: tuple[str, ...] | None = None,
        bounding: tuple[str, ...] | None = None,
        cap_last: int | None = None,
        seccomp: int | None = None,
        seccomp_filters: int | None = None,
        no_new_privs: bool | None = None,
        label: str | None = None,
        masked: tuple[str, ...] | None = None,
        read_only: tuple[str, ...] | None = None,
        devices: tuple[str, ...] | None = None,
        user_ns: bool | None = None,
        root_outside: int | None = None,
        net_host: bool | None = None,
        net_owner: str | None = None,
        tun: str | None = None,
        fuse: str | None = None,
        keyring: str | None = None,
        pivot_root: str | None = None,
        cgroup_owner: str | None = None,
    ) -> None:
        self.effective = effective
        self.bounding = bounding
        self.cap_last = cap_last
        self.seccomp = seccomp
        self.seccomp_filters = seccomp_filters
        self.no_new_privs = no_new_privs
        self.label = label
        self.masked = masked
        self.read_only = read_only
        self.devices = devices
        self.user_ns = user_ns
        self.root_outside = root_outside
        self.net_host = net_host
        self.net_owner = net_owner
        self.tun = tun
        self.fuse = fuse
        self.keyring = keyring
        self.pivot_root = pivot_root
        self.cgroup_owner = cgroup_owner

    def has(self, capability: str) -> bool | None:
        return None if self.effective is None else capability in self.effective

    @property
    def all_devices(self) -> bool | None:
        """The devices cgroup lets this container use every device (v1's ``a *:* rwm``)."""
        return None if self.devices is None else "a *:* rwm" in self.devices

    @property
    def kernel_capabilities(self) -> tuple[str, ...] | None:
        """Every capability this kernel has (up to cap_last_cap)."""
        if self.cap_last is None:
            return None
        return tuple(procfs.cap_names((1 << (self.cap_last + 1)) - 1))

    @property
    def unbounded(self) -> tuple[str, ...] | None:
        """Capabilities of the kernel missing from the bounding set."""
        every = self.kernel_capabilities
        if every is None or self.bounding is None:
            return None
        return tuple(c for c in every if c not in self.bounding)

    def to_json(self) -> dict[str, object]:
        return {
            "effective": None if self.effective is None else list(self.effective),
            "bounding": None if self.bounding is None else list(self.bounding),
            "seccomp": None if self.seccomp is None else SECCOMP_MODES.get(self.seccomp),
            "seccomp_filters": self.seccomp_filters,
            "no_new_privs": self.no_new_privs,
            "label": self.label,
            "masked": None if self.masked is None else list(self.masked),
            "read_only": None if self.read_only is None else list(self.read_only),
            "devices": None if self.devices is None else list(self.devices),
            "user_namespace": self.user_ns,
            "root_outside": self.root_outside,
            "net_namespace": {None: None, True: "host", False: "own"}[self.net_host],
            "tun": self.tun,
            "fuse": self.fuse,
            "keyring": self.keyring,
            "pivot_root": self.pivot_root,
            "cgroup_owner": self.cgroup_owner,
        }


def _status_int(fields: dict[str, str], key: str) -> int | None:
    value = fields.get(key, "")
    return int(value) if value.isascii() and value.isdigit() and len(value) < 6 else None


def masked_paths(mounts: MountTable) -> tuple[str, ...]:
    """Paths a runtime hid: a non-proc mount over a /proc entry (a /dev/null bind, an empty
    read-only tmpfs), a read-only tmpfs over a /sys entry (/sys/firmware)."""
    found = []
    for m in mounts.mounts:
        if not mounts.visible(m):
            continue
        if paths.under(m.mountpoint, "/proc") and m.mountpoint != "/proc":
            if m.fstype not in ("proc", "binfmt_misc"):
                found.append(m.mountpoint)
        elif paths.under(m.mountpoint, paths.SYS) and m.fstype == "tmpfs":
            ro = "ro" in m.mount_options.split(",")
            if ro and not paths.under(m.mountpoint, paths.SYS_FS_CGROUP):
                found.append(m.mountpoint)
    return tuple(sorted(set(found)))


def read_only_paths(mounts: MountTable) -> tuple[str, ...]:
    """Of /proc/sys, /proc/sysrq-trigger and /sys, those on a read-only mount."""
    found = []
    for path in READ_ONLY:
        m = mounts.covering(path)
        if m is not None and "ro" in m.mount_options.split(","):
            found.append(path)
    return tuple(found)


def from_evidence(
    ev: Evidence, mounts: MountTable | None, net_owner: str | None = None
) -> Privilege:
    """The facts, parsed from what the reader read (a capture's or the live system's)."""
    status = procfs.status_fields(ev.text(paths.PROC_SELF_STATUS) or "")
    eff = procfs.cap_mask(status.get("CapEff"))
    bnd = procfs.cap_mask(status.get("CapBnd"))
    nnp = _status_int(status, "NoNewPrivs")
    uid_text = ev.text(paths.PROC_SELF_UID_MAP)
    uid_map = None if uid_text is None else procfs.id_map(uid_text)
    user_ns = None
    initial = is_initial("user", ev.links.get("self/user"))
    if initial is None and uid_map is not None:
        initial = uid_map == procfs.FULL_ID_MAP
    if initial is not None:
        user_ns = not initial
    root_outside = None if not uid_map else procfs.outside_id(uid_map, 0)
    number = ns_inode(ev.links.get("self/net"))
    devices_text = ev.text(paths.DEVICES_LIST)
    label = procfs.security_label(ev.text(paths.ATTR_APPARMOR)) or procfs.security_label(
        ev.text(paths.ATTR_CURRENT)
    )
    probes = ev.probes
    return Privilege(
        effective=None if eff is None else tuple(procfs.cap_names(eff)),
        bounding=None if bnd is None else tuple(procfs.cap_names(bnd)),
        cap_last=procfs.cap_last(ev.text(paths.CAP_LAST_CAP)),
        seccomp=_status_int(status, "Seccomp"),
        seccomp_filters=_status_int(status, "Seccomp_filters"),
        no_new_privs=None if nnp is None else nnp == 1,
        label=label,
        masked=None if mounts is None else masked_paths(mounts),
        read_only=None if mounts is None else read_only_paths(mounts),
        devices=None
        if devices_text is None
        else tuple(line.strip() for line in devices_text.splitlines() if line.strip()),
        user_ns=user_ns,
        root_outside=root_outside,
        net_host=None if number is None else number == NET_NS_INIT,
        net_owner=net_owner,
        tun=probes.get(paths.DEV_NET_TUN),
        fuse=probes.get(paths.DEV_FUSE),
        keyring=probes.get("keyring"),
        pivot_root=probes.get("pivot_root"),
        cgroup_owner=probes.get("cgroup_owner"),
    )


def level(p: Privilege) -> tuple[str, str]:
    """The level, and the evidence for it in words."""
    if p.user_ns:
        outside = f"UID {p.root_outside}" if p.root_outside is not None else "another user"
        return USER_NAMESPACE, f"root here is {outside} outside (a user namespace)"
    admin = p.has("CAP_SYS_ADMIN")
    if admin is False:
        return NONE, "no CAP_SYS_ADMIN"
    if admin is None:
        return NONE, "CapEff could not be read"
    marks = []
    if p.seccomp:
        marks.append(f"a seccomp filter ({p.seccomp_filters or 1})")
    if p.read_only:
        marks.append("read-only " + ", ".join(p.read_only))
    if p.masked:
        marks.append(f"{len(p.masked)} masked path(s)")
    if p.all_devices is False:
        marks.append("a devices cgroup that does not allow every device")
    if marks:
        return CAPABILITIES, "CAP_SYS_ADMIN, but " + "; ".join(marks)
    user = "" if p.user_ns is False else " (user namespace unknown)"
    return PRIVILEGED, f"CAP_SYS_ADMIN, no seccomp filter, nothing masked or read-only{user}"
