"""``dind --init`` for real: the installed console script, its child, signals, zombies, a pty.

Every run skips all set-up steps (DIND_SKIP), so nothing is mounted; the PID 1
cases run in a new PID and mount namespace (``unshare --pid --fork --mount-proc``)
and need root, as CI has. Waits have generous deadlines to catch hangs, never to
measure speed (scripts/bench-init does that).
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from dind.steps import KERNEL_STEPS

DIND = str(Path(sys.executable).with_name("dind"))
HELPER = [sys.executable, str(Path(__file__).with_name("init_helpers") / "child.py")]
ALL_STEPS = ",".join(KERNEL_STEPS)
DEADLINE = 20.0

# What tini keeps for itself; everything else must reach the child.
NOT_FORWARDED = {
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
ISSUE_SIGNALS = [
    signal.SIGHUP,
    signal.SIGINT,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGWINCH,
    signal.SIGCONT,
]

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="root required (CI runs as root)")


def environ(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIND_")}
    env["DIND_SKIP"] = ALL_STEPS
    env.update(extra)
    return env


def run(args: list[str], **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [DIND, *args],
        env=environ(**extra),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
    )


@contextlib.contextmanager
def started(args: list[str], *, pid1: bool = False) -> Iterator[subprocess.Popen[bytes]]:
    """dind (in unshare as PID 1 if ``pid1``) with pipes; killed by PID if still running."""
    argv = [DIND, *args]
    if pid1:
        argv = ["unshare", "--pid", "--fork", "--mount-proc", *argv]
    proc = subprocess.Popen(
        argv,
        env=environ(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        bufsize=0,  # unbuffered: select() on stdout must see every line not yet read
    )
    try:
        yield proc
    finally:
        for child in _descendants(proc.pid):
            with contextlib.suppress(psutil.Error):
                child.kill()
        if proc.poll() is None:
            proc.kill()
        proc.wait(DEADLINE)
        assert proc.stdout is not None
        assert proc.stderr is not None
        proc.stdout.close()
        proc.stderr.close()


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return list(psutil.Process(pid).children(recursive=True))
    except psutil.NoSuchProcess:
        return []


def until(what: str, probe: Callable[[], object]) -> object:
    """Poll ``probe`` until it returns something truthy; fail after DEADLINE."""
    end = time.monotonic() + DEADLINE
    while time.monotonic() < end:
        value = probe()
        if value:
            return value
        time.sleep(0.01)
    pytest.fail(f"timed out waiting for {what}")


def only_child(pid: int) -> psutil.Process:
    """The single child of ``pid`` once it exists (dind under unshare, COMMAND under dind)."""

    def probe() -> psutil.Process | None:
        children = psutil.Process(pid).children()
        return children[0] if len(children) == 1 else None

    found = until(f"a child of {pid}", probe)
    assert isinstance(found, psutil.Process)
    return found


def command_of(dind: psutil.Process, name: str) -> psutil.Process:
    """dind's child once it has exec'd ``name`` (or something with ``name`` as an argument).

    Not the forked copy of dind before its exec, whose arguments include ``name`` too.
    """
    own = dind.cmdline()

    def probe() -> psutil.Process | None:
        for child in dind.children():
            with contextlib.suppress(psutil.Error):
                argv = child.cmdline()
                if argv != own and (child.name() == name or name in argv[1:]):
                    return child
        return None

    found = until(f"{name} under dind", probe)
    assert isinstance(found, psutil.Process)
    return found


def dind_process(proc: subprocess.Popen[bytes], pid1: bool) -> psutil.Process:
    return only_child(proc.pid) if pid1 else psutil.Process(proc.pid)


def read_line(proc: subprocess.Popen[bytes]) -> str:
    """Next stdout line of the command (through dind), or fail after DEADLINE."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], DEADLINE)
    if not ready:
        pytest.fail("timed out waiting for the command's output")
    line = proc.stdout.readline().decode()
    assert line, f"the command's output ended (dind status {proc.wait(DEADLINE)})"
    return line.rstrip("\n")


def wait_status(proc: subprocess.Popen[bytes]) -> int:
    return proc.wait(DEADLINE)


