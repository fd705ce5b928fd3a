"""Reading /proc files (or captures of them) into text the parsers accept.

Reads are bounded: a hostile or broken file must give an error, not exhaust memory.
Bytes that are not UTF-8 survive as surrogate escapes, so paths round-trip exactly.
"""

from __future__ import annotations

import errno
import os

from dind.errors import ParseError, SetupError

MAX_LINE = 65536
"""Longest line accepted; real lines stay below two PATH_MAX plus options."""


def read_text(path: str, limit: int, what: str) -> str:
    """Return the file's text; a missing /proc or an oversized file is a SetupError/ParseError."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as err:
        hint = ""
        if err.errno == errno.ENOENT and path.startswith("/proc/"):
            hint = " (is /proc mounted in this container?)"
        raise SetupError(
            f"cannot read {what} {path}: {os.strerror(err.errno or 0)}{hint}",
            errno=err.errno,
        ) from None
    try:
        chunks: list[bytes] = []
        size = 0
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            size += len(chunk)
            if size > limit:
                raise ParseError(path, 0, f"larger than {limit} bytes; not a {what}")
            chunks.append(chunk)
    except OSError as err:
        raise SetupError(
            f"cannot read {what} {path}: {os.strerror(err.errno or 0)}", errno=err.errno
        ) from None
    finally:
        os.close(fd)
    return b"".join(chunks).decode("utf-8", "surrogateescape")


def lines(text: str, source: str) -> list[tuple[int, str]]:
    """Split into numbered lines, rejecting what no kernel writes (NUL, huge lines, no text)."""
    if not text.strip():
        raise ParseError(source, 0, "empty file")
    numbered: list[tuple[int, str]] = []
    for lineno, line in enumerate(text.split("\n"), 1):
        if len(line) > MAX_LINE:
            raise ParseError(source, lineno, f"line longer than {MAX_LINE} bytes")
        if "\0" in line:
            raise ParseError(source, lineno, "NUL byte (binary data?)", line)
        if line:
            numbered.append((lineno, line))
    return numbered
