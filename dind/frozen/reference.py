"""Image references: ``[registry[:port]/]path[:tag][@digest]``, normalised as docker does.

Pure text in, data out. The grammar follows distribution's reference package: the
first component is a registry only if it holds a ``.`` or ``:``, is ``localhost`` or
has an upper-case letter; Docker Hub names gain ``library/`` and ``docker.io`` is
the default registry.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from dind.errors import UsageError

DOCKER_HUB = "docker.io"
DOCKER_HUB_ENDPOINT = "https://registry-1.docker.io"
_HUB_ALIASES = ("docker.io", "index.docker.io", "registry-1.docker.io")

# ASCII only, as distribution's grammar says: Python's \w also takes letters and
# digits of any script ("café", "\u0661").
_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_HOST = re.compile(
    r"(?:(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
    r"(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*"
    r"|\[[0-9a-fA-F:]+\])(?::[0-9]{1,5})?"
)
DIGEST_LENGTHS = {"sha256": 64, "sha512": 128}
_MAX_NAME = 255


@dataclass(frozen=True)
class Reference:
    """A parsed reference; ``tag`` is None only when a digest alone was given."""

    registry: str
    repository: str
    tag: str | None
    digest: str | None

    @property
    def familiar_name(self) -> str:
        """The short name docker shows: ``busybox`` for ``docker.io/library/busybox``."""
        if self.registry != DOCKER_HUB:
            return f"{self.registry}/{self.repository}"
        short = self.repository
        if short.startswith("library/") and "/" not in short[len("library/") :]:
            short = short[len("library/") :]  # only one-component names, as docker does
        first, slash, _ = short.partition("/")
        if slash and (first == "localhost" or any(c in first for c in ".:")):
            # Keep the registry when dropping it would make a path component read as one.
            return f"{self.registry}/{self.repository}"
        return short

    @property
    def repo_tag(self) -> str | None:
        """What ``docker save`` would list in RepoTags; None for a digest-only reference."""
        return f"{self.familiar_name}:{self.tag}" if self.tag else None

    def __str__(self) -> str:
        text = self.familiar_name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def valid_host(text: str) -> bool:
    """True for a registry host as the reference grammar has it: ``host[:port]``."""
    return _HOST.fullmatch(text) is not None


def parse_digest(text: str) -> str:
    """Check ``algo:hex`` (sha256 or sha512, lower-case hex) and return it unchanged."""
    algo, sep, hexpart = text.partition(":")
    want = DIGEST_LENGTHS.get(algo)
    if not sep or want is None:
        raise UsageError(f"invalid digest {text!r}: expected sha256:<64 hex digits>")
    if len(hexpart) != want or not re.fullmatch(r"[0-9a-f]+", hexpart):
        raise UsageError(f"invalid digest {text!r}: expected {algo}:<{want} lower-case hex>")
    return text


def parse_reference(text: str) -> Reference:
    """Parse one reference; raises UsageError naming the text and what is wrong."""
    if not text or text != text.strip():
        raise UsageError(f"invalid reference {text!r}: empty or surrounded by spaces")
    rest, at, digest = text.partition("@")
    if at:
        try:
            parse_digest(digest)
        except UsageError as err:
            raise UsageError(f"invalid reference {text!r}: {err}") from None
    name, tag = rest, None
    colon = rest.rfind(":")
    if colon > rest.rfind("/"):
        name, tag = rest[:colon], rest[colon + 1 :]
        if not _TAG.fullmatch(tag):
            raise UsageError(f"invalid reference {text!r}: bad tag {tag!r}")
    registry, path = _split_registry(name, text)
    if registry in _HUB_ALIASES:
        registry = DOCKER_HUB
        if "/" not in path:
            path = f"library/{path}"
    for component in path.split("/"):
        if not _COMPONENT.fullmatch(component):
            raise UsageError(
                f"invalid reference {text!r}: repository name component {component!r} "
                "must be lower-case letters, digits and separators (. _ __ -)"
            )
    if len(registry) + len(path) + 1 > _MAX_NAME:
        raise UsageError(f"invalid reference {text!r}: name longer than {_MAX_NAME} characters")
    if tag is None and not at:
        tag = "latest"
    return Reference(registry, path, tag, digest if at else None)


def parse_repo_tag(text: str) -> Reference:
    """A ``RepoTags`` entry of a ``docker save`` manifest: ``NAME:TAG`` with the tag
    written out and no digest, the only form ``docker load`` accepts."""
    ref = parse_reference(text)
    _name, colon, tag = text.rpartition(":")
    if ref.digest or not colon or "/" in tag:
        raise UsageError(f"invalid tag {text!r}: expected NAME:TAG")
    return ref


def _split_registry(name: str, text: str) -> tuple[str, str]:
    first, slash, remainder = name.partition("/")
    is_registry = slash and (
        any(c in first for c in ".:") or first == "localhost" or first.lower() != first
    )
    if not is_registry:
        return DOCKER_HUB, name
    if not _HOST.fullmatch(first):
        raise UsageError(f"invalid reference {text!r}: bad registry host {first!r}")
    if not remainder:
        raise UsageError(f"invalid reference {text!r}: no repository after {first!r}")
    return first, remainder