# --- exit status ------------------------------------------------------------------


@pytest.mark.parametrize("code", [0, 1, 3, 126, 127, 255])
def test_exit_status_is_the_commands(code: int) -> None:
    assert run(["--init", "--", "sh", "-c", f"exit {code}"]).returncode == code


def test_death_by_signal_is_128_plus_n() -> None:
    result = run(["--init", "--", "sh", "-c", "kill -KILL $$"])
    assert result.returncode == 128 + signal.SIGKILL


def test_child_killed_by_sigkill_from_outside_gives_137() -> None:
    with started(["--init", "--", "sleep", "1000"]) as proc:
        command_of(psutil.Process(proc.pid), "sleep").kill()
        assert wait_status(proc) == 137


@pytest.mark.parametrize("variable", ["DIND_INIT", "DIND_INIT_GROUP"])
def test_init_from_the_environment(variable: str) -> None:
    result = run(["sh", "-c", "echo $PPID; exit 5"], **{variable: "1"})
    assert result.returncode == 5
    assert int(result.stdout) != os.getpid()  # a dind process stayed between us and sh


def test_command_gets_the_exported_environment() -> None:
    env = {k: v for k, v in environ().items() if k != "container"}
    result = subprocess.run(
        [DIND, "--init", "--", "sh", "-c", 'echo "$container"'],
        env=env,
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=True,
    )
    assert result.stdout == "docker\n"


# --- exec failures: the same message and status as without --init ---------------------


def _not_executable(tmp: Path) -> str:
    path = tmp / "script"
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o644)
    return str(path)


def _bad_format(tmp: Path) -> str:
    path = tmp / "garbage"
    path.write_bytes(b"\x7fELF\x00\x00garbage")
    path.chmod(0o755)
    return str(path)


@pytest.mark.parametrize(
    ("make", "status"),
    [
        (lambda tmp: "dind-test-no-such-command", 127),
        (lambda tmp: str(tmp / "missing" / "cmd"), 127),
        (lambda tmp: "", 127),
        (str, 126),
        (_not_executable, 126),
        (_bad_format, 126),
    ],
    ids=["not-found", "missing-path", "empty", "directory", "not-executable", "bad-format"],
)
def test_exec_failure_matches_plain_exec(
    tmp_path: Path, make: Callable[[Path], str], status: int
) -> None:
    program = make(tmp_path)
    plain = run(["--", program])
    init = run(["--init", "--", program])
    assert (init.returncode, init.stderr) == (plain.returncode, plain.stderr)
    assert init.returncode == status
    assert init.stderr.startswith("dind: error: ")


# --- signals ----------------------------------------------------------------------


def _to_forward() -> list[int]:
    rest = sorted(set(signal.valid_signals()) - NOT_FORWARDED - set(ISSUE_SIGNALS))
    rest.remove(signal.SIGTERM)
    return [*ISSUE_SIGNALS, *rest]


@pytest.mark.parametrize("pid1", [False, pytest.param(True, marks=needs_root)], ids=["pid", "pid1"])
def test_signals_are_forwarded_then_sigterm_ends_with_childs_status(pid1: bool) -> None:
    with started(["--init", "--", *HELPER, "signals"], pid1=pid1) as proc:
        assert read_line(proc).startswith("ready ")
        dind = dind_process(proc, pid1)
        for sig in [*_to_forward(), signal.SIGTERM]:
            dind.send_signal(sig)
            assert read_line(proc) == f"got {sig}", signal.Signals(sig).name if sig < 32 else sig
        assert wait_status(proc) == 7  # the child's own status after handling SIGTERM


@pytest.mark.parametrize("pid1", [False, pytest.param(True, marks=needs_root)], ids=["pid", "pid1"])
def test_sigterm_kills_a_child_without_handler_143(pid1: bool) -> None:
    with started(["--init", "--", "sleep", "1000"], pid1=pid1) as proc:
        dind = dind_process(proc, pid1)
        command_of(dind, "sleep")
        dind.terminate()
        assert wait_status(proc) == 143


