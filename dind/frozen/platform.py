"""Platforms (``os/arch[/variant]``): parsing, the machine's own, and matching.

Normalised as containerd does, so an index entry ``linux/arm64/v8`` matches a
request for ``linux/arm64`` and ``x86_64`` means ``amd64``.
"""

from __future__ import annotations

import platform as _platform
from dataclasses import dataclass

from dind.errors import UsageError

_ARCH_ALIASES = {
    "x86_64": "amd64",
    "x86-64": "amd64",
    "aarch64": "arm64",
    "i386": "386",
    "i686": "386",
    "armhf": "arm",
    "armel": "arm",
}
_MACHINE_ARCH = {
    "x86_64": ("amd64", ""),
    "amd64": ("amd64", ""),
    "aarch64": ("arm64", ""),
    "arm64": ("arm64", ""),
    "armv7l": ("arm", "v7"),
    "armv6l": ("arm", "v6"),
    "armv5tel": ("arm", "v5"),
    "i386": ("386", ""),
    "i686": ("386", ""),
    "ppc64le": ("ppc64le", ""),
    "s390x": ("s390x", ""),
    "riscv64": ("riscv64", ""),
}


@dataclass(frozen=True)
class Platform:
    """A normalised platform; an empty variant means 'the architecture's default'."""

    os: str
    architecture: str
    variant: str = ""

    def __str__(self) -> str:
        text = f"{self.os}/{self.architecture}"
        return f"{text}/{self.variant}" if self.variant else text

    def matches(self, other: Platform) -> bool:
        """True if an image built for ``other`` is what a request for ``self`` wants."""
        return (self.os, self.architecture, self.variant) == (
            other.os,
            other.architecture,
            other.variant,
        )


def normalize(os_name: str, arch: str, variant: str = "") -> Platform:
    """Lower-case, map aliases, and drop variants that only name the default."""
    os_name = os_name.lower()
    arch = _ARCH_ALIASES.get(arch.lower(), arch.lower())
    variant = variant.lower()
    if (arch, variant) in (("arm64", "v8"), ("amd64", "v1")):
        variant = ""
    elif arch == "arm" and not variant:
        variant = "v7"
    elif arch == "arm" and variant in ("5", "6", "7", "8"):
        variant = f"v{variant}"
    return Platform(os_name, arch, variant)


def parse_platform(text: str) -> Platform:
    """Parse ``--platform`` text: ``os/arch`` or ``os/arch/variant``."""
    parts = text.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise UsageError(f"invalid platform {text!r}: expected OS/ARCH[/VARIANT]")
    return normalize(*parts)


def host_platform(machine: str | None = None) -> Platform:
    """The platform this machine runs (Linux is assumed: that is what docker runs)."""
    machine = machine or _platform.machine()
    arch, variant = _MACHINE_ARCH.get(machine.lower(), (machine.lower(), ""))
    return normalize("linux", arch, variant)
