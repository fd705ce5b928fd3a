"""Where content comes from: mirrors in the order given, then the origin.

Content named by a digest (a manifest pinned by digest, every blob) is asked of
each mirror in turn, then of the image's own registry (``--registry`` or the one in
its name). A mirror gets one attempt per object: down, slow past ``--timeout``, a
404 or 5xx, a cut connection, all just pass the object on to the next source; the
origin gets the retries. A mirror that serves bytes that do not match their
digest is distrusted for the rest of the run (one warning naming it) and what it
sent is thrown away. Tags name no digest, so only the origin answers them, unless
``--mirror-tags`` says mirrors may.

``Tally`` is the run's record of both: which mirrors lied, and how many bytes each
source delivered (the summary line shows it).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlsplit

from dind.errors import UsageError
from dind.frozen.errors import FreezeError, StoreError, printable
from dind.frozen.reference import valid_host
from dind.frozen.registry import Cancelled, Registry
from dind.log import Log

T = TypeVar("T")


class Lie(FreezeError):
    """A mirror sent content that does not match its digest (or more bytes than its size)."""


def parse_mirror(text: str, insecure: bool) -> str:
    """``--mirror`` text as a base URL (``scheme://host[:port][/prefix]``, no trailing ``/``).

    Without a scheme, https (http with ``--insecure``), as ``--registry``; plain http
    needs ``--insecure``. Credentials, queries and fragments have no place in it.
    """
    where = f"invalid --mirror {printable(text)!r}"
    raw = text.strip()
    if not raw or any(c.isspace() for c in raw):
        raise UsageError(f"{where}: expected a URL such as https://mirror.example:5000")
    if "://" not in raw:
        raw = f"{'http' if insecure else 'https'}://{raw}"
    try:
        url = urlsplit(raw)
        port = url.port
    except ValueError as err:
        raise UsageError(f"{where}: {err}") from None
    if url.scheme not in ("http", "https"):
        raise UsageError(f"{where}: the scheme must be http or https")
    if url.username is not None or url.password is not None:
        raise UsageError(f"{where}: no credentials in the URL (use --auth-file)")
    if url.query or url.fragment or raw.endswith(("?", "#")):
        raise UsageError(f"{where}: no query or fragment in the URL")
    host = url.netloc
    if not host or not valid_host(host) or port == 0:
        raise UsageError(f"{where}: bad host {printable(host)!r}")
    path = url.path.rstrip("/")
    if any(part in (".", "..") for part in path.split("/")):
        raise UsageError(f"{where}: '.' or '..' in the path")
    if url.scheme == "http" and not insecure:
        raise UsageError(f"{where}: plain HTTP needs --insecure")
    return f"{url.scheme}://{host}{path}"


def parse_mirrors(texts: Iterable[str], insecure: bool) -> list[str]:
    """Every ``--mirror`` (and ``DIND_FROZEN_MIRRORS`` word), in order, each once."""
    found: list[str] = []
    for text in texts:
        for word in text.split():
            url = parse_mirror(word, insecure)
            if url not in found:
                found.append(url)
    return found


@dataclass(frozen=True)
class Source:
    """A registry endpoint in a role: a mirror (one attempt, checked) or the origin."""

    registry: Registry
    mirror: bool

    @property
    def name(self) -> str:
        return self.registry.endpoint

    @property
    def tag(self) -> str:
        """A short stable id, for the names of partial files (a partial body is only ever
        resumed from the source that sent its first bytes)."""
        return hashlib.sha256(self.name.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Sources:
    """The sources for one image, in the order they are asked."""

    origin: Source
    mirrors: tuple[Source, ...] = ()
    mirror_tags: bool = False

    def for_digest(self) -> tuple[Source, ...]:
        return (*self.mirrors, self.origin)

    def for_tag(self) -> tuple[Source, ...]:
        return self.for_digest() if self.mirror_tags else (self.origin,)


class Tally:
    """Run-wide: the mirrors distrusted (and why), the bytes each source delivered."""

    def __init__(self, log: Log) -> None:
        self.log = log
        self.distrusted: dict[str, str] = {}
        self.received: dict[str, int] = {}
        self._lock = threading.Lock()

    def trusted(self, source: Source) -> bool:
        with self._lock:
            return source.name not in self.distrusted

    def distrust(self, source: Source, why: str) -> None:
        """Stop using a mirror for this run; the first reason is the one warning shown."""
        with self._lock:
            first = source.name not in self.distrusted
            self.distrusted.setdefault(source.name, why)
        if first:
            self.log.warning(
                f"mirror {source.name} is not used for the rest of this run: {why}",
                mirror=source.name,
            )

    def add(self, source: Source, nbytes: int) -> None:
        with self._lock:
            self.received[source.name] = self.received.get(source.name, 0) + nbytes


def first_answer(
    sources: Iterable[Source], tally: Tally, what: str, fetch: Callable[[Source], T]
) -> tuple[T, Source]:
    """``fetch(source)`` for each trusted source in turn until one answers.

    A mirror's failure passes to the next source (said at ``-v``); its ``Lie``
    distrusts it. The origin's failure is the caller's. Cancellation and local disk
    errors are never a source's fault: they stop at once.
    """
    for source in sources:
        if source.mirror and not tally.trusted(source):
            continue
        try:
            return fetch(source), source
        except (Cancelled, StoreError):
            raise
        except Lie as err:
            if not source.mirror:
                raise
            tally.distrust(source, str(err))
        except FreezeError as err:
            if not source.mirror:
                raise
            tally.log.debug(f"{what}: mirror {source.name} skipped: {err}", mirror=source.name)
    raise AssertionError("the origin is always the last source")
