"""Host addresses and names: what a server certificate names, and what DOCKER_HOST may say.

Pure parsers over the kernel's own files (``/proc/net/fib_trie``,
``/proc/net/if_inet6``, ``/etc/hostname``) and thin readers around them; never a
DNS lookup (``hostname -f`` may hang at start without a resolver), never ``ip``.
The tls step signs these names into the server certificate; ``--ready`` holds a
``tcp://`` DOCKER_HOST to the same rules.
"""

from __future__ import annotations

import re
import socket

from dind.errors import UsageError, control, shown
from dind.procfile import try_read

MAX_PROC = 8 << 20
IFA_F_DADFAILED = 0x08

_SEPARATORS = re.compile(r"[\s,]+")
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\Z", re.IGNORECASE)


# --- SANs: pure -----------------------------------------------------------------------


def parse_sans(text: str, origin: str = "DOCKER_TLS_SAN") -> list[str]:
    """``"IP:10.0.0.1 example.com"`` → ``["IP:10.0.0.1", "DNS:example.com"]``, in order, unique.

    Words are separated by spaces or commas (docker:dind joins the variable into
    openssl's comma-separated list, so both work there). ``IP:`` and ``DNS:``
    prefixes are accepted; a bare word that parses as an address is an IP SAN, any
    other a DNS name. Garbage is a UsageError naming ``origin`` and the word.
    """
    found: list[str] = []
    for word in _SEPARATORS.split(text):
        if word:
            san = one_san(word, origin)
            if san not in found:
                found.append(san)
    return found


def server_sans(addresses: list[str], hostnames: list[str], extra: list[str]) -> list[str]:
    """The server certificate's SANs, sorted and unique: docker:dind's list.

    Every interface address, every hostname that is a valid DNS name (others cannot
    be SANs and are left out), ``docker``, ``localhost``, and ``extra`` (from
    ``parse_sans``).
    """
    found = {"DNS:docker", "DNS:localhost"}
    for address in addresses:
        found.add(one_san(f"IP:{address}", "interface address"))
    for name in hostnames:
        if dns_problem(name) is None:
            found.add(f"DNS:{name.lower()}")
    for san in extra:
        found.add(one_san(san, "DOCKER_TLS_SAN"))
    return sorted(found)


def one_san(word: str, origin: str) -> str:
    """One word as a normalised ``IP:``/``DNS:`` SAN, or a UsageError."""
    bad = next((c for c in word if control(c)), None)
    if bad is not None:
        raise UsageError(f"{origin}: {shown(word)}: control character {bad!r}")
    prefix, colon, value = word.partition(":")
    kind = prefix.upper() if colon else ""
    if kind == "IP":
        address = canonical_ip(value)
        if address is None:
            raise UsageError(
                f"{origin}: {shown(word)}: {shown(value)} is not an IPv4 or IPv6 address"
            )
        return f"IP:{address}"
    if kind == "DNS":
        return f"DNS:{_dns(value, word, origin)}"
    address = canonical_ip(word)
    if address is not None:
        return f"IP:{address}"
    if all(label.isdigit() for label in word.split(".")):
        raise UsageError(f"{origin}: {shown(word)}: not a valid IPv4 address")
    if colon:
        raise UsageError(
            f"{origin}: {shown(word)}: not an IP address;"
            " the SAN prefixes accepted are IP: and DNS:"
        )
    return f"DNS:{_dns(word, word, origin)}"


def canonical_ip(text: str) -> str | None:
    """The canonical form of an IPv4 or IPv6 address (inet_pton's strict rules), else None."""
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            return socket.inet_ntop(family, socket.inet_pton(family, text))
        except (OSError, ValueError):
            continue
    return None


def _dns(name: str, word: str, origin: str) -> str:
    problem = dns_problem(name)
    if problem is not None:
        raise UsageError(f"{origin}: {shown(word)}: {problem}")
    return name.lower()


