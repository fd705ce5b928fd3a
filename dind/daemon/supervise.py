"""``--with-dockerd``: start dockerd, wait until it answers, run COMMAND, stop dockerd.

What every CI set-up hand-rolls ("start dockerd in the background, poll, run,
stop"), done once: dind stays as the init of both (signals to COMMAND, zombies
reaped), SIGTERM/SIGINT stop COMMAND first and dockerd after it, and a dockerd
that exits early or never answers ends the run with 125, one line and the tail
of its log. The exit status is COMMAND's.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time

from dind import paths, signals, steps
from dind.daemon.ready import Endpoint, wait_ready
from dind.errors import SetupError
from dind.init import FORWARDED, configure_signals, exit_status, forward, spawn
from dind.safepath import open_path

TYPE_CHECKING = False
if TYPE_CHECKING:
    from dind.log import Log
    from dind.plan import Plan
    from dind.settings import Settings

TAIL = 20


def open_log(path: str) -> int:
    """dockerd's log, appended to; opened without following a symlink anywhere in ``path``."""
    parent, _, name = path.rpartition("/")
    try:
        fd = open_path(parent or "/", os.O_PATH | os.O_DIRECTORY)
        try:
            return os.open(
                name,
                os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC,
                0o644,
                dir_fd=fd,
            )
        finally:
            os.close(fd)
    except OSError as err:
        raise SetupError(
            f"cannot open dockerd's log {path}: {err.strerror} (--dockerd-log chooses another)",
            errno=err.errno,
        ) from None


def tail(path: str, start: int, lines: int = TAIL) -> list[str]:
    """The last lines this dockerd wrote to its log (from offset ``start``: the log is
    appended to, and an earlier run's lines would mislead)."""
    try:
        fd = open_path(path, os.O_RDONLY)
    except OSError:
        return []
    with os.fdopen(fd, "rb") as f:
        f.seek(0, os.SEEK_END)
        f.seek(max(start, f.tell() - 64 * 1024))
        return f.read().decode("utf-8", "replace").splitlines()[-lines:]


def socket_of(argv: list[str]) -> Endpoint:
    """The daemon's first unix socket among its ``-H`` flags (the default socket otherwise)."""
    from dind.daemon.flags import parse_flags

    for host in parse_flags(argv[1:]).get("host", []):
        if host.startswith("unix://"):
            return unix_endpoint(host)
    return unix_endpoint(paths.DOCKER_SOCKET)


def unix_endpoint(address: str) -> Endpoint:
    """The daemon at a ``unix://`` address."""
    return Endpoint("http://docker", socket=address.removeprefix("unix://"))


def _reaped(pid: int) -> int | None:
    """The wait status of ``pid`` if it has exited (reaped now), else None."""
    try:
        done, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return 0
    return status if done else None


def stop(pid: int, timeout: float, log: Log) -> None:
    """SIGTERM, then SIGKILL after ``timeout`` seconds; returns once ``pid`` is reaped."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    started = time.monotonic()
    while (status := _reaped(pid)) is None:
        left = started + timeout - time.monotonic()
        if left <= 0:
            log.warning(f"dockerd did not stop within {timeout:g} s: SIGKILL", pid=pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return
        signal.sigtimedwait({signal.SIGCHLD}, min(left, 0.1))
    took = time.monotonic() - started
    log.info(f"dockerd stopped (status {exit_status(status)}) in {took:.2f} s", pid=pid)


def _fail(message: str, log_path: str, start: int) -> SetupError:
    lines = tail(log_path, start)
    shown = "\n".join(lines)
    more = f"; its last lines in {log_path}:\n{shown}" if lines else f" ({log_path}: nothing)"
    return SetupError(message + more, step=steps.DOCKERD)


def run_with_dockerd(plan: Plan, settings: Settings, log: Log, mask: set[int]) -> int:
    """Start dockerd, wait for it, run COMMAND under dind's init duties; COMMAND's status."""
    assert plan.dockerd is not None
    output = open_log(settings.dockerd_log)
    start = os.fstat(output).st_size
    env = dict(os.environ)
    if plan.dockerd_path:
        env["PATH"] = ":".join([*plan.dockerd_path, env.get("PATH", "")])
    launch = plan.launch
    if launch is not None:
        env.update(launch.env)
    from dind.init import become_subreaper

    if os.getpid() != 1:
        become_subreaper(log)
    configure_signals()
    daemon = spawn(plan.dockerd, mask, log, output=output, env=env, launch=launch)
    os.close(output)
    log.info(f"dockerd runs as PID {daemon}, its output in {settings.dockerd_log}", pid=daemon)
    target = socket_of(plan.dockerd) if launch is None else unix_endpoint(launch.socket)
    timeout = settings.timeout if settings.timeout is not None else 60.0
    started = time.monotonic()
    dead: list[int] = []

    def alive() -> bool:
        status = _reaped(daemon)
        if status is not None:
            dead.append(status)
        return not dead

    why = wait_ready(target, started + timeout, alive)
    if why is not None:
        if not dead:
            stop(daemon, settings.dockerd_stop_timeout, log)
        sig = signals.arrived()
        if sig is not None:
            log.error(
                f"{signals.name(sig)} before dockerd answered: dockerd stopped, COMMAND not run"
            )
            return 128 + sig
        if dead:
            raise _fail(
                f"dockerd exited (status {exit_status(dead[0])}) before answering at {target}",
                settings.dockerd_log,
                start,
            )
        raise _fail(
            f"dockerd did not answer at {target} within {timeout:g} s: {why}",
            settings.dockerd_log,
            start,
        )
    log.info(f"dockerd answers at {target} after {time.monotonic() - started:.2f} s")

    command_env = None
    if launch is not None and "DOCKER_HOST" not in os.environ:
        command_env = {**os.environ, "DOCKER_HOST": launch.socket}  # also without the link
    child = spawn(plan.command, mask, log, env=command_env)
    target_pid = -child if settings.init_group else child
    status = _supervise(child, target_pid, daemon, dead, log)
    log.info(f"{plan.command[0]} exited with status {status}", status=status)
    if not dead:
        stop(daemon, settings.dockerd_stop_timeout, log)
    return status


def _supervise(child: int, target: int, daemon: int, dead: list[int], log: Log) -> int:
    """Until COMMAND exits: reap everything, forward signals to COMMAND; its exit status."""
    waited = FORWARDED | {signal.SIGCHLD}
    while True:
        status = None
        while True:
            try:
                pid, wstatus = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            if pid == child:
                status = wstatus
            elif pid == daemon:
                dead.append(wstatus)
                log.warning(f"dockerd exited (status {exit_status(wstatus)}) while COMMAND runs")
        if status is not None:
            return exit_status(status)
        sig = signal.sigwaitinfo(waited).si_signo
        if sig != signal.SIGCHLD:
            forward(sig, target, child, log)
