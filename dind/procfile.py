"""Reading /proc files (or captures of them) into text the parsers accept.

Reads are bounded, and only regular files are read (procfs files are regular
files too): a FIFO, a device or a huge file given as a capture must give an
error, not block forever or exhaust memory. Bytes that are not UTF-8 survive as
surrogate escapes, so paths round-trip exactly.
"""

from __future__ import annotations

import errno
import os
import stat

from dind.errors import ParseError, SetupError

MAX_LINE = 65536
"""Longest line accepted; real lines stay below two PATH_MAX plus options."""
TOO_LARGE = "EFBIG"
NOT_REGULAR = "not-regular"


def try_read(path: str, limit: int) -> tuple[str | None, str | None]:
    """(text, None), or (None, why): an errno name, ``EFBIG`` or ``not-regular``.

    Opened non-blocking (a FIFO would otherwise block the open itself) and read in
    64 KiB chunks: /proc/sys files answer ENOMEM to one huge read(2).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as err:
        return None, errno.errorcode.get(err.errno or 0, "EIO")
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None, NOT_REGULAR
        chunks: list[bytes] = []
        size = 0
        while chunk := os.read(fd, 65536):
            size += len(chunk)
            if size > limit:
                return None, TOO_LARGE
            chunks.append(chunk)
    except OSError as err:
        return None, errno.errorcode.get(err.errno or 0, "EIO")
    finally:
        os.close(fd)
    return b"".join(chunks).decode("utf-8", "surrogateescape"), None


def unreadable(path: str, why: str, what: str, limit: int = 0) -> SetupError | ParseError:
    """The error a real run stops with when ``path`` could not be read (see ``try_read``)."""
    if why == TOO_LARGE:
        return ParseError(path, 0, f"larger than {limit} bytes; not a {what}")
    if why == NOT_REGULAR:
        return ParseError(path, 0, f"not a regular file; not a {what}")
    code = getattr(errno, why, 0)
    hint = ""
    if code == errno.ENOENT and path.startswith("/proc/"):
        hint = " (is /proc mounted in this container?)"
    reason = os.strerror(code) if code else why
    return SetupError(f"cannot read {what} {path}: {reason}{hint}", errno=code or None)


def read_text(path: str, limit: int, what: str) -> str:
    """The file's text; a SetupError or ParseError saying why it could not be read."""
    text, why = try_read(path, limit)
    if text is None:
        raise unreadable(path, why or "EIO", what, limit)
    return text


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
