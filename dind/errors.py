"""Typed errors raised by the library; only ``dind.main`` turns them into exit codes."""

from __future__ import annotations


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
        shown = f": {text[:80]!r}" if text else ""
        super().__init__(f"{where}: {reason}{shown}")


class SetupError(DindError):
    """A step of the set-up failed (exit status 125).

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
