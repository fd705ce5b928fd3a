"""Registry token auth: parse ``WWW-Authenticate`` challenges, hold anonymous tokens.

The flow of the distribution spec: a request answered 401 with
``Bearer realm=...,service=...,scope=...`` sends us to ``realm`` for a token
(anonymous here: frozen images are public pulls), which then goes in
``Authorization: Bearer`` on every request for that repository.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass

_PARAM = re.compile(r'\s*([A-Za-z][\w-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,"]+))\s*,?')


@dataclass(frozen=True)
class Challenge:
    """One ``WWW-Authenticate`` challenge: scheme (lower-case) and its parameters."""

    scheme: str
    params: dict[str, str]


def parse_challenge(header: str) -> Challenge:
    """Parse the first challenge of a header; unknown or empty text gives scheme ''."""
    scheme, _, rest = header.strip().partition(" ")
    params: dict[str, str] = {}
    pos = 0
    while pos < len(rest):
        match = _PARAM.match(rest, pos)
        if not match:
            break
        value = match.group(2)
        value = re.sub(r"\\(.)", r"\1", value) if value is not None else match.group(3)
        params[match.group(1).lower()] = value
        pos = match.end()
    return Challenge(scheme.lower(), params)


def pull_scope(repository: str) -> str:
    """The token scope for pulling one repository."""
    return f"repository:{repository}:pull"


@dataclass
class _Token:
    value: str
    expires: float


class TokenCache:
    """Bearer tokens by scope, shared by the download threads.

    A token is dropped shortly before it expires (``expires_in``, default 60 s as
    the spec says), so long runs fetch a new one instead of failing with 401.
    """

    def __init__(self) -> None:
        self._tokens: dict[str, _Token] = {}
        self._lock = threading.Lock()

    def get(self, scope: str) -> str | None:
        with self._lock:
            token = self._tokens.get(scope)
            if token is None or token.expires <= time.monotonic():
                return None
            return token.value

    def put(self, scope: str, value: str, expires_in: float) -> None:
        lifetime = max(expires_in, 60.0) - 10.0
        with self._lock:
            self._tokens[scope] = _Token(value, time.monotonic() + lifetime)

    def drop(self, scope: str, value: str | None) -> None:
        """Forget a token the registry refused (only that one, if another thread renewed)."""
        with self._lock:
            token = self._tokens.get(scope)
            if token is not None and token.value == value:
                del self._tokens[scope]
