"""Secrets this run holds, and the one filter that keeps them out of every line it prints.

Passwords, ``Authorization`` header values, identity tokens and the Bearer tokens
registries hand out are registered here as soon as they are read or received.
``cli`` sends every log record (text or JSON, messages and fields) through
``redact``, so a secret that a registry, a token server or a credential helper
echoes back in an error message is still never shown.
"""

from __future__ import annotations

import threading

MASK = "[redacted]"

_lock = threading.Lock()
_secrets: set[str] = set()


def forget() -> None:
    """Start a run with no secrets (one run per process; tests run several in one)."""
    with _lock:
        _secrets.clear()


def register(*values: str) -> None:
    """Remember secrets to mask (empty strings are ignored)."""
    with _lock:
        _secrets.update(v for v in values if v)


def redact(text: str) -> str:
    """``text`` with every registered secret replaced by ``[redacted]``, longest first
    (so a password inside a longer header value does not leave the rest visible)."""
    with _lock:
        found = [s for s in _secrets if s in text]
    for secret in sorted(found, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def redact_value(value: object) -> object:
    """A log field with secrets masked (strings, and strings inside lists and dicts)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list | tuple):
        return [redact_value(v) for v in value]
    if isinstance(value, dict):
        return {redact(str(k)): redact_value(v) for k, v in value.items()}
    return value
