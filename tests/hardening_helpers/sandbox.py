"""Many dind runs, each in a fresh mount namespace, for tests/test_hardening.py.

Start it as root inside ``unshare --mount --cgroup --propagation private``. Each run
forks a child that unshares a mount namespace of its own (a private copy of the
sandbox's), so every run starts from the same mount table and its mounts vanish
with it; the child reports what happened as one JSON line on stdout.
Only the standard library: it starts DIND, it never imports dind.

    sandbox.py race DIND ROOT NAMES VICTIM RUNS SECONDS -- ARGS...
        ROOT is a tmpfs in each run, holding each of NAMES (comma-separated) as a
        directory and, next to each, a symlink to VICTIM; from the moment
        ``DIND ARGS... -- true`` opens ROOT to list it (inotify), a racer process
        swaps each pair in turn (renameat2 RENAME_EXCHANGE) without pause.
        Reports whether anything got mounted on VICTIM; stops early at the first
        run that did, or after SECONDS.
    sandbox.py pair DIND ROOT RUNS -- ARGS...
        Two ``DIND ARGS... -- true`` started together in the same namespace, on
        the same (empty) ROOT. Reports both statuses and the mount points under
        ROOT mounted more than once.
    sandbox.py signal DIND GATE RUNS SLICES -- ARGS...
        ``DIND ARGS... -- sh -c 'echo STARTED'``, held (fanotify) when it opens
        GATE, then let run for 0..SLICES short slices (SIGCONT ... SIGSTOP), then
        sent SIGINT, SIGTERM or SIGHUP (at random) while stopped. Reports the
        signal, the status, both outputs and the mount table the run left.
    sandbox.py import-signal DIND MODULE SIGNAL DIR... -- ARGS...
        ``DIND ARGS...`` once (its settings from the environment), sent SIGNAL
        while it is held (fanotify) in its open of MODULE's code, the first file
        named ``MODULE.*`` it opens in one of the DIRs (dind's package directory
        and its __pycache__: give a private copy, every open there waits for this
        helper). Reports the file, the status, both outputs and the mount table.
    sandbox.py no-sh DIND HIDDEN -- ARGS...
        ``DIND ARGS...`` once, in a namespace where /bin/sh does not exist: the
        directory holding it is covered by an empty tmpfs (its contents kept
        reachable at HIDDEN, an empty directory), and only DIND's own interpreter
        is put back. Reports the status, both outputs and whether /bin/sh existed.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import random
import re
import select
import signal
import struct
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable

CLONE_NEWNS = 0x00020000
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
AT_FDCWD = -100
RENAME_EXCHANGE = 2
IN_OPEN = 0x20
IN_CLOEXEC = 0o2000000
FAN_CLOEXEC = 0x1
FAN_CLASS_CONTENT = 0x4
FAN_MARK_ADD = 0x1
FAN_OPEN_PERM = 0x10000
FAN_EVENT_ON_CHILD = 0x08000000
FAN_ALLOW = 0x1
TIMEOUT = 30

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = (
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_ulong,
    ctypes.c_char_p,
)
_libc.renameat2.argtypes = (
    ctypes.c_int,
    ctypes.c_char_p,
    ctypes.c_int,
    ctypes.c_char_p,
    ctypes.c_uint,
)
_libc.fanotify_mark.argtypes = (
    ctypes.c_int,
    ctypes.c_uint,
    ctypes.c_uint64,
    ctypes.c_int,
    ctypes.c_char_p,
)
_libc.inotify_add_watch.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), what)


def mount(source: str | None, target: str, fstype: str | None, flags: int) -> None:
    _check(
        _libc.mount(
            source.encode() if source else None,
            target.encode(),
            fstype.encode() if fstype else None,
            flags,
            None,
        ),
        target,
    )


def _watch(path: str) -> int:
    """An inotify descriptor that becomes readable when ``path`` is opened."""
    notify = _libc.inotify_init1(IN_CLOEXEC)
    if notify < 0 or _libc.inotify_add_watch(notify, path.encode(), IN_OPEN) < 0:
        raise OSError(ctypes.get_errno(), "inotify", path)
    return int(notify)


def mount_points() -> list[str]:
    """Mount points of this process's mount namespace (octal escapes decoded), in order."""
    with open("/proc/self/mountinfo") as f:
        return [
            re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[4])
            for line in f
        ]


