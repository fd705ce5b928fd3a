"""dind's own functions, called in the interpreter of the dind under test.

tests/test_hardening.py runs this file with the Python next to ``DIND_UNDER_TEST``
(``python -I``: nothing from this checkout on sys.path), so it exercises the
``dind`` package installed there, whichever checkout that is. One JSON document
on stdout.

    probe.py open-path DIR        open_path and its fallback on a tree built in DIR
    probe.py decoders             the capability decoders on garbage
    probe.py analyse CAPTURE STATUS_JSON LAST_CAP
                                  the --check analysis of a capture (a directory
                                  under tests/fixtures/check/ of the dind's own
                                  checkout) with CapEff/CapBnd and cap_last_cap
                                  replaced
    probe.py host ARGS_JSON       dind.namespaces.host_mount_namespace(*ARGS)
    probe.py host-live            the same on this process's own links and tables
    probe.py package              where the dind package is
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path


def _outcome(call: Callable[[], int]) -> str:
    """'ok', or the errno name an OSError carried."""
    import errno

    try:
        fd = call()
    except OSError as err:
        return errno.errorcode.get(err.errno or 0, str(err.errno))
    os.close(fd)
    return "ok"


def open_path(base: str) -> dict[str, object]:
    """Build ``base/<case>/a/b/c/d`` trees, each with one component a symlink, and open them."""
    from dind import safepath

    names = ["a", "b", "c", "d"]
    cases: dict[str, str] = {}
    real = Path(base, "real", *names)
    real.mkdir(parents=True)
    cases["real"] = str(real)
    for i, name in enumerate(names):
        top = Path(base, f"link-{name}")
        above = top.joinpath(*names[:i])
        above.mkdir(parents=True)
        target = Path(base, f"target-{name}", *names[i:])
        target.mkdir(parents=True)
        (above / name).symlink_to(target.parent / name)  # same tree, reached by a link
        cases[f"link-{name}"] = str(top.joinpath(*names))
    dangling = Path(base, "dangling")
    dangling.mkdir()
    (dangling / "d").symlink_to(Path(base, "nowhere"))
    cases["dangling"] = str(dangling / "d")
    cases["dotdot"] = f"{base}/real/a/../a/b"
    results: dict[str, dict[str, str]] = {}
    directory = os.O_RDONLY | os.O_DIRECTORY
    for case, path in cases.items():
        results[case] = {
            "open_path": _outcome(partial(safepath.open_path, path)),
            "open_path_dir": _outcome(partial(safepath.open_path, path, directory)),
            "walk": _outcome(partial(safepath.walk, path, os.O_PATH)),
            "walk_dir": _outcome(partial(safepath.walk, path, directory)),
        }
    openat2 = safepath._openat2["usable"]
    safepath._openat2["usable"] = False  # what a kernel without openat2 makes it do
    fallback = {case: _outcome(partial(safepath.open_path, path)) for case, path in cases.items()}
    return {"openat2": openat2, "results": results, "fallback": fallback}


GARBAGE_MASKS = ["-1", "zz", "0x1f", "1_f", " 1f", "+1f", "f" * 100_000, "1" * 17, ""]
GARBAGE_LAST = ["99999999", "-1", "garbage", "4 0", "٣", "64"]


def decoders() -> dict[str, object]:
    from dind import procfs

    masks = {}
    for value in GARBAGE_MASKS:
        mask = procfs.cap_mask(value)
        masks[value[:20]] = None if mask is None else procfs.cap_names(mask)
    last = {value: procfs.cap_last(value) for value in GARBAGE_LAST}
    good = procfs.cap_mask("000001fffeffffff")
    return {
        "masks": masks,
        "last": last,
        "host": None if good is None else len(procfs.cap_names(good)),
        "last_40": procfs.cap_last("40\n"),
    }


def analyse(capture: str, status: dict[str, str], last: str) -> dict[str, object]:
    import dind
    from dind.check.analyse import analyse as run_analysis
    from dind.check.report import render_text

    try:
        from dind.check.capture import load
    except ImportError:  # before issue 12 the capture lived in snapshot.py
        from dind.check.snapshot import load  # type: ignore[import-not-found,no-redef]
    directory = Path(dind.__file__).parent.parent / "tests" / "fixtures" / "check" / capture
    snap = load(str(directory))
    lines = []
    for line in snap.files["/proc/self/status"].splitlines():
        key = line.split(":", 1)[0]
        lines.append(f"{key}:\t{status[key]}" if key in status else line)
    snap.files["/proc/self/status"] = "\n".join(lines) + "\n"
    snap.files["/proc/sys/kernel/cap_last_cap"] = last
    try:
        from dind.settings import Settings

        report = run_analysis(snap, Settings(command=[], check=True))
    except TypeError:  # analyse(snap, skip, strict) before issue 12
        report = run_analysis(snap)  # type: ignore[call-arg]
    return {"text": render_text(report)}


def host(args: list[str | None]) -> dict[str, object]:
    from dind.namespaces import host_mount_namespace

    verdict, evidence = host_mount_namespace(*args)
    return {"host": verdict, "evidence": evidence}


def _link(path: str) -> str | None:
    try:
        return os.readlink(path)
    except OSError:
        return None


def _text(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def host_live() -> dict[str, object]:
    links = [_link("/proc/self/ns/pid"), _link("/proc/self/ns/mnt"), _link("/proc/1/ns/mnt")]
    tables = [_text("/proc/self/mountinfo"), _text("/proc/1/mountinfo")]
    return {"links": links, **host([*links, *tables])}


def main(argv: list[str]) -> int:
    mode, *args = argv
    if mode == "open-path":
        answer = open_path(args[0])
    elif mode == "decoders":
        answer = decoders()
    elif mode == "analyse":
        answer = analyse(args[0], json.loads(args[1]), args[2])
    elif mode == "host":
        answer = host(json.loads(args[0]))
    elif mode == "host-live":
        answer = host_live()
    elif mode == "package":
        import dind

        answer = {"dir": str(Path(dind.__file__).parent)}
    else:
        print(f"unknown mode {mode!r}", file=sys.stderr)
        return 2
    print(json.dumps(answer))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