def dns_problem(name: str) -> str | None:
    """Why ``name`` cannot be a DNS SAN (None if it can). ``*`` only as the leftmost label.

    Underscores are accepted: compose service names have them, and Go matches them.
    """
    if not name:
        return "empty DNS name"
    if not name.isascii():
        return "not ASCII; give an internationalised name in its IDNA form (xn--...)"
    if len(name) > 253:
        return "DNS name longer than 253 characters"
    labels = name.split(".")
    if labels[-1] == "":
        return "DNS name ends with a dot; give it without"
    for i, label in enumerate(labels):
        if label == "*" and i == 0 and len(labels) > 1:
            continue
        if not _LABEL.match(label):
            return (
                f"DNS label {shown(label)} is not 1 to 63 letters, digits, '-' or '_'"
                " (no '-' at either end)"
            )
    if labels[-1].isdigit():
        return "a numeric last label is not a DNS name (an IP address? give IP:...)"
    return None


# --- Addresses and hostnames: pure parsers, thin readers --------------------------------


def parse_fib_trie_local(text: str) -> list[str]:
    """IPv4 addresses of the namespace's interfaces, from ``/proc/net/fib_trie``.

    An address of this host is a trie leaf (``|-- 10.0.0.5``) with a ``/32 host LOCAL``
    route; other leaves are networks and broadcast addresses. Main and Local tables
    both list them: each address once, in the file's order. Lines not understood are
    skipped (the collection is best effort; the kernel's format is fixed).
    """
    found: list[str] = []
    leaf: str | None = None
    for line in text.splitlines():
        word = line.strip()
        if word.startswith("|-- "):
            leaf = word[4:].strip()
        elif word.startswith("+-- ") or word.endswith(":"):
            leaf = None
        elif leaf is not None and word.startswith("/"):
            fields = word.split()
            if fields[0] == "/32" and len(fields) > 2 and fields[2] == "LOCAL":
                address = _ipv4(leaf)
                if address is not None and address not in found:
                    found.append(address)
    return found


def _ipv4(text: str) -> str | None:
    try:
        return socket.inet_ntop(socket.AF_INET, socket.inet_pton(socket.AF_INET, text))
    except (OSError, ValueError):
        return None


def parse_if_inet6(text: str) -> list[str]:
    """IPv6 addresses from ``/proc/net/if_inet6`` (hex address, index, plen, scope, flags, name).

    Tentative addresses count (``ip addr`` shows them); those whose duplicate address
    detection failed do not (the kernel will never use them).
    """
    found: list[str] = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 6 or len(fields[0]) != 32:
            continue
        try:
            packed = bytes.fromhex(fields[0])
            flags = int(fields[4], 16)
        except ValueError:
            continue
        address = socket.inet_ntop(socket.AF_INET6, packed)
        if not flags & IFA_F_DADFAILED and address not in found:
            found.append(address)
    return found


def interface_addresses() -> list[str]:
    """Every IPv4 then IPv6 address of this network namespace's interfaces, without ``ip``.

    A missing file (no IPv6, /proc not mounted) gives no addresses of that family.
    """
    fib, _ = try_read("/proc/net/fib_trie", MAX_PROC)
    inet6, _ = try_read("/proc/net/if_inet6", MAX_PROC)
    return parse_fib_trie_local(fib or "") + parse_if_inet6(inet6 or "")


def parse_hostname_file(text: str) -> str:
    """The name in an ``/etc/hostname`` text: its first line that is not a comment."""
    for line in text.splitlines():
        name = line.strip()
        if name and not name.startswith("#"):
            return name
    return ""


def hostnames() -> list[str]:
    """This host's names, lower case: ``gethostname()``, ``/etc/hostname``, their short forms.

    Never a DNS lookup (``hostname -f`` may hang at start without a resolver);
    names that are not valid DNS names are left out.
    """
    candidates = [socket.gethostname()]
    text, _ = try_read("/etc/hostname", 65536)
    if text:
        candidates.append(parse_hostname_file(text))
    found: list[str] = []
    for candidate in candidates:
        for name in (candidate, candidate.split(".", 1)[0]):
            lowered = name.lower()
            if dns_problem(lowered) is None and lowered not in found:
                found.append(lowered)
    return found