def fresh(job: Callable[[], dict[str, object]]) -> dict[str, object]:
    """``job`` run in a forked child, in a new private mount namespace; its JSON answer."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        try:
            _check(_libc.unshare(CLONE_NEWNS), "unshare")
            mount(None, "/", None, MS_REC | MS_PRIVATE)
            answer = job()
        except BaseException as err:  # reported, never raised across the fork
            answer = {"error": f"{type(err).__name__}: {err}"}
        os.write(write_end, json.dumps(answer).encode())
        os._exit(0)
    os.close(write_end)
    chunks = []
    while chunk := os.read(read_end, 65536):
        chunks.append(chunk)
    os.close(read_end)
    os.waitpid(pid, 0)
    reply: dict[str, object] = json.loads(b"".join(chunks) or b'{"error": "no answer"}')
    return reply


def run_dind(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT, check=False)


def race(dind: str, root: str, names: list[str], victim: str, args: list[str]) -> dict[str, object]:
    mount("tmpfs", root, "tmpfs", 0)  # already a mount point: dind keeps it, reads its entries
    pairs = []
    for name in names:
        os.mkdir(f"{root}/{name}")
        os.symlink(victim, f"{root}/.swap-{name}")
        pairs.append((f"{root}/{name}".encode(), f"{root}/.swap-{name}".encode()))
    notify = _watch(root)
    racer = os.fork()
    if racer == 0:  # idle while Python starts; swapping from the moment dind lists ROOT
        os.nice(-10)  # a few milliseconds of work: let a loaded machine not starve it
        os.read(notify, 4096)
        exchange = _libc.renameat2
        while True:  # EBUSY once dind mounted on the directory: harmless, go on
            for a, b in pairs:
                exchange(AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE)
    os.close(notify)
    try:
        done = run_dind([dind, *args, "--", "true"])
    finally:
        os.kill(racer, signal.SIGKILL)
        os.waitpid(racer, 0)
    hit = [p for p in mount_points() if p == victim or p.startswith(victim + "/")]
    return {"status": done.returncode, "stderr": done.stderr, "victim_mounts": hit}


def pair(dind: str, root: str, args: list[str]) -> dict[str, object]:
    argv = [dind, *args, "--", "true"]
    both = [
        subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=TIMEOUT) for p in both]
    under = Counter(p for p in mount_points() if p == root or p.startswith(root + "/"))
    return {
        "statuses": [p.returncode for p in both],
        "stderr": [err for _, err in outputs],
        "stacked": sorted(p for p, n in under.items() if n > 1),
    }


def _gate(path: str) -> int:
    """A fanotify descriptor on which every open of ``path`` waits for our answer."""
    gate = _libc.fanotify_init(FAN_CLASS_CONTENT | FAN_CLOEXEC, os.O_RDONLY)
    if gate < 0 or _libc.fanotify_mark(gate, FAN_MARK_ADD, FAN_OPEN_PERM, AT_FDCWD, path.encode()):
        raise OSError(ctypes.get_errno(), "fanotify", path)
    return int(gate)


def _stopped(pid: int) -> bool:
    """Wait until ``pid`` is in a stop state; False if it ended (or became a zombie) first."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            return False
        if state in ("T", "t"):
            return True
        if state in ("Z", "X"):
            return False
        time.sleep(0.0001)
    return False


def _hold_then_signal(
    proc: subprocess.Popen[str], gate: int, slices: int, sig: int
) -> tuple[bool, int]:
    """Stop ``proc`` as its open of the gated file returns, let it run a random number of
    slices, then send ``sig`` while it is stopped. Whether the gate was reached, and
    how many slices ran."""
    gated, _, _ = select.select([gate], [], [], TIMEOUT)
    if not gated:
        return False, 0
    event = os.read(gate, 4096)
    _, _, _, _, _, fd, _ = struct.unpack_from("=IBBHQii", event)
    proc.send_signal(signal.SIGSTOP)  # pending until the open returns: stops right there
    os.write(gate, struct.pack("=iI", fd, FAN_ALLOW))
    os.close(fd)
    wanted = random.randint(0, slices)
    taken = 0
    alive = _stopped(proc.pid)
    while alive and taken < wanted:
        proc.send_signal(signal.SIGCONT)
        time.sleep(0.0002)
        proc.send_signal(signal.SIGSTOP)
        alive = _stopped(proc.pid)
        taken += 1
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(sig)
    return True, taken


