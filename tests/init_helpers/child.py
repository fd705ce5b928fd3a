"""Commands for tests/test_init.py to run under ``dind --init``; they report on stdout.

Every line is one ``os.write``, so lines from several processes never interleave.

    child.py signals [kill-parent]  handle every catchable signal: print "ready PID PGID",
                                    then "got N" per signal; exit 7 after SIGTERM.
                                    kill-parent: send SIGTERM to the parent once ready.
    child.py group                  like signals, plus a grandchild in the same process
                                    group ("grandchild ready PID", "grandchild got N");
                                    on SIGTERM the child ends the grandchild, exits 7.
    child.py orphans N              make N orphans (double fork) that wait until they
                                    are re-parented, print "orphan PID NEWPARENT", exit;
                                    then print "spawned N PID" and sleep until killed.
    child.py daemon                 leave a running orphan (sleep 1000), print
                                    "daemon PID", exit 0.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from types import FrameType

UNCATCHABLE = {signal.SIGKILL, signal.SIGSTOP}
# SIGCHLD: the group mode waits for its grandchild; TTIN/TTOU: never sent by the tests.
UNHANDLED = UNCATCHABLE | {signal.SIGCHLD, signal.SIGTTIN, signal.SIGTTOU}


def say(line: str) -> None:
    os.write(1, f"{line}\n".encode())


def report_signals(prefix: str, on_term: int | None) -> None:
    """Print every signal received; exit ``on_term`` after SIGTERM (None: just report)."""

    def handler(signum: int, frame: FrameType | None) -> None:
        say(f"{prefix}got {signum}")
        if signum == signal.SIGTERM and on_term is not None:
            os._exit(on_term)

    for sig in signal.valid_signals() - UNHANDLED:
        signal.signal(sig, handler)


def signals(kill_parent: bool) -> None:
    report_signals("", 7)
    say(f"ready {os.getpid()} {os.getpgrp()}")
    if kill_parent:
        os.kill(os.getppid(), signal.SIGTERM)
    while True:
        signal.pause()


def group() -> None:
    pid = os.fork()
    if pid == 0:
        report_signals("grandchild ", 0)
        say(f"grandchild ready {os.getpid()}")
        while True:
            signal.pause()

    def end(signum: int, frame: FrameType | None) -> None:
        say(f"got {signum}")
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os._exit(7)

    report_signals("", None)
    signal.signal(signal.SIGTERM, end)
    say(f"ready {os.getpid()} {os.getpgrp()}")
    while True:
        signal.pause()


def orphans(count: int) -> None:
    for _ in range(count):
        middle = os.fork()
        if middle == 0:
            middle = os.getpid()
            if os.fork() == 0:
                while os.getppid() == middle:  # until the middle process is gone
                    time.sleep(0.01)
                say(f"orphan {os.getpid()} {os.getppid()}")
                os._exit(0)
            os._exit(0)
        os.waitpid(middle, 0)
    say(f"spawned {count} {os.getpid()}")
    while True:
        signal.pause()


def daemon() -> None:
    middle = os.fork()
    if middle == 0:
        pid = os.fork()
        if pid == 0:
            os.execvp("sleep", ["sleep", "1000"])
        say(f"daemon {pid}")
        os._exit(0)
    os.waitpid(middle, 0)


def main(args: list[str]) -> None:
    mode = args[0]
    if mode == "signals":
        signals(kill_parent=args[1:] == ["kill-parent"])
    elif mode == "group":
        group()
    elif mode == "orphans":
        orphans(int(args[1]))
    elif mode == "daemon":
        daemon()
    else:
        sys.exit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
