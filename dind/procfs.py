"""Pure parsers for the small /proc and /sys files dind reads: text in, values out.

mountinfo and /proc/PID/cgroup have their own modules (``dind.mountinfo``,
``dind.proccgroup``); these are the rest, each a few lines of the kernel's format.
Malformed input gives "unknown" (None), never an exception: a report must still
be printed when one file is odd.
"""

from __future__ import annotations

CAPABILITIES = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
)
"""Capability names by bit number (include/uapi/linux/capability.h, up to CAP_LAST_CAP 40)."""

FULL_ID_MAP = [(0, 0, 4294967295)]
"""uid_map of the initial user namespace: every ID maps to itself."""


def status_fields(text: str) -> dict[str, str]:
    """``/proc/PID/status`` as ``{"CapEff": "000001ff...", "NSpid": "1 42", ...}``."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    return fields


MASK_BITS = 64
"""The kernel prints capability sets as 64-bit masks (16 hex digits)."""
_HEX = frozenset("0123456789abcdefABCDEF")


def cap_mask(value: str | None) -> int | None:
    """A ``CapEff``-style 64-bit hexadecimal mask; None if absent, not hex, or too long."""
    if not value or len(value) > MASK_BITS // 4 or not _HEX.issuperset(value):
        return None
    return int(value, 16)


def cap_names(mask: int) -> list[str]:
    """Names of the bits set in ``mask`` (64 at most); bits past CAP_LAST_CAP are ``cap_N``,
    as libcap prints them."""
    return [
        CAPABILITIES[bit] if bit < len(CAPABILITIES) else f"cap_{bit}"
        for bit in range(MASK_BITS)
        if mask >> bit & 1
    ]


def cap_last(text: str | None) -> int | None:
    """/proc/sys/kernel/cap_last_cap: a bit number below 64, else unknown."""
    value = (text or "").strip()
    if not value.isascii() or not value.isdigit() or len(value) > 2 or int(value) >= MASK_BITS:
        return None
    return int(value)


def has_cap(mask: int | None, name: str) -> bool | None:
    if mask is None:
        return None
    return bool(mask >> CAPABILITIES.index(name) & 1)


ID_MAP_LINES = 340
"""The kernel's limit of lines in an ID map (since 4.15)."""


def id_map(text: str) -> list[tuple[int, int, int]] | None:
    """``/proc/PID/uid_map`` lines as (inside, outside, count); None if malformed."""
    entries = []
    for line in text.splitlines():
        words = line.split()
        if not words:
            continue
        if len(words) != 3 or not all(w.isascii() and w.isdigit() and len(w) <= 10 for w in words):
            return None
        entries.append((int(words[0]), int(words[1]), int(words[2])))
        if len(entries) > ID_MAP_LINES:
            return None
    return entries


def outside_id(entries: list[tuple[int, int, int]], inside: int) -> int | None:
    """The ID that ``inside`` stands for in the parent user namespace; None if unmapped."""
    for first, lower, count in entries:
        if first <= inside < first + count:
            return lower + inside - first
    return None


def words(text: str | None) -> list[str]:
    """Whitespace-separated words (cgroup.controllers, ip_tables_names...); [] for None."""
    return text.split() if text else []


def loaded_modules(text: str) -> set[str]:
    """Module names from /proc/modules (first field of each line)."""
    return {line.split()[0] for line in text.splitlines() if line.split()}


def listed_modules(text: str) -> set[str]:
    """Module names in modules.builtin / modules.dep (``kernel/.../nf_tables.ko.xz: deps``)."""
    names = set()
    for line in text.splitlines():
        path = line.split(":", 1)[0].strip()
        if not path:
            continue
        base = path.rsplit("/", 1)[-1]
        names.add(base.split(".ko", 1)[0].replace("-", "_"))
    return names


def kernel_config(text: str) -> dict[str, str]:
    """Kernel config lines as ``{"CONFIG_NF_TABLES": "y", "CONFIG_MODULES": "n"}``.

    ``# CONFIG_X is not set`` becomes ``"n"``; string values keep their quotes off.
    """
    config: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("# CONFIG_") and line.endswith(" is not set"):
            config[line[2:].split()[0]] = "n"
        elif line.startswith("CONFIG_") and "=" in line:
            key, value = line.split("=", 1)
            config[key] = value.strip('"')
    return config


def filesystems(text: str) -> set[str]:
    """Filesystem types from /proc/filesystems (``nodev\\tcgroup2`` or ``\\text4``)."""
    return {line.split()[-1] for line in text.splitlines() if line.split()}


def security_label(text: str | None) -> str | None:
    """The label in /proc/self/attr/current, without the trailing NUL or newline."""
    if text is None:
        return None
    label = text.replace("\0", "").strip()
    return label or None