def signalled(dind: str, gate_path: str, slices: int, args: list[str]) -> dict[str, object]:
    """dind held at its open of GATE (the start of detection), then run in short slices
    (SIGCONT, a fraction of a millisecond, SIGSTOP): after a random number of slices
    the signal is sent while it is stopped, so it arrives exactly there, whatever the
    machine's load."""
    gate = _gate(gate_path)
    sig = random.choice([signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
    proc = subprocess.Popen(
        [dind, *args, "--", "sh", "-c", "echo STARTED"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        gated, taken = _hold_then_signal(proc, gate, slices, sig)
    finally:  # never leave dind stopped: it may hold its lock on /
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGCONT)
    os.close(gate)
    out, err = proc.communicate(timeout=TIMEOUT)
    return {
        "signal": int(sig),
        "gated": bool(gated),
        "slices": taken,
        "status": proc.returncode,
        "stdout": out,
        "stderr": err,
        "mounts": mount_points(),
    }


def _event_paths(gate: int) -> list[tuple[int, int, str]]:
    """(descriptor, pid, path) of each permission event waiting on ``gate``."""
    data = os.read(gate, 65536)
    events = []
    offset = 0
    while offset < len(data):
        length, _, _, _, _, fd, pid = struct.unpack_from("=IBBHQii", data, offset)
        events.append((fd, pid, os.readlink(f"/proc/self/fd/{fd}")))
        offset += length
    return events


def signalled_at_import(
    dind: str, module: str, sig: int, dirs: list[str], args: list[str]
) -> dict[str, object]:
    gate = _libc.fanotify_init(FAN_CLASS_CONTENT | FAN_CLOEXEC, os.O_RDONLY)
    if gate < 0:
        raise OSError(ctypes.get_errno(), "fanotify_init")
    try:
        for path in dirs:
            mask = FAN_OPEN_PERM | FAN_EVENT_ON_CHILD
            if _libc.fanotify_mark(gate, FAN_MARK_ADD, mask, AT_FDCWD, path.encode()):
                raise OSError(ctypes.get_errno(), "fanotify_mark", path)
        proc = subprocess.Popen(
            [dind, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        held = ""
        deadline = time.monotonic() + TIMEOUT
        while proc.poll() is None:
            if time.monotonic() > deadline:
                proc.kill()
            if not select.select([gate], [], [], 0.05)[0]:
                continue
            for fd, pid, path in _event_paths(gate):
                if not held and pid == proc.pid and os.path.basename(path).startswith(module + "."):
                    held = path
                    proc.send_signal(sig)  # arrives as the open returns
                os.write(gate, struct.pack("=iI", fd, FAN_ALLOW))
                os.close(fd)
    finally:
        os.close(gate)  # any open still waiting is let through
    out, err = proc.communicate(timeout=TIMEOUT)
    return {
        "held": held,
        "status": proc.returncode,
        "stdout": out,
        "stderr": err,
        "mounts": mount_points(),
    }


def without_sh(dind: str, hidden: str, args: list[str]) -> dict[str, object]:
    bindir = os.path.dirname(os.path.realpath("/bin/sh"))
    with open(dind, "rb") as f:
        interpreter = os.path.realpath(f.readline()[2:].split()[0].decode())
    mount(bindir, hidden, None, MS_BIND)
    mount("tmpfs", bindir, "tmpfs", 0)
    if os.path.dirname(interpreter) == bindir:  # e.g. a venv of /usr/bin/python3
        back = os.path.join(bindir, os.path.basename(interpreter))
        open(back, "w").close()
        mount(os.path.join(hidden, os.path.basename(interpreter)), back, None, MS_BIND)
    sh_exists = os.path.lexists("/bin/sh")
    done = run_dind([dind, *args])
    return {
        "sh_exists": sh_exists,
        "status": done.returncode,
        "stdout": done.stdout,
        "stderr": done.stderr,
    }


def main(argv: list[str]) -> int:
    split = argv.index("--")
    mode, dind, *params = argv[:split]
    args = argv[split + 1 :]
    if mode == "race":
        root, names, victim, runs, seconds = params
        deadline = time.monotonic() + float(seconds)
        for _ in range(int(runs)):
            answer = fresh(lambda: race(dind, root, names.split(","), victim, args))
            print(json.dumps(answer), flush=True)
            if answer.get("victim_mounts") or time.monotonic() > deadline:
                break
    elif mode == "pair":
        root, runs = params
        for _ in range(int(runs)):
            print(json.dumps(fresh(lambda: pair(dind, root, args))), flush=True)
    elif mode == "signal":
        gate, runs, slices = params
        for _ in range(int(runs)):
            answer = fresh(lambda: signalled(dind, gate, int(slices), args))
            print(json.dumps(answer), flush=True)
    elif mode == "import-signal":
        module, sig, *dirs = params
        answer = fresh(lambda: signalled_at_import(dind, module, int(sig), dirs, args))
        print(json.dumps(answer), flush=True)
    elif mode == "no-sh":
        (hidden,) = params
        print(json.dumps(fresh(lambda: without_sh(dind, hidden, args))), flush=True)
    else:
        print(f"unknown mode {mode!r}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
