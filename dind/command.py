"""Executing the user's command with execvp semantics and shell-like exit codes."""

from __future__ import annotations

import errno
import os

from dind.errors import CommandError

NOT_FOUND = 127
NOT_EXECUTABLE = 126


def command_error(program: str, err: OSError) -> CommandError:
    """Map a failed exec to the error a shell would report (127 not found, 126 otherwise)."""
    code = err.errno or 0
    if code in (errno.ENOENT, errno.ENOTDIR):
        return CommandError(f"{program}: command not found", NOT_FOUND, code)
    reason = os.strerror(code) if code else str(err)
    return CommandError(f"{program}: cannot execute: {reason}", NOT_EXECUTABLE, code)


def _restore_default_signals() -> None:
    """Undo Python's start-up SIG_IGN of SIGPIPE and SIGXFSZ: an ignored signal survives exec.

    ``_signal`` is the C module behind ``signal``; the wrapper would cost an ``enum``
    import at every container start.
    """
    import _signal  # type: ignore[import-not-found,unused-ignore]

    for signum in (_signal.SIGPIPE, _signal.SIGXFSZ):
        _signal.signal(signum, _signal.SIG_DFL)


def exec_command(argv: list[str]) -> None:
    """Replace this process with ``argv`` (PATH lookup); raises CommandError on failure.

    Arguments go through ``os.fsencode`` so bytes that are not valid UTF-8 reach the
    command unchanged.
    """
    if not argv[0]:
        raise CommandError("'': command not found", NOT_FOUND, errno.ENOENT)
    args = [os.fsencode(a) for a in argv]
    _restore_default_signals()
    try:
        os.execvp(args[0], args)
    except OSError as err:
        raise command_error(argv[0], err) from None
