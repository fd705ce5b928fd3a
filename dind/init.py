"""``--init``: fork COMMAND and stay as its init: forward signals, reap zombies, pass on its status.

With a plain exec, COMMAND becomes PID 1 and inherits duties it rarely does: the
kernel drops signals it has no handler for (``docker stop`` then waits 10 s and
kills), and orphans re-parented to it stay zombies. This is tini's answer, read
top to bottom in ``run_init``: become a subreaper, configure signals, spawn,
supervise.

- Signals: everything tini forwards is blocked here and collected with
  ``sigwaitinfo`` (blocked signals are queued even for a namespace's PID 1, which
  would otherwise drop them), then sent to COMMAND, or to its process group with
  ``--init-group``. Kept back, as tini does: the fault signals (FPE, ILL, SEGV,
  BUS, ABRT, TRAP, SYS) so a crash of dind stays a crash, SIGTTIN/SIGTTOU
  (ignored: dind must not stop when the terminal goes to COMMAND), SIGCHLD
  (reaping), and SIGKILL/SIGSTOP, which cannot be caught.
- Idle costs nothing: no thread, no timeout; SIGCHLD is in the waited set, and a
  SIGCHLD raised while reaping stays pending until the next wait, so none is lost.
- When COMMAND exits, dind reaps what is left to reap and returns its status at
  once, as tini does. Processes still running are not waited for: as PID 1 of a
  container, dind's exit makes the kernel kill them; otherwise they are
  re-parented to the next subreaper or init.

Only ``os``, ``signal``, ``errno`` and ``contextlib`` on this path, all loaded
already at this point, as is ``dind.syscalls`` (ctypes) for prctl.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal

from dind.command import NOT_FOUND, become, execvp
from dind.errors import CommandError
from dind.log import DEBUG, Log

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NoReturn

    from dind.launch import Launch

Mask = set[int | signal.Signals]

KEPT = frozenset(
    {
        signal.SIGFPE,
        signal.SIGILL,
        signal.SIGSEGV,
        signal.SIGBUS,
        signal.SIGABRT,
        signal.SIGTRAP,
        signal.SIGSYS,
        signal.SIGTTIN,
        signal.SIGTTOU,
        signal.SIGCHLD,
        signal.SIGKILL,
        signal.SIGSTOP,
    }
)
"""Signals dind never forwards (see the module docstring)."""

FORWARDED = frozenset(signal.valid_signals()) - KEPT
"""Every other signal, real-time ones included: what tini forwards."""

RESTORED = (signal.SIGTTIN, signal.SIGTTOU, signal.SIGPIPE, signal.SIGXFSZ)
"""Ignored in dind (the first two by us, the last two by Python at start-up) and
reset to default in COMMAND: an ignored disposition would survive the exec."""


def run_init(
    argv: list[str],
    *,
    group: bool,
    log: Log,
    mask: Mask | None = None,
    env: dict[str, str] | None = None,
    launch: Launch | None = None,
) -> int:
    """Run ``argv`` as a child and supervise it; return its exit status (128+N if killed by N).

    Raises CommandError (127 not found, 126 not executable) when it cannot be
    executed, with the message dind gives without ``--init``. Signals stay blocked
    when this returns: the caller exits, and a late SIGTERM must not turn the
    child's status into dind's own death.
    """
    if not argv[0]:
        raise CommandError("'': command not found", NOT_FOUND, errno.ENOENT)
    if os.getpid() == 1:
        log.debug("init: PID 1, orphans are re-parented here")
    else:
        become_subreaper(log)
    old_mask = configure_signals()
    child = spawn(argv, old_mask if mask is None else mask, log, env=env, launch=launch)
    target = -child if group else child
    if log.enabled(DEBUG):
        whom = f"process group {child}" if group else f"PID {child}"
        log.debug(f"init: {argv[0]} runs as PID {child}; signals go to {whom}", pid=child)
    wstatus = supervise(child, target, log)
    status = exit_status(wstatus)
    if os.WIFSIGNALED(wstatus):
        how = f"was killed by {signal_name(os.WTERMSIG(wstatus))} (status {status})"
    else:
        how = f"exited with status {status}"
    log.info(f"init: {argv[0]} {how}", status=status)
    return status


def become_subreaper(log: Log) -> None:
    """Make orphans of COMMAND's descendants re-parent to dind rather than to the real init."""
    from dind.syscalls import set_child_subreaper

    try:
        set_child_subreaper()
    except OSError as err:
        log.warning(
            f"init: not PID 1 and prctl(PR_SET_CHILD_SUBREAPER) failed: {err.strerror}; "
            "orphans go to the real init",
            errno=err.errno,
        )
        return
    log.info("init: not PID 1, registered as child subreaper: orphans are reaped here")


def configure_signals() -> Mask:
    """Block what is collected by ``supervise``; return the mask COMMAND gets back.

    SIGCHLD is forced to its default: inherited as ignored, the kernel would
    auto-reap COMMAND and its status would be lost.
    """
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGTTIN, signal.SIG_IGN)
    signal.signal(signal.SIGTTOU, signal.SIG_IGN)
    return signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED | {signal.SIGCHLD})