@needs_root
def test_pid1_gets_sigterm_from_inside_its_namespace() -> None:
    """A namespace's PID 1 drops signals it has no handler for; dind blocks and forwards them."""
    with started(["--init", "--", *HELPER, "signals", "kill-parent"], pid1=True) as proc:
        assert read_line(proc).startswith("ready ")
        assert read_line(proc) == f"got {signal.SIGTERM}"
        assert wait_status(proc) == 7


def test_child_has_own_process_group_and_clean_signal_state() -> None:
    baseline = subprocess.run(
        ["grep", "^SigIgn", "/proc/self/status"], capture_output=True, text=True, check=True
    ).stdout
    with started(["--init", "--", "cat", "/proc/self/stat", "/proc/self/status"]) as proc:
        out, _ = proc.communicate(timeout=DEADLINE)
        assert proc.returncode == 0
    stat, _, status = out.decode().partition("\n")
    fields = stat.rpartition(")")[2].split()
    ppid, pgrp = int(fields[1]), int(fields[2])
    pid = int(stat.split()[0])
    assert ppid == proc.pid
    assert pgrp == pid != os.getpgrp()
    lines = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
    assert int(lines["SigBlk"], 16) == 0
    assert f"SigIgn:\t{lines['SigIgn']}\n" == baseline  # nothing ignored that we did not ignore


@pytest.mark.parametrize("group", [False, True], ids=["child", "group"])
def test_init_group_signals_the_whole_process_group(group: bool) -> None:
    args = ["--init-group"] if group else ["--init"]
    with started([*args, "--", *HELPER, "group"]) as proc:
        lines = {read_line(proc).rsplit(" ", 1)[0] for _ in range(2)}
        assert lines == {"ready " + str(only_child(proc.pid).pid), "grandchild ready"}
        grandchild = only_child(only_child(proc.pid).pid)
        psutil.Process(proc.pid).send_signal(signal.SIGUSR1)
        got = {read_line(proc) for _ in range(2 if group else 1)}
        if group:
            assert got == {f"got {signal.SIGUSR1}", f"grandchild got {signal.SIGUSR1}"}
        else:
            assert got == {f"got {signal.SIGUSR1}"}
            # Had the grandchild had SIGUSR1, it would have said so before this.
            grandchild.send_signal(signal.SIGUSR2)
            assert read_line(proc) == f"grandchild got {signal.SIGUSR2}"
        psutil.Process(proc.pid).terminate()
        assert wait_status(proc) == 7


def test_init_group_falls_back_to_the_command_when_it_left_its_group() -> None:
    leave = (
        "import os, signal; os.setpgid(0, os.getpgid(os.getppid())); "
        "os.write(1, b'ready\\n'); signal.pause()"
    )
    with started(["--init-group", "--", sys.executable, "-c", leave]) as proc:
        assert read_line(proc) == "ready"
        psutil.Process(proc.pid).send_signal(signal.SIGUSR1)
        assert wait_status(proc) == 128 + signal.SIGUSR1


# --- zombies ----------------------------------------------------------------------


@pytest.mark.parametrize("pid1", [False, pytest.param(True, marks=needs_root)], ids=["pid", "pid1"])
def test_orphans_are_reparented_and_reaped(pid1: bool) -> None:
    count = 20
    with started(["-v", "--init", "--", *HELPER, "orphans", str(count)], pid1=pid1) as proc:
        lines = [read_line(proc).split() for _ in range(count + 1)]
        orphans = [line for line in lines if line[0] == "orphan"]
        assert len(orphans) == count
        dind = dind_process(proc, pid1)
        assert {parent for _, _, parent in orphans} == {"1" if pid1 else str(dind.pid)}
        command = command_of(dind, "orphans")

        def only_the_command_left() -> bool:
            children = dind.children()
            return [c.pid for c in children] == [command.pid]

        until("the orphans to be reaped", only_the_command_left)
        assert command.status() != psutil.STATUS_ZOMBIE
        dind.terminate()
        assert wait_status(proc) == 143
        assert proc.stderr is not None
        log = proc.stderr.read().decode()
    assert ("child subreaper" in log) is not pid1, log


