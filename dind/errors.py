"""Typed errors raised by the library; only ``dind.main`` turns them into exit codes.

An error is one line on stderr whatever the value it quotes: ``shown`` and
``printable`` escape control characters and undecodable bytes, and cut a hostile
100 KB value to a few dozen characters saying how long it was; ``clipped`` cuts a
library's reason at a word.
"""

from __future__ import annotations

SHOWN = 120
"""Characters of a value quoted in an error; the rest is counted, not echoed."""


def control(char: str) -> bool:
    """A control character: C0, DEL, C1, or a Unicode line or paragraph separator."""
    code = ord(char)
    return code < 0x20 or 0x7F <= code < 0xA0 or code in (0x2028, 0x2029)


def _escaped(text: str, limit: int | None, quote: str = "") -> tuple[str, bool]:
    """``text`` with what is not printable escaped as ``repr`` escapes it (and, for a
    quoted form, ``quote`` and backslashes), at most ``limit`` characters of output;
    whether it was cut. One character may escape to ten (``\\U0010ffff``). Without a
    quote, escaping twice changes nothing more."""
    out: list[str] = []
    size = 0
    special = (quote, "\\") if quote else ()
    for char in text:
        if char in special:
            piece = "\\" + char
        elif char.isprintable():
            piece = char
        else:
            piece = repr(char)[1:-1]
        size += len(piece)
        if limit is not None and size > limit:
            return "".join(out), True
        out.append(piece)
    return "".join(out), False


def printable(text: str, limit: int | None = SHOWN) -> str:
    """``text`` on one line: characters that are not printable (newlines, escapes,
    bytes that were not UTF-8) escaped as ``repr`` escapes them; cut after ``limit``
    characters of output (None: never), its length said."""
    out, cut = _escaped(text, limit)
    return f"{out}... ({len(text)} characters)" if cut else out


def shown(value: str, limit: int = SHOWN) -> str:
    """``value`` quoted for an error line (``'...'``), escaped and cut as ``printable``."""
    out, cut = _escaped(value, limit, "'")
    return f"'{out}'... ({len(value)} characters)" if cut else f"'{out}'"


def clipped(reason: str, limit: int = SHOWN) -> str:
    """The first line of a library's message, cut at a word when longer than ``limit``."""
    line = printable(reason.splitlines()[0] if reason.strip() else reason, len(reason))
    if len(line) <= limit:
        return line
    cut = line[:limit].rsplit(" ", 1)[0] if " " in line[:limit] else line[:limit]
    return cut.rstrip(" ,;:") + "..."


class DindError(Exception):
    """Base of every error dind reports as one line on stderr."""


class UsageError(DindError):
    """Bad options or environment variables (exit status 2)."""


class ParseError(DindError):
    """A /proc file (or a capture of one) that does not parse; names file and line."""

    def __init__(self, source: str, lineno: int, reason: str, text: str = "") -> None:
        self.source = source
        self.lineno = lineno
        self.reason = reason
        self.text = text
        where = f"{source}:{lineno}" if lineno else source
        quoted = f": {shown(text, 80)}" if text else ""
        super().__init__(f"{where}: {reason}{quoted}")


SETUP_FAILED = 125
"""dind's own failure: its set-up, starting the daemon as its user, or writing the plan or
report it was asked for."""


class SetupError(DindError):
    """A step of the set-up failed (exit status ``SETUP_FAILED``).

    ``errno`` is that of the failed system call, if any, so JSON logs can carry it.
    """

    def __init__(self, message: str, *, step: str = "", errno: int | None = None) -> None:
        self.step = step
        self.errno = errno
        super().__init__(message)


class CommandError(DindError):
    """The command cannot be executed: 127 when not found, 126 otherwise."""

    def __init__(self, message: str, status: int, errno: int | None = None) -> None:
        self.status = status
        self.errno = errno
        super().__init__(message)


class EarlyExit(Exception):
    """The command line asked for something that ends the run (``--help``, ``--version``)."""

    def __init__(self, status: int) -> None:
        self.status = status
        super().__init__(status)