def spawn(
    argv: list[str],
    mask: Mask,
    log: Log,
    *,
    output: int | None = None,
    env: dict[str, str] | None = None,
    launch: Launch | None = None,
) -> int:
    """Fork and exec ``argv``; return the child's PID once the exec has succeeded.

    A close-on-exec pipe carries a failed exec's status and message back: EOF means
    the exec happened; otherwise the failed child is reaped here and its error
    raised, the very one dind gives without ``--init``. With ``output`` (a daemon
    in the background) the child writes there, reads nothing, and never takes
    the terminal. With ``launch`` (the rootless daemon) the child joins its cgroup and
    becomes its user before the exec (``become``).
    """
    terminal = output is None and holds_terminal()
    log.flush()
    read_end, write_end = os.pipe()  # both close-on-exec
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        if output is not None:
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)
            os.dup2(output, 1)
            os.dup2(output, 2)
        exec_child(argv, mask, terminal, write_end, env, launch)
    os.close(write_end)
    # The child does it too, whichever runs first; EACCES means it has exec'd already.
    with contextlib.suppress(OSError):
        os.setpgid(pid, pid)
    report = b""
    while chunk := os.read(read_end, 4096):
        report += chunk
    os.close(read_end)
    if not report:
        return pid
    os.waitpid(pid, 0)
    status, _, message = report.partition(b" ")
    raise CommandError(message.decode("utf-8", "replace"), int(status), None)


def holds_terminal() -> bool:
    """Whether stdin is a terminal whose foreground is dind's process group.

    Only then does COMMAND take the foreground (``docker run -it``): started in the
    background of an interactive shell, dind must not take the terminal from it.
    """
    try:
        return os.tcgetpgrp(0) == os.getpgrp()
    except OSError:  # not a terminal (ENOTTY), or not ours, or stdin closed (EBADF)
        return False


def exec_child(
    argv: list[str],
    mask: Mask,
    terminal: bool,
    report_fd: int,
    env: dict[str, str] | None = None,
    launch: Launch | None = None,
) -> NoReturn:
    """In the forked child: own process group, the terminal's foreground, clean signals, exec.

    Never returns: whatever happens, the child ends in exec or ``os._exit``, never
    back in dind's code.
    """
    try:
        report = f"{NOT_FOUND} {argv[0]}: cannot execute"
        try:
            os.setpgid(0, 0)
            if terminal:  # SIGTTOU is still ignored: this cannot stop us
                with contextlib.suppress(OSError):  # then COMMAND goes without job control
                    os.tcsetpgrp(0, os.getpgrp())
            for sig in RESTORED:
                signal.signal(sig, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            if launch is not None:
                become(launch, argv[0])
            execvp(argv, env)
        except CommandError as err:
            report = f"{err.status} {err}"
        except OSError as err:
            where = f" ({err.filename})" if err.filename else ""
            report = f"{report}: {err.strerror}{where}"
        os.write(report_fd, report.encode("utf-8", "replace"))
    finally:
        os._exit(NOT_FOUND)


def supervise(child: int, target: int, log: Log) -> int:
    """Reap, wait for a signal, forward it; until ``child`` is reaped. Returns its wait status.

    Reaping comes first: COMMAND may have died before the first wait, and its
    SIGCHLD (still pending) would only wake the next one.
    """
    waited = FORWARDED | {signal.SIGCHLD}
    while True:
        status = reap(child, log)
        if status is not None:
            return status
        sig = signal.sigwaitinfo(waited).si_signo
        if sig != signal.SIGCHLD:
            forward(sig, target, child, log)


def reap(child: int, log: Log) -> int | None:
    """Collect every zombie; return ``child``'s wait status if it was among them."""
    status = None
    while True:
        try:
            pid, wstatus = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return status
        if pid == 0:
            return status
        if pid == child:
            status = wstatus
        elif log.enabled(DEBUG):
            log.debug(f"init: reaped PID {pid} (status {exit_status(wstatus)})", pid=pid)


def forward(sig: int, target: int, child: int, log: Log) -> None:
    """Send ``sig`` on; if COMMAND's process group is gone (it left it), to COMMAND alone."""
    for whom in dict.fromkeys((target, child)):
        try:
            os.kill(whom, sig)
        except ProcessLookupError:
            continue  # COMMAND has just died (its SIGCHLD is pending), or left its group
        except OSError as err:
            log.warning(
                f"init: cannot forward {signal_name(sig)} to {whom}: {err.strerror}",
                errno=err.errno,
            )
        else:
            if log.enabled(DEBUG):
                log.debug(f"init: forwarded {signal_name(sig)} to {whom}", pid=whom)
        return


def exit_status(wstatus: int) -> int:
    """The shell's convention: the exit code, or 128+N after a death by signal N."""
    code = os.waitstatus_to_exitcode(wstatus)
    return code if code >= 0 else 128 - code


def signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"SIGRTMIN+{sig - signal.SIGRTMIN}"
