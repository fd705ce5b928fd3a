"""The MTU nested containers need: that of the interface the default route leaves by.

Behind a smaller MTU (Kubernetes overlays, GitLab's hosted runners at 1360,
Calico at 1440), nested containers default to 1500 and large transfers hang
silently (TLS handshakes and downloads). dockerd's ``--mtu`` sets docker0; user
networks need ``default-network-opt`` (Docker 24 and later). Pure.
"""

from __future__ import annotations

DEFAULT = 1500
RTF_UP = 0x1
NETWORK_OPTS_SINCE = (24, 0)
"""dockerd's ``--default-network-opt`` (daemon.json ``default-network-opts``)."""


def default_interface(route_text: str | None) -> str | None:
    """The interface of the IPv4 default route in /proc/net/route (lowest metric), if any."""
    best: tuple[int, str] | None = None
    for line in (route_text or "").splitlines()[1:]:
        fields = line.split()
        if len(fields) < 8:
            continue
        iface, destination, _gateway, flags, _ref, _use, metric, mask = fields[:8]
        try:
            up = int(flags, 16) & RTF_UP
            rank = int(metric)
        except ValueError:
            continue
        default = destination == "00000000" and mask == "00000000" and up
        if default and (best is None or rank < best[0]):
            best = (rank, iface)
    return None if best is None else best[1]


def version(text: str | None) -> tuple[int, int] | None:
    """``Docker version 20.10.24+dfsg1, build 297e128`` → (20, 10)."""
    words = (text or "").replace(",", " ").split()
    if "version" not in words:
        return None
    number = words[words.index("version") + 1] if words[-1] != "version" else ""
    if not number.isascii():
        return None
    parts = number.split(".")
    if len(parts) < 2 or not parts[0].isdigit():
        return None
    minor = "".join(c for c in parts[1] if c.isdigit()) or "0"
    return int(parts[0]), int(minor)