def test_command_exit_does_not_wait_for_other_processes() -> None:
    """Like tini: when COMMAND exits, dind exits; a daemon it left is not waited for."""
    with started(["--init", "--", *HELPER, "daemon"]) as proc:
        daemon = psutil.Process(int(read_line(proc).split()[1]))
        try:
            assert wait_status(proc) == 0
            assert daemon.is_running()
            assert daemon.status() != psutil.STATUS_ZOMBIE
            assert daemon.name() == "sleep"
        finally:
            daemon.kill()


# --- idle ---------------------------------------------------------------------------


def test_idle_dind_is_one_thread_blocked_in_sigtimedwait() -> None:
    with started(["--init", "--", "sleep", "1000"]) as proc:
        dind = psutil.Process(proc.pid)
        command_of(dind, "sleep")
        assert dind.num_threads() == 1
        wchan = until(
            "dind to block",
            lambda: Path(f"/proc/{proc.pid}/wchan").read_text().startswith("do_sigtimedwait"),
        )
        assert wchan
        assert dind.status() == psutil.STATUS_SLEEPING


# --- terminal -----------------------------------------------------------------------


def _in_pty(argv: list[str], typed: bytes = b"") -> tuple[int, str]:
    """Run ``argv`` in a new session with a new pty as its terminal; return status and output."""
    master, slave = os.openpty()
    proc = subprocess.Popen(
        ["setsid", "--ctty", "--wait", *argv],
        env=environ(),
        stdin=slave,
        stdout=slave,
        stderr=slave,
    )
    os.close(slave)
    out = b""
    try:
        if typed:
            os.write(master, typed)
        while True:
            ready, _, _ = select.select([master], [], [], DEADLINE)
            if not ready:
                pytest.fail(f"no output from {argv} in a pty: {out!r}")
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: every slave end is closed
                break
            if not chunk:
                break
            out += chunk
        return proc.wait(DEADLINE), out.decode(errors="replace")
    finally:
        if proc.poll() is None:
            for child in _descendants(proc.pid):
                child.kill()
            proc.kill()
            proc.wait(DEADLINE)
        os.close(master)


def _stat(line: str) -> tuple[int, int, int]:
    """PID, process group and terminal foreground group from a /proc/PID/stat line."""
    fields = line.rpartition(")")[2].split()
    return int(line.split(maxsplit=1)[0]), int(fields[2]), int(fields[5])


def test_child_gets_the_terminal_foreground() -> None:
    status, out = _in_pty([DIND, "--init", "--", "sh", "-c", "cat /proc/$$/stat"])
    assert status == 0, out
    pid, pgrp, tpgid = _stat(out.strip().splitlines()[-1])
    assert pgrp == pid
    assert tpgid == pgrp


def test_dind_in_the_background_leaves_the_terminal_alone() -> None:
    """``dind --init CMD &`` from an interactive shell must not take the shell's terminal."""
    script = f"set -m; {DIND} --init -- sh -c 'cat /proc/$$/stat' & wait $!; cat /proc/$$/stat"
    status, out = _in_pty(["sh", "-c", script])
    assert status == 0, out
    child, shell = (_stat(line) for line in out.strip().splitlines()[-2:])
    assert child[1] == child[0] != shell[1]
    assert child[2] == shell[1]  # the shell's group was still the foreground


def test_child_can_read_the_terminal() -> None:
    """A background process group reading its terminal gets SIGTTIN and stops: would hang."""
    script = 'read line; echo "got:$line"'
    status, out = _in_pty([DIND, "--init", "--", "sh", "-c", script], typed=b"hello\n")
    assert status == 0, out
    assert "got:hello" in out


@pytest.mark.skipif(shutil.which("unshare") is None, reason="unshare missing")
@needs_root
def test_pid1_logs_no_subreaper() -> None:
    result = subprocess.run(
        ["unshare", "--pid", "--fork", "--mount-proc", DIND, "-vv", "--init", "--", "true"],
        env=environ(),
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "PID 1" in result.stderr
    assert "subreaper" not in result.stderr
