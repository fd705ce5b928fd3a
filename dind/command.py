"""Executing the user's command with execvp(3) semantics and a shell's exit codes.

Python's ``os.execvp`` is not execvp(3): a file without ``#!`` (ENOEXEC) is not
run with /bin/sh, and a script whose interpreter is missing reads as "not
found". The PATH search is done here, the way glibc does it, so each failure can
be named: 127 for a missing command or interpreter, 126 for anything else.
"""

from __future__ import annotations

import errno
import os

from dind.errors import SETUP_FAILED, CommandError
from dind.signals import release

TYPE_CHECKING = False
if TYPE_CHECKING:
    from dind.launch import Launch

NOT_FOUND = 127
NOT_EXECUTABLE = 126
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_KEEP_SEARCHING = (errno.ENOENT, errno.ENOTDIR, errno.ESTALE, errno.ENODEV, errno.ETIMEDOUT)


def candidates(program: bytes, path: str | None) -> list[bytes]:
    """Where execvp looks for ``program``: itself if it has a ``/``, else each PATH entry."""
    if b"/" in program:
        return [program]
    dirs = (path if path is not None else DEFAULT_PATH).split(":")
    return [os.path.join(os.fsencode(d or "."), program) for d in dirs]


def binary(path: bytes) -> bool:
    """A file /bin/sh must not be handed: an ELF image or anything with a NUL near its start
    (bash's rule: "cannot execute binary file")."""
    try:
        with open(path, "rb") as f:
            head = f.read(128)
    except OSError:
        return True
    return head.startswith(b"\x7fELF") or b"\0" in head


def interpreter(path: bytes) -> str | None:
    """The interpreter a ``#!`` line names, if ``path`` starts with one."""
    try:
        with open(path, "rb") as f:
            first = f.read(256)
    except OSError:
        return None
    if not first.startswith(b"#!"):
        return None
    words = first[2:].split(b"\n", 1)[0].split()
    return os.fsdecode(words[0]) if words else None


def command_error(program: str, err: OSError, found: bytes | None = None) -> CommandError:
    """Map a failed exec to the error a shell would report (127 not found, 126 otherwise)."""
    code = err.errno or 0
    if code in (errno.ENOENT, errno.ENOTDIR):
        interp = interpreter(found) if found is not None else None
        if interp is not None:
            return CommandError(
                f"{program}: cannot execute: interpreter {interp} not found", NOT_FOUND, code
            )
        return CommandError(f"{program}: command not found", NOT_FOUND, code)
    reason = os.strerror(code) if code else str(err)
    return CommandError(f"{program}: cannot execute: {reason}", NOT_EXECUTABLE, code)


def execvp(argv: list[str], env: dict[str, str] | None = None) -> None:
    """execvp(3): search PATH, run a script without ``#!`` with /bin/sh; CommandError if none ran.

    Arguments go through ``os.fsencode`` so bytes that are not valid UTF-8 reach the
    command unchanged.
    """
    if not argv[0]:
        raise CommandError("'': command not found", NOT_FOUND, errno.ENOENT)
    environ = os.environ if env is None else env
    args = [os.fsencode(a) for a in argv]
    first: tuple[OSError, bytes | None] | None = None
    denied: tuple[OSError, bytes] | None = None
    for path in candidates(args[0], environ.get("PATH")):
        try:
            os.execve(path, args, environ)
        except OSError as err:
            if err.errno == errno.ENOEXEC and not binary(path):
                try:
                    os.execve(b"/bin/sh", [b"/bin/sh", path, *args[1:]], environ)
                except OSError as sh:
                    if sh.errno in (errno.ENOENT, errno.ENOTDIR):
                        raise CommandError(
                            f"{argv[0]}: cannot execute: interpreter /bin/sh not found",
                            NOT_FOUND,
                            sh.errno,
                        ) from None
                    raise command_error(argv[0], sh) from None
            exists = os.path.isfile(path)
            if err.errno == errno.EACCES:
                denied = denied or (err, path)
            elif err.errno in _KEEP_SEARCHING:
                if exists and first is None:
                    first = (err, path)  # found, but its interpreter is missing
            else:
                raise command_error(argv[0], err, path) from None
    if denied is not None:
        raise command_error(argv[0], denied[0], denied[1])
    if first is not None:
        raise command_error(argv[0], first[0], first[1])
    raise command_error(argv[0], OSError(errno.ENOENT, os.strerror(errno.ENOENT)))


def restore_default_signals() -> None:
    """Undo Python's start-up SIG_IGN of SIGPIPE and SIGXFSZ: an ignored signal survives exec."""
    import _signal  # type: ignore[import-not-found,unused-ignore]

    for signum in (_signal.SIGPIPE, _signal.SIGXFSZ):
        _signal.signal(signum, _signal.SIG_DFL)


def become(launch: Launch, program: str) -> None:
    """Join the daemon's cgroup, then drop to its user (groups, gid, uid: the order that
    keeps the right to change each; the capabilities go with uid 0). The rootless daemon's
    start, in the process about to exec ``program``; a refusal is dind's own failure."""
    try:
        if launch.cgroup:
            from dind.safepath import open_path

            fd = open_path(f"{launch.cgroup}/cgroup.procs", os.O_WRONLY)
            try:
                os.write(fd, b"0")
            finally:
                os.close(fd)
        if launch.user is not None:
            os.setgroups(list(launch.groups))
            os.setresgid(launch.gid, launch.gid, launch.gid)
            os.setresuid(launch.uid, launch.uid, launch.uid)
    except OSError as err:
        where = f" ({err.filename})" if err.filename else ""
        who = launch.user or launch.uid
        raise CommandError(
            f"{program}: cannot start as {who}: {err.strerror}{where}", SETUP_FAILED, err.errno
        ) from None


def exec_command(
    argv: list[str],
    mask: set[int] | None = None,
    env: dict[str, str] | None = None,
    launch: Launch | None = None,
) -> None:
    """Replace this process with ``argv``; raises CommandError when it cannot be executed.

    ``mask`` is the signal mask dind started with, given back to the command; with
    ``launch`` the command starts as the rootless daemon's user, in its cgroup.
    """
    restore_default_signals()
    if launch is not None:
        become(launch, argv[0])
    if mask is not None:
        release(mask)
    execvp(argv, env)
