"""Issue 13, the entrypoint part: each original attack replayed, and what dind does now.

Every test here reproduces one report of the issue and failed on the code before
that work (commit 0f0427c). They run the dind named by ``DIND_UNDER_TEST`` (default:
this checkout's), and the tests of dind's own functions run in that dind's own
interpreter (tests/hardening_helpers/probe.py), so the same file judges any
checkout::

    DIND_UNDER_TEST=/path/to/other/.venv/bin/dind .venv/bin/python -m pytest tests/test_hardening.py

Real runs happen only inside ``unshare --mount --cgroup --propagation private``,
with the cgroup root under a scratch directory. One exception, the host refusal:
dind is run for real in the machine's own mount namespace only after its
``--dry-run`` of the same command line showed that it refuses there, and anything
it mounted anyway is unmounted again.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests import conftest
from tests.conftest import clean_env, root_only

DIND = os.environ.get("DIND_UNDER_TEST") or conftest.DIND
PYTHON = str(Path(DIND).with_name("python")) if Path(DIND).with_name("python").exists() else None
HELPERS = Path(__file__).parent / "hardening_helpers"
UNSHARE = ["unshare", "--mount", "--cgroup", "--propagation", "private"]
SHORT = 20
"""Seconds any single dind run may take here; a run that needs longer is a hang."""

RAN = "@@command-ran"
STATUS = "@@status "
AFTER = "@@mounts-after"
SANDBOX_SCRIPT = f"""
"$0" "$@"
echo "{STATUS}$?"
echo {AFTER}
cat /proc/self/mountinfo
"""
"""dind (``$0``) with its arguments, then what its run left: the mount table is read
after dind ended too, so a mount made before a failure still shows."""
SHOW_MOUNTS = ["sh", "-c", f"echo {RAN}; cat /proc/self/mountinfo"]
"""The command sandboxed runs give dind by default: it shows the table dind left it."""


# --------------------------------------------------------------------------- helpers


def run(
    argv: list[str],
    *,
    env: dict[str, str] | None = None,
    timeout: float = SHORT,
    cwd: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """``argv`` in a session of its own, with the clean environment plus ``env``.

    On a timeout every process of that session is killed (by PID), so nothing it
    started outlives the test (an old dind blocked on a FIFO, one left stopped), and
    TimeoutExpired is raised.
    """
    with subprocess.Popen(
        argv,
        env=clean_env(**(env or {})),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="surrogateescape",
        start_new_session=True,
        cwd=cwd,
    ) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for pid in _session(proc.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            proc.communicate()
            raise
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def _session(sid: int) -> list[int]:
    """PIDs of the processes of session ``sid``."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError), open(f"/proc/{entry}/stat") as f:
                if int(f.read().rsplit(")", 1)[1].split()[3]) == sid:
                    found.append(int(entry))
    return found


def dind(
    *args: str, env: dict[str, str] | None = None, timeout: float = SHORT
) -> subprocess.CompletedProcess[str]:
    """The dind under test in this mount namespace: --dry-run, --check, usage errors (and
    the one real run of test_a_real_run_on_the_host_is_refused_and_changes_nothing)."""
    return run([DIND, *args], env=env, timeout=timeout)


def redirected(
    redirection: str, *args: str, sandbox: bool = False, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """dind with a shell redirection applied to its own descriptors (``>&-``, ``2>/dev/full``)."""
    argv = ["sh", "-c", f'exec "$0" "$@" {redirection}', DIND, *args]
    return run([*UNSHARE, *argv] if sandbox else argv, env=env)


class Sandboxed:
    """What a dind run in a throwaway mount namespace did."""

    def __init__(self, result: subprocess.CompletedProcess[str]) -> None:
        out = result.stdout
        assert STATUS in out and AFTER in out, (out, result.stderr)
        self.stderr = result.stderr
        self.ran = RAN in out.split(STATUS, 1)[0]
        self.status = int(out.split(STATUS, 1)[1].split("\n", 1)[0])
        self.during = mount_points(out.split(RAN, 1)[1].split(STATUS, 1)[0]) if self.ran else []
        self.after = mount_points(out.split(AFTER, 1)[1])

    def mounted_at_or_under(self, path: Path | str) -> list[str]:
        """Mount points at or below ``path``, while the command ran or after dind ended."""
        where = str(path)
        return [p for p in [*self.during, *self.after] if p == where or p.startswith(where + "/")]


def sandboxed(*args: str, command: list[str] | None = None) -> Sandboxed:
    """dind run for real in a new private mount (and cgroup) namespace; see SANDBOX_SCRIPT."""
    return Sandboxed(
        run([*UNSHARE, "sh", "-c", SANDBOX_SCRIPT, DIND, *args, "--", *(command or SHOW_MOUNTS)])
    )


def mount_points(table: str) -> list[str]:
    """Mount points of a mountinfo text, octal escapes decoded."""
    return [
        re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[4])
        for line in table.splitlines()
        if len(line.split()) > 4
    ]


def one_error(stderr: str) -> str:
    """The single ``dind: error:`` line of a run, and never a traceback."""
    assert "Traceback" not in stderr, stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("dind: error: "), stderr
    return lines[0].removeprefix("dind: error: ")


@functools.cache
def known_steps() -> tuple[str, ...]:
    """The step names this dind accepts for --skip, as its usage error lists them."""
    result = dind("--skip", "no-such-step", "--dry-run")
    found = re.search(r"\(steps: ([^)]*)\)", result.stderr)
    assert result.returncode == 2 and found, result.stderr
    return tuple(found.group(1).split(", "))


def skip_all_but(*kept: str) -> str:
    return ",".join(step for step in known_steps() if step not in kept)


def cgroup_only(root: Path | str) -> list[str]:
    """Options for a run whose only step is cgroup-mounts, on ``root``."""
    return ["--cgroup-root", str(root), "--skip", skip_all_but("cgroup-mounts")]


def nothing() -> list[str]:
    """Options for a run that changes nothing: every step skipped."""
    return ["--skip", skip_all_but()]


def probe(*args: str, timeout: float = 10) -> dict[str, Any]:
    """tests/hardening_helpers/probe.py in the interpreter of the dind under test."""
    if PYTHON is None:
        pytest.fail(f"no python next to {DIND}: cannot call its functions")
    try:
        result = run([PYTHON, "-I", str(HELPERS / "probe.py"), *args], timeout=timeout, cwd="/")
    except subprocess.TimeoutExpired:
        pytest.fail(f"probe {' '.join(args)} still running after {timeout} s: it hangs")
    assert result.returncode == 0, result.stderr
    answer: dict[str, Any] = json.loads(result.stdout)
    return answer


def many_runs(
    mode: str,
    *params: str,
    args: list[str],
    timeout: float,
    dind: str = DIND,
    env: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    """tests/hardening_helpers/sandbox.py inside a sandbox: one dict per dind run."""
    helper = [sys.executable, str(HELPERS / "sandbox.py"), mode, dind, *params, "--", *args]
    result = run([*UNSHARE, *helper], env=env, timeout=timeout)
    assert result.returncode == 0, result.stderr
    runs = [json.loads(line) for line in result.stdout.splitlines()]
    errors = [r["error"] for r in runs if "error" in r]
    assert runs and not errors, (errors, result.stderr)
    return runs


def planned_mounts(*args: str) -> list[str]:
    """Targets of the mounts ``--dry-run`` plans (in a sandbox: no host row in the way)."""
    result = run([*UNSHARE, DIND, "--dry-run", *args])
    assert result.returncode == 0, result.stderr
    return [
        line.split()[-1]
        for line in result.stdout.splitlines()
        if line.split()[1:3] == ["pending", "mount"]
    ]


def cpu_directory() -> str:
    """The directory dind gives the v1 hierarchy holding ``cpu`` (``cpu`` or ``cpu,cpuacct``)."""
    with open("/proc/1/cgroup") as f:
        for line in f:
            controllers = line.split(":")[1]
            if "cpu" in controllers.split(","):
                return controllers
    pytest.skip("no cgroup v1 cpu hierarchy on this machine: nothing to race for")


def on_the_host() -> bool:
    """This test process shares the machine's own mount namespace (PID 1's).

    Where PID 1's ns/mnt link is unreadable: its mount table shares mount IDs with ours
    (every mount namespace has IDs of its own), and we are in the initial PID namespace.
    """
    with contextlib.suppress(OSError):
        return os.readlink("/proc/self/ns/mnt") == os.readlink("/proc/1/ns/mnt")
    ids = []
    for table in ("/proc/self/mountinfo", "/proc/1/mountinfo"):
        with open(table) as f:
            ids.append({line.split()[0] for line in f if line.strip()})
    return os.readlink("/proc/self/ns/pid") == "pid:[4026531836]" and bool(ids[0] & ids[1])


# ----------------------------------------------- 1. a symlinked cgroup root is followed


@root_only
@pytest.mark.parametrize("spelling", ["{link}", "//{link}/./"])
def test_a_symlinked_cgroup_root_is_refused_and_its_target_untouched(
    scratch: Path, spelling: str
) -> None:
    """Was: /cgroup -> /etc put a tmpfs over /etc, exit 0, not a word."""
    victim = scratch / "victim"
    victim.mkdir()
    (victim / "keep").write_text("precious")
    link = scratch / "cgroup"
    link.symlink_to(victim)
    run = sandboxed(*cgroup_only(spelling.format(link=link)))
    assert (run.status, run.ran) == (125, False), run.stderr
    message = one_error(run.stderr)
    assert message == (
        f"the cgroup root {link} goes through a symlink ({link}); "
        "dind never mounts through a symlink: give the real path"
    )
    assert run.mounted_at_or_under(victim) == []
    assert sorted(os.listdir(victim)) == ["keep"]


@root_only
def test_a_symlinked_parent_of_the_root_is_refused_and_nothing_created_elsewhere(
    scratch: Path,
) -> None:
    """Was: a symlinked parent made dind create (and mount on) directories elsewhere."""
    elsewhere = scratch / "elsewhere"
    elsewhere.mkdir()
    parent = scratch / "parent"
    parent.symlink_to(elsewhere)
    run = sandboxed(*cgroup_only(parent / "deeper" / "cgroup"))
    assert (run.status, run.ran) == (125, False), run.stderr
    assert f"goes through a symlink ({parent})" in one_error(run.stderr)
    assert os.listdir(elsewhere) == []
    assert run.mounted_at_or_under(elsewhere) == []


@root_only
def test_a_cgroup_root_in_proc_is_refused(scratch: Path) -> None:
    """Was: --cgroup-root /proc/self mounted a tmpfs over /proc/<pid>."""
    run = sandboxed(*cgroup_only("/proc/self"))
    assert (run.status, run.ran) == (125, False), run.stderr
    assert (
        one_error(run.stderr) == "the cgroup root /proc/self lies in /proc, a kernel-provided tree"
    )
    assert [p for p in run.after if re.match(r"/proc/(self|\d+)(/|$)", p)] == []


@pytest.mark.parametrize(("root", "tree"), [("/dev/dind-x", "/dev"), ("/sys/kernel/x", "/sys")])
def test_a_cgroup_root_in_dev_or_sys_is_refused_even_in_a_dry_run(root: str, tree: str) -> None:
    result = dind("--dry-run", *cgroup_only(root))
    assert result.returncode == 125
    assert (
        one_error(result.stderr) == f"the cgroup root {root} lies in {tree}, a kernel-provided tree"
    )
    assert result.stdout == ""


def test_the_cgroup_root_spelling_is_normalised_once_and_dotdot_refused(scratch: Path) -> None:
    """Pins the route of issue 12: ``//x/./y/`` is planned as ``/x/y``; ``..`` is refused.

    /sys/fs/cgroup, the kernel's own place for cgroups, stays allowed.
    """
    plan = dind("--dry-run", *cgroup_only(f"/{scratch}/./cg/"))
    assert plan.returncode == 0, plan.stderr
    assert f"mkdir {scratch}/cg\n" in plan.stdout
    assert f"cgroup {scratch}/cg\n" in plan.stdout
    assert "//" not in plan.stdout and "/./" not in plan.stdout
    dotdot = dind("--dry-run", *cgroup_only(f"{scratch}/a/../cg"))
    assert dotdot.returncode == 2
    assert one_error(dotdot.stderr) == (
        f"--cgroup-root: '{scratch}/a/../cg' has a '..' component (see 'dind --help')"
    )
    allowed = dind("--dry-run", *cgroup_only("/sys/fs/cgroup/dind"))
    assert allowed.returncode == 0, allowed.stderr
    assert "cgroup /sys/fs/cgroup/dind\n" in allowed.stdout


# --------------------------------------------------- 2. check-then-mount race


@root_only
def test_swapping_a_hierarchy_directory_for_a_symlink_never_mounts_on_the_victim(
    scratch: Path,
) -> None:
    """Was: swapping ROOT/cpu for a symlink between check and mount hit the victim.

    A racer exchanges ROOT/cpu with a symlink to the victim without pause from the
    moment dind lists ROOT (renameat2 RENAME_EXCHANGE: the name is always there).
    The code before issue 13 mounted on the victim in 48 of 100 such runs on an idle
    machine, about 1 in 4 with two busy loops competing for its 2 CPUs: 60 runs (at
    most 25 s) leave it no real chance to pass. Each run is a fresh mount namespace.
    """
    name = cpu_directory()
    root, victim = scratch / "root", scratch / "victim"
    root.mkdir()
    victim.mkdir()
    runs = many_runs(
        "race", str(root), name, str(victim), "60", "25", args=cgroup_only(root), timeout=90
    )
    lost = [r for r in runs if r["victim_mounts"]]
    assert lost == [], f"mounted on the victim in {len(lost)} of {len(runs)} runs: {lost[0]}"
    swapped = 0
    for r in runs:
        stderr = str(r["stderr"])
        assert "Traceback" not in stderr, stderr
        assert r["status"] in (0, 125), r
        if r["status"] == 125:
            assert (
                "Too many levels of symbolic links [ELOOP]: a symlink is in the way: "
                "dind never mounts, creates or writes through a symlink"
            ) in one_error(stderr)
        swapped += "symlink" in stderr
    assert swapped > 0, "the racer never got in the way: this test proved nothing"
    assert os.listdir(victim) == []


def test_open_path_refuses_a_symlink_in_any_component(scratch: Path) -> None:
    """The primitive behind every mount, mkdir and write: openat2(RESOLVE_NO_SYMLINKS),
    and its component-by-component fallback (``_walk``) for kernels without openat2."""
    answer = probe("open-path", str(scratch))
    results = answer["results"]
    assert isinstance(results, dict)
    assert results["real"] == dict.fromkeys(
        ("open_path", "open_path_dir", "walk", "walk_dir"), "ok"
    )
    for case in ("link-a", "link-b", "link-c", "link-d", "dangling"):
        assert set(results[case].values()) == {"ELOOP"}, (case, results[case])
    assert set(results["dotdot"].values()) == {"EINVAL"}
    fallback = answer["fallback"]
    assert isinstance(fallback, dict)
    assert fallback == {
        "real": "ok",
        **dict.fromkeys(("link-a", "link-b", "link-c", "link-d", "dangling"), "ELOOP"),
        "dotdot": "EINVAL",
    }


# --------------------------------------------------- 4. two runs on the same root at once


@root_only
def test_two_runs_at_once_on_the_same_root_never_stack_mounts(scratch: Path) -> None:
    """Was: an entrypoint and a ``docker exec dind ...`` racing mounted every hierarchy twice
    (4 pairs in 100), or one exited 125 with a misleading "busy" hint (7 in 100).
    Measured before the fix with this test: 27 of 30 pairs went wrong."""
    root = scratch / "root"
    root.mkdir()
    runs = many_runs("pair", str(root), "20", args=cgroup_only(root), timeout=60)
    for r in runs:
        assert r["statuses"] == [0, 0], r["stderr"]
        assert r["stacked"] == [], r
        assert r["stderr"] == ["", ""], r


# --------------------------------------------------- 6. a signal during set-up


def _signal_line(signum: int) -> str:
    name = {1: "SIGHUP", 2: "SIGINT", 15: "SIGTERM"}[signum]
    return f"dind: error: {name} during set-up: set-up finished, the command is not started"


@root_only
def test_a_signal_during_set_up_never_tears_it_nor_prints_a_traceback(scratch: Path) -> None:
    """Was: a KeyboardInterrupt traceback in 20 of 30 tries, set-up left half done.

    Each run is held when dind opens its /proc/1/cgroup (the start of detection),
    then let run for a random number of short slices and sent SIGINT, SIGTERM or
    SIGHUP while stopped, so the signal lands anywhere from detection to the exec whatever
    the machine's load. Allowed outcomes: the command started (the signal came
    after), or 128+N with the one line and the set-up complete; killed by the
    signal only if the set-up was complete (it reached the command's exec).
    """
    proc_cgroup = scratch / "proc_1_cgroup"
    shutil.copyfile("/proc/1/cgroup", proc_cgroup)
    args = ["--proc-cgroup", str(proc_cgroup), *cgroup_only(scratch / "root")]
    expected = sorted(planned_mounts(*args))
    assert expected, "the plan mounts nothing: this test would prove nothing"
    runs = many_runs("signal", str(proc_cgroup), "30", "15", args=args, timeout=120)
    interrupted = 0
    for r in runs:
        signum, status, stderr = int(str(r["signal"])), r["status"], str(r["stderr"])
        assert r["gated"], r
        assert "Traceback" not in stderr, stderr
        mounts = [m for m in r["mounts"] if m.startswith(str(scratch / "root"))]
        assert sorted(mounts) == expected, ("set-up left half done", r)
        if "STARTED" in str(r["stdout"]):
            assert stderr == "", r
        elif status == 128 + signum:
            assert stderr == _signal_line(signum) + "\n", r
            interrupted += 1
        else:
            assert status == -signum and stderr == "", r  # at the exec, set-up complete
    assert interrupted > 0, "no signal landed during set-up: this test proved nothing"


@root_only
@pytest.mark.parametrize(
    "signum", [pytest.param(signal.SIGINT, id="SIGINT"), pytest.param(signal.SIGTERM, id="SIGTERM")]
)
def test_a_signal_while_dind_loads_its_own_modules_waits_for_the_set_up_too(
    scratch: Path, signum: int
) -> None:
    """The same signal, sent while dind's entry point still imports dind.settings.

    It is held there (fanotify, on a private copy of the package, started by the
    installed console script's own code), so it arrives exactly then. A dind that holds the
    signals from its first own line treats it like any other: 128+N, the one line,
    set-up complete. Before that line only the interpreter runs, which no Python
    code can guard; the modules dind imports are its own.
    """
    package = Path(probe("package")["dir"])
    lib = scratch / "lib"
    shutil.copytree(package, lib / "dind")
    (lib / "dind" / "__pycache__").mkdir(exist_ok=True)
    launcher = scratch / "dind"
    script = Path(DIND).read_text().split("\n", 1)[1]  # the console script, its shebang off
    launcher.write_text(f"#!{PYTHON} -S\nimport sys\nsys.path.insert(0, {str(lib)!r})\n{script}")
    launcher.chmod(0o755)
    root = scratch / "root"
    expected = sorted(planned_mounts(*cgroup_only(root)))
    (run,) = many_runs(
        "import-signal",
        "settings",
        str(int(signum)),
        str(lib / "dind"),
        str(lib / "dind" / "__pycache__"),
        args=["sh", "-c", "echo STARTED"],
        timeout=60,
        dind=str(launcher),
        env={"DIND_CGROUP_ROOT": str(root), "DIND_SKIP": skip_all_but("cgroup-mounts")},
    )
    assert "/settings." in run["held"], run
    assert (run["status"], run["stderr"]) == (128 + signum, _signal_line(signum) + "\n"), run
    assert run["stdout"] == ""
    assert sorted(m for m in run["mounts"] if m.startswith(str(root))) == expected


# --------------------------------------------------- 7. stdout or stderr closed or full


@pytest.mark.parametrize("mode", ["--dry-run", "--check"])
@pytest.mark.parametrize(
    ("redirection", "reason"),
    [(">&-", "stdout is closed"), (">/dev/full", "No space left on device")],
)
def test_stdout_that_cannot_be_written_is_125_and_one_line(
    mode: str, redirection: str, reason: str
) -> None:
    """Was: ``>&-`` gave "internal error" plus a traceback and exit 1."""
    args = [mode, *nothing()] if mode == "--dry-run" else [mode]
    result = redirected(redirection, *args)
    assert result.returncode == 125
    assert one_error(result.stderr) == f"cannot write to stdout: {reason}"


@pytest.mark.parametrize("option", ["--help", "--version"])
def test_help_and_version_on_a_full_stdout_are_one_line_not_a_traceback(option: str) -> None:
    """The same rule for the two other things dind prints on stdout."""
    result = redirected(">/dev/full", option)
    assert result.returncode == 125
    assert one_error(result.stderr) == "cannot write to stdout: No space left on device"


@root_only
@pytest.mark.parametrize("init", [[], ["--init"]], ids=["exec", "init"])
@pytest.mark.parametrize(
    ("redirection", "verbose"),
    [("2>&-", []), ("2>&-", ["-v"]), ("2>/dev/full", ["-v"])],
    ids=["closed-quiet", "closed-verbose", "full-verbose"],
)
def test_stderr_closed_or_full_never_stops_the_command(
    scratch: Path, init: list[str], redirection: str, verbose: list[str]
) -> None:
    """Was: with stderr closed (or full, with something to say) dind exited 1 and never
    ran the command. ``-v`` logs every mount it makes, so it has a lot to say."""
    args = cgroup_only(scratch / "root") if verbose else nothing()
    result = redirected(
        redirection, *verbose, *args, *init, "--", "sh", "-c", "echo ran; exit 3", sandbox=True
    )
    assert (result.returncode, result.stdout) == (3, "ran\n"), result.stderr


# --------------------------------------------------- 8. execvp(3) semantics


@pytest.fixture
def scripts(scratch: Path) -> Path:
    (scratch / "no-shebang").write_text('echo "sh ran $0 with $1"; exit 7\n')
    (scratch / "missing-interpreter").write_text("#!/nonexistent/interp -x\necho hi\n")
    (scratch / "binary").write_bytes(b"\x7fELF\x02\x01\x01\0garbage")
    (scratch / "nul-bytes").write_bytes(b"echo hi\0\0\0\n")
    for script in scratch.iterdir():
        script.chmod(0o755)
    return scratch


@root_only
@pytest.mark.parametrize("init", [[], ["--init"]], ids=["exec", "init"])
def test_a_script_without_shebang_runs_with_bin_sh_but_a_binary_does_not(
    scripts: Path, init: list[str]
) -> None:
    """Was: 126 for a script with no ``#!`` line, which execvp(3) runs with /bin/sh."""
    direct = sandboxed(*nothing(), *init, command=[str(scripts / "no-shebang"), "arg1"])
    assert direct.status == 7, direct.stderr
    assert direct.stderr == ""
    found = run(
        [*UNSHARE, DIND, *nothing(), *init, "no-shebang", "arg1"],
        env={"PATH": f"{scripts}:/usr/bin:/bin"},
    )
    assert (found.returncode, found.stdout) == (7, f"sh ran {scripts}/no-shebang with arg1\n")
    for name in ("binary", "nul-bytes"):
        binary = sandboxed(*nothing(), *init, command=[str(scripts / name)])
        assert binary.status == 126
        assert one_error(binary.stderr) == f"{scripts / name}: cannot execute: Exec format error"


@root_only
@pytest.mark.parametrize("init", [[], ["--init"]], ids=["exec", "init"])
def test_a_missing_interpreter_is_named_not_reported_as_a_missing_command(
    scripts: Path, init: list[str]
) -> None:
    """Was: "command not found" (127) for a script that exists."""
    run = sandboxed(*nothing(), *init, command=[str(scripts / "missing-interpreter")])
    assert run.status == 127
    assert one_error(run.stderr) == (
        f"{scripts}/missing-interpreter: cannot execute: interpreter /nonexistent/interp not found"
    )


@root_only
@pytest.mark.parametrize("init", [[], ["--init"]], ids=["exec", "init"])
def test_a_script_without_shebang_where_bin_sh_is_missing_names_bin_sh(
    scripts: Path, init: list[str]
) -> None:
    """The interpreter execvp(3) picks for a script without ``#!`` is /bin/sh: when an
    image has none, that is what is missing, not the script."""
    hidden = scripts / "hidden"
    hidden.mkdir()
    runs = many_runs(
        "no-sh", str(hidden), args=[*nothing(), *init, str(scripts / "no-shebang")], timeout=60
    )
    (run,) = runs
    assert run["sh_exists"] is False
    assert run["status"] == 127
    assert one_error(run["stderr"]) == (
        f"{scripts}/no-shebang: cannot execute: interpreter /bin/sh not found"
    )


# --------------------------------------------------- 9. a capture that is no regular file


@pytest.fixture
def not_regular(scratch: Path) -> dict[str, str]:
    fifo = scratch / "fifo"
    os.mkfifo(fifo)
    (scratch / "directory").mkdir()
    return {"fifo": str(fifo), "directory": str(scratch / "directory"), "device": "/dev/zero"}


@pytest.mark.parametrize("kind", ["fifo", "directory", "device"])
@pytest.mark.parametrize(
    ("option", "what"), [("--proc-cgroup", "cgroup"), ("--mountinfo", "mountinfo")]
)
def test_a_capture_that_is_not_a_regular_file_is_refused_at_once(
    not_regular: dict[str, str], kind: str, option: str, what: str
) -> None:
    """Was: a FIFO blocked forever; /dev/zero was read up to 64 MiB before a refusal.

    procfs files, regular files of size 0, stay welcome (the default ones are).
    """
    procfs = dind("--dry-run", option, f"/proc/self/{what}", *nothing())
    assert procfs.returncode == 0, procfs.stderr
    path = not_regular[kind]
    try:
        result = dind("--dry-run", option, path, timeout=10)
    except subprocess.TimeoutExpired:
        pytest.fail(f"dind --dry-run {option} {path} still blocked after 10 s")
    assert result.returncode == 125
    assert one_error(result.stderr) == f"{path}: not a regular file; not a {what} file"
    assert result.stdout == ""


def test_check_with_a_fifo_capture_answers(not_regular: dict[str, str]) -> None:
    try:
        result = dind("--check", "--proc-cgroup", not_regular["fifo"], timeout=10)
    except subprocess.TimeoutExpired:
        pytest.fail("dind --check --proc-cgroup FIFO still blocked after 10 s")
    assert result.returncode == 1
    assert f"{not_regular['fifo']}: not a regular file; not a cgroup file" in result.stdout
    assert "Traceback" not in result.stderr


# --------------------------------------------------- 10. --log-format json for usage errors


@pytest.mark.parametrize(
    "args",
    [
        ["--log-format", "json", "--frobnicate"],
        ["--log-format=json", "--frobnicate"],
        ["-v", "--log-format", "json", "--frobnicate"],
        ["--skip", "tmp", "--log-format", "json", "--frobnicate"],
        ["--log-format", "json", "--skip", "bogus", "true"],
    ],
    ids=" ".join,
)
def test_log_format_json_given_as_an_option_holds_for_usage_errors(args: list[str]) -> None:
    """Was: only DIND_LOG_FORMAT=json made a usage error JSON; the option was ignored."""
    result = dind(*args)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    record = json.loads(lines[0])
    assert record["level"] == "ERROR"
    assert record["message"].endswith("(see 'dind --help')")


@pytest.mark.parametrize(
    "args",
    [["--log-format", "text", "--frobnicate"], ["--log-format=text", "--frobnicate"]],
    ids=" ".join,
)
def test_log_format_text_given_as_an_option_beats_the_variable_for_usage_errors(
    args: list[str],
) -> None:
    """Options override variables, for usage errors too."""
    result = dind(*args, env={"DIND_LOG_FORMAT": "json"})
    assert result.returncode == 2
    assert one_error(result.stderr).startswith("No such option '--frobnicate'")


# --------------------------------------------------- 13. capability decoders on garbage


def test_capability_decoders_give_unknown_for_garbage_and_never_hang() -> None:
    """Was: CapEff "-1" looped forever allocating; a huge cap_last_cap hung for seconds."""
    answer = probe("decoders", timeout=10)
    assert answer["masks"] == dict.fromkeys(answer["masks"], None)
    assert answer["last"] == dict.fromkeys(
        ["99999999", "-1", "garbage", "4 0", "\u0663", "64"], None
    )
    assert (answer["host"], answer["last_40"]) == (40, 40)  # and real values still decode


def test_check_analysis_of_a_capture_with_garbage_capabilities_is_bounded() -> None:
    answer = probe(
        "analyse",
        "host-hybrid",
        json.dumps({"CapEff": "-1", "CapBnd": "zz-garbage"}),
        "99999999",
        timeout=10,
    )
    text = str(answer["text"])
    assert "cap_sys_admin: unknown" in text
    assert "CapEff could not be read" in text


@root_only
def test_check_for_real_with_garbage_capabilities_answers(scratch: Path) -> None:
    """The same through ``dind --check`` itself: its /proc/self/status and cap_last_cap
    replaced by bind mounts in a sandbox."""
    status = scratch / "status"
    with open("/proc/self/status") as f:
        real = f.read()
    status.write_text(re.sub(r"(?m)^(CapEff|CapBnd):.*$", r"\1:\t-1", real))
    last = scratch / "cap_last_cap"
    last.write_text("99999999\n")
    script = (
        f"mount --bind {last} /proc/sys/kernel/cap_last_cap && "
        f'mount --bind {status} /proc/$$/status && exec "$0" --check'
    )
    try:
        result = run([*UNSHARE, "sh", "-c", script, DIND], timeout=10)
    except subprocess.TimeoutExpired:
        pytest.fail("dind --check still running after 10 s with CapEff -1: it hangs")
    assert result.returncode in (0, 1), result.stderr
    assert "Traceback" not in result.stderr
    assert "cap_sys_admin: unknown" in result.stdout
    assert "CapEff could not be read" in result.stdout


# --------------------------------------------------- 14. dind typed on the host


HOST_NOTE = "this is the host's own mount namespace"


@pytest.fixture
def host() -> None:
    if not on_the_host():
        pytest.skip("these tests run on the machine itself, not in a container")


@pytest.mark.usefixtures("host")
def test_dry_run_on_the_host_shows_the_refusal_and_warns() -> None:
    result = dind("--dry-run", "--skip", "tmp")
    assert result.returncode == 0, result.stderr
    first = result.stdout.splitlines()[0]
    assert first.split()[:2] == ["host", "refused"], result.stdout
    assert HOST_NOTE in first
    assert f"dind: warning: a real run would refuse: {HOST_NOTE}" in result.stderr
    harmless = dind("--dry-run", *nothing())  # a plan that changes nothing is not refused
    assert harmless.returncode == 0
    assert "refused" not in harmless.stdout and harmless.stderr == ""


@pytest.mark.usefixtures("host")
def test_check_on_the_host_reports_the_blocker() -> None:
    result = dind("--check")
    assert result.returncode == 1
    assert re.search(r"(?m)^  blocker   host: run on the host itself$", result.stdout), (
        result.stdout
    )
    assert HOST_NOTE in result.stdout
    verdict = result.stdout.rstrip().splitlines()[-1]
    assert verdict.startswith("result: nested Docker cannot work here") and "plan: host" in verdict


def _mounted_at_or_under(path: Path) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [p for p in mount_points(f.read()) if p == str(path) or p.startswith(f"{path}/")]


@root_only
@pytest.mark.usefixtures("host")
def test_a_real_run_on_the_host_is_refused_and_changes_nothing(scratch: Path) -> None:
    """Was: ``dind CMD`` typed on a host mounted over the host's /tmp and made / shared.

    Every step but cgroup-mounts is skipped and the cgroup root is a scratch
    directory, so even a dind that does not refuse could only mount there; and it
    is started for real only if its --dry-run of the same line shows the refusal.
    """
    root = scratch / "cgroup"
    args = cgroup_only(root)
    plan = dind("--dry-run", *args)
    assert plan.stdout.split()[:2] == ["host", "refused"], (
        "this dind does not plan to refuse the host: not running it for real here\n" + plan.stdout
    )
    try:
        result = dind(*args, "--", "echo", "ran")
        left = _mounted_at_or_under(root)
    finally:
        if _mounted_at_or_under(root):
            subprocess.run(["umount", "-R", "-l", str(root)], check=False, timeout=SHORT)
    assert left == []
    assert (result.returncode, result.stdout) == (125, "")
    assert one_error(result.stderr).startswith(f"{HOST_NOTE} (")
    assert not root.exists()


@root_only
def test_allow_host_changes_nothing_off_the_host(scratch: Path) -> None:
    args = ["--dry-run", *cgroup_only(scratch / "cg")]
    plain = run([*UNSHARE, DIND, *args])
    allowed = run([*UNSHARE, DIND, "--allow-host", *args])
    assert plain.returncode == allowed.returncode == 0, (plain.stderr, allowed.stderr)
    assert allowed.stdout == plain.stdout
    assert "host" not in [line.split()[0] for line in plain.stdout.splitlines()]
    env = run([*UNSHARE, DIND, *args], env={"DIND_ALLOW_HOST": "1"})
    assert env.stdout == plain.stdout


HOST_PID = "pid:[4026531836]"
"""/proc/self/ns/pid on the machine itself: the initial PID namespace (PROC_PID_INIT_INO)."""
HOST_MNT = "mnt:[4026531832]"
"""/proc/self/ns/mnt on the machine itself (there, even root cannot read /proc/1/ns/mnt)."""
CONTAINER_PID = "pid:[4026532180]"
CONTAINER_MNT = "mnt:[4026532177]"
"""Read in ``docker run`` on the same machine, where /proc/1/ns/mnt is CONTAINER_MNT too.
With ``--pid host``, /proc/self/ns/pid was HOST_PID and /proc/1/ns/mnt unreadable."""


HOST_TABLE = (
    "157 156 254:0 / / rw,relatime - ext4 /dev/vda rw\n"
    "159 157 0:21 / /proc rw,relatime - proc proc rw\n"
)
COPIED_TABLE = (  # `unshare --mount` copies the same mounts under new IDs
    "812 811 254:0 / / rw,relatime - ext4 /dev/vda rw\n"
    "813 812 0:21 / /proc rw,relatime - proc proc rw\n"
)


@pytest.mark.parametrize(
    ("links", "tables", "verdict", "evidence"),
    [
        pytest.param(
            (CONTAINER_PID, CONTAINER_MNT, CONTAINER_MNT),
            ("a", "a"),
            False,
            f"{CONTAINER_PID} is not the initial PID namespace: this is a container",
            id="container",
        ),
        pytest.param(
            (HOST_PID, HOST_MNT, HOST_MNT),
            (None, None),
            True,
            f"and the mount namespace of its PID 1 ({HOST_MNT})",
            id="host-pid1-readable",
        ),
        pytest.param(
            (HOST_PID, CONTAINER_MNT, HOST_MNT),
            ("a", "a"),
            False,
            f"{CONTAINER_MNT} is not the mount namespace of PID 1 ({HOST_MNT})",
            id="pid-host-container-pid1-readable",
        ),
        pytest.param(
            (HOST_PID, HOST_MNT, None),
            (HOST_TABLE, HOST_TABLE),
            True,
            "the mounts of its PID 1 (same mount IDs)",
            id="host-pid1-unreadable",
        ),
        pytest.param(
            (HOST_PID, CONTAINER_MNT, None),
            (COPIED_TABLE, HOST_TABLE),
            False,
            "no mount ID in common with PID 1's",
            id="pid-host-container-pid1-unreadable",
        ),
        pytest.param(
            (HOST_PID, HOST_MNT, None),
            ("mine", None),
            None,
            "PID 1's mount namespace could not be read",
            id="unknown",
        ),
        pytest.param(
            (None, None, None),
            ("a", "a"),
            None,
            "/proc/self/ns/pid could not be read",
            id="no-links",
        ),
        pytest.param(
            ("pid:[1x]", HOST_MNT, HOST_MNT),
            (None, None),
            None,
            "could not be read",
            id="garbage-link",
        ),
        pytest.param(
            ("pid:[" + "9" * 80 + "]", HOST_MNT, HOST_MNT),
            (None, None),
            None,
            "could not be read",
            id="huge-link",
        ),
    ],
)
def test_host_mount_namespace_decides_from_real_link_texts(
    links: tuple[str | None, ...],
    tables: tuple[str | None, ...],
    verdict: bool | None,
    evidence: str,
) -> None:
    answer = probe("host", json.dumps([*links, *tables]))
    assert answer["host"] is verdict
    assert evidence in str(answer["evidence"])


@pytest.mark.parametrize("change", ["mounted", "unmounted"])
def test_a_mount_change_between_the_two_reads_does_not_hide_the_host(change: str) -> None:
    """Where PID 1's ns/mnt link is unreadable, dind compares its mount table with PID 1's,
    read a moment later. On a host where containers start and stop, a mount can come or
    go in between: both tables are still the host's. (Mount IDs tell namespaces apart: a
    new mount namespace gets new IDs for every mount, so sharing them is the evidence.)"""
    with open("/proc/self/mountinfo") as f:
        mine = f.read()
    overlay = "4242 27 0:4242 / /var/lib/docker/overlay2/0123/merged rw - overlay overlay rw\n"
    later = mine + overlay if change == "mounted" else "".join(mine.splitlines(True)[:-1])
    answer = probe("host", json.dumps([HOST_PID, HOST_MNT, None, mine, later]))
    assert answer["host"] is True, answer  # another namespace: see the sandboxes below


@root_only
@pytest.mark.parametrize(
    ("prefix", "verdict"),
    [
        ([], None),  # decided below: the machine itself, when the tests run there
        (["unshare", "--mount", "--propagation", "private"], False),
        (
            ["unshare", "--pid", "--fork", "--mount", "--mount-proc", "--propagation", "private"],
            False,
        ),
    ],
    ids=["here", "mount-namespace", "pid-and-mount-namespaces"],
)
def test_host_mount_namespace_on_this_machine_and_in_sandboxes(
    prefix: list[str], verdict: bool | None
) -> None:
    if PYTHON is None:
        pytest.fail(f"no python next to {DIND}")
    result = run([*prefix, PYTHON, "-I", str(HELPERS / "probe.py"), "host-live"], cwd="/")
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["host"] is (on_the_host() if verdict is None else verdict), answer
    if "--pid" in prefix:
        assert answer["links"][0] != HOST_PID
        assert "is not the initial PID namespace: this is a container" in answer["evidence"]


# --------------------------------------------------- every path: one line, its status


@root_only
def test_every_refusal_is_one_line_with_its_status(
    scratch: Path, not_regular: dict[str, str]
) -> None:
    """The exit statuses and lines of this file's paths side by side, none a traceback."""
    link = scratch / "link"
    link.symlink_to(scratch)
    interp = scratch / "interp.sh"
    interp.write_text("#!/nonexistent/sh\n")
    interp.chmod(0o755)
    cases: list[tuple[list[str], list[str] | None, int, str]] = [
        (
            cgroup_only(link / "cg"),
            None,
            125,
            f"the cgroup root {link}/cg goes through a symlink ({link}); "
            "dind never mounts through a symlink: give the real path",
        ),
        (
            cgroup_only("/proc/1/x"),
            None,
            125,
            "the cgroup root /proc/1/x lies in /proc, a kernel-provided tree",
        ),
        (
            ["--proc-cgroup", not_regular["fifo"], *cgroup_only(scratch / "r")],
            None,
            125,
            f"{not_regular['fifo']}: not a regular file; not a cgroup file",
        ),
        (
            nothing(),
            [str(interp)],
            127,
            f"{interp}: cannot execute: interpreter /nonexistent/sh not found",
        ),
        (nothing(), ["/dev/null"], 126, "/dev/null: cannot execute: Permission denied"),
        (nothing(), ["no-such-command-dind"], 127, "no-such-command-dind: command not found"),
    ]
    for args, command, status, line in cases:
        run = sandboxed(*args, command=command)
        assert (run.status, run.ran) == (status, False), (args, run.stderr)
        assert one_error(run.stderr) == line, args
    usage = dind("--cgroup-root", "/a/../b", "true")
    assert usage.returncode == 2
    assert one_error(usage.stderr).startswith("--cgroup-root: '/a/../b' has a '..' component")
    closed = redirected(">&-", "--dry-run", *nothing())
    assert (closed.returncode, one_error(closed.stderr)) == (
        125,
        "cannot write to stdout: stdout is closed",
    )
    shutil.copyfile("/proc/1/cgroup", scratch / "pc")
    gated = many_runs(
        "signal",
        str(scratch / "pc"),
        "2",
        "0",
        args=["--proc-cgroup", str(scratch / "pc"), *cgroup_only(scratch / "sig")],
        timeout=60,
    )
    for r in gated:  # the signal sent while dind is held at the start of detection
        signum = int(str(r["signal"]))
        assert (r["status"], r["stderr"]) == (128 + signum, _signal_line(signum) + "\n"), r
