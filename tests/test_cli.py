"""The command line as users meet it: options, environment, exit codes, exec semantics.

Everything here runs the installed ``dind`` script with every mounting step skipped
(or with --dry-run), so it needs no privileges and changes nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ALL_STEPS, DIND, FIXTURES, run_dind

NO_STEPS = {"DIND_SKIP": ALL_STEPS}
PY = sys.executable


def capture(name: str) -> list[str]:
    return [
        "--proc-cgroup",
        str(FIXTURES / name / "proc_1_cgroup"),
        "--mountinfo",
        str(FIXTURES / name / "mountinfo"),
    ]


def one_error_line(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    assert lines[0].startswith("dind: error: ")
    return lines[0]


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        ([], {}, "no command given"),
        (["--"], {}, "no command given"),
        (["--frobnicate", "true"], {}, "No such option '--frobnicate'"),
        (["--skip", "mounts", "true"], {}, "--skip: unknown step 'mounts'"),
        (["true"], {"DIND_SKIP": "tmp,bogus"}, "DIND_SKIP: unknown step 'bogus'"),
        (["true"], {"DIND_STRICT": "maybe"}, "DIND_STRICT='maybe': expected one of"),
        (["--log-format", "yaml", "true"], {}, "'yaml' is not one of 'text', 'json'"),
        (["true"], {"DIND_LOG_FORMAT": "yaml"}, "DIND_LOG_FORMAT: 'yaml' is not one of"),
        (["-v", "-q", "true"], {}, "cannot be combined"),
        (["--check", "true"], {}, "--check takes no command"),
        (["--cgroup-root", "relative", "true"], {}, "is not an absolute path"),
        (["true"], {"DIND_CGROUP_ROOT": "/"}, "the cgroup root cannot be /"),
        (["--skip"], {}, "Option '--skip' requires an argument"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(
    args: list[str], env: dict[str, str], expected: str
) -> None:
    result = run_dind(*args, env=env)
    assert result.returncode == 2
    assert expected in one_error_line(result.stderr)
    assert result.stdout == ""


def test_help_documents_exit_codes_steps_and_variables() -> None:
    result = run_dind("--help")
    assert result.returncode == 0
    for word in (
        "125",
        "126",
        "127",
        "usage error",
        "DIND_SKIP",
        "DIND_CGROUP_ROOT",
        "cgroup-nesting",
        "rshared",
        "--dry-run",
        "--init",
        "--check",
    ):
        assert word in result.stdout
    assert run_dind("-h").stdout == result.stdout
    version = run_dind("--version")
    assert version.returncode == 0 and version.stdout.startswith("dind, version ")


def test_options_stop_at_the_first_word_that_is_not_one() -> None:
    result = run_dind("--dry-run", *capture("host-hybrid"), "make.sh", "-v", "--strict", "--")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1].split(None, 2) == [
        "exec",
        "pending",
        "make.sh -v --strict --",
    ]


def test_dry_run_prints_the_plan_on_stdout_and_warnings_on_stderr() -> None:
    result = run_dind(
        "--dry-run", "--skip", "tmp", "--skip=securityfs,rshared", *capture("systemd-inverted")
    )
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["environment", "pending", "export", "container=docker"]
    assert lines[1].split()[:2] == ["cgroup-confine", "satisfied"]  # PID 1 at its root: /
    assert [ln.split()[0] for ln in lines[2:]] == ["cgroup-mounts"] * len(lines[2:])
    assert "ln -s cpuacct,cpu /cgroup/cpu,cpuacct" in result.stdout
    assert result.stderr == ""  # systemd-inverted has devices in its own hierarchy


def test_dry_run_json_is_one_object_per_action() -> None:
    result = run_dind(
        "--dry-run",
        "--log-format=json",
        *capture("container-v1-privatens"),
        "--",
        "hack/make.sh",
        "--debug",
    )
    assert result.returncode == 0
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert rows[-1] == {
        "step": "exec",
        "action": "exec",
        "argv": ["hack/make.sh", "--debug"],
        "status": "pending",
    }
    steps = [r["step"] for r in rows]
    assert steps.index("environment") < steps.index("cgroup-mounts") < steps.index("rshared")
    assert all({"step", "action", "status"} <= r.keys() for r in rows)


def test_dry_run_from_the_environment_on_the_fast_path() -> None:
    result = run_dind(
        "--", "x", env={"DIND_DRY_RUN": "yes", "DIND_SKIP": "tmp", "DIND_CGROUP_ROOT": "/opt/cg"}
    )
    assert result.returncode == 0
    assert "mount -t tmpfs -o uid=0,gid=0,mode=0755 cgroup /opt/cg" in result.stdout
    assert "tmpfs /tmp" not in result.stdout


def test_bad_capture_is_a_setup_error_naming_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "cgroup"
    bad.write_bytes(b"1:cpu:/\n2:memory\n")
    result = run_dind("--dry-run", "--proc-cgroup", str(bad), "--", "true")
    assert result.returncode == 125
    line = one_error_line(result.stderr)
    assert line == (f"dind: error: {bad}:2: expected hierarchy-ID:controller-list:path: '2:memory'")
    hostile = tmp_path / "hostile"
    hostile.write_bytes(b"1:../../../etc:/\n")
    result = run_dind("--proc-cgroup", str(hostile), "--", "true")
    assert result.returncode == 125
    assert "is not [A-Za-z0-9_]+" in one_error_line(result.stderr)
    huge = tmp_path / "huge"
    huge.write_bytes(b"1:cpu:/" + b"x" * (2 << 20) + b"\n")
    result = run_dind("--dry-run", "--proc-cgroup", str(huge))
    assert result.returncode == 125
    assert "larger than" in one_error_line(result.stderr)
    result = run_dind("--dry-run", "--mountinfo", str(tmp_path / "missing"))
    assert result.returncode == 125
    assert one_error_line(result.stderr).endswith(
        f"cannot read mountinfo file {tmp_path}/missing: No such file or directory"
    )


def test_exec_replaces_dind_same_pid_and_exit_status() -> None:
    proc = subprocess.Popen(
        [DIND, "--", "sh", "-c", 'echo "$$"; exit 42'],
        env={**os.environ, **NO_STEPS},
        stdout=subprocess.PIPE,
        text=True,
    )
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 42
    assert int(out) == proc.pid


def test_no_python_left_resident_after_exec() -> None:
    result = run_dind("--", "cat", "/proc/self/cmdline", env=NO_STEPS)
    assert result.stdout.split("\0")[0] == "cat"


def test_argv_reaches_the_command_byte_for_byte() -> None:
    code = "import os,sys; print(' '.join(os.fsencode(a).hex() or '-' for a in sys.argv[1:]))"
    args = ["", "-v", "--", "--strict", "a b", "\udcff\udcfe", "-", "ü"]
    proc = subprocess.run(
        [DIND, PY, "-c", code, *args],
        env={**os.environ, **NO_STEPS},
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    expected = " ".join(os.fsencode(a).hex() or "-" for a in args)
    assert proc.stdout.strip() == expected


@pytest.mark.parametrize(
    ("program", "status", "message"),
    [
        ("no-such-command-dind", 127, "no-such-command-dind: command not found"),
        ("/nonexistent/dir/cmd", 127, "/nonexistent/dir/cmd: command not found"),
        ("", 127, "'': command not found"),
    ],
)
def test_missing_command_is_127(program: str, status: int, message: str) -> None:
    result = run_dind("--", program, env=NO_STEPS)
    assert result.returncode == status
    assert one_error_line(result.stderr) == f"dind: error: {message}"


def test_not_executable_is_126(tmp_path: Path) -> None:
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o644)
    result = run_dind("--", str(script), env=NO_STEPS)
    assert result.returncode == 126
    assert one_error_line(result.stderr) == (
        f"dind: error: {script}: cannot execute: Permission denied"
    )
    result = run_dind("--", str(tmp_path), env=NO_STEPS)
    assert result.returncode == 126


def test_usage_error_in_json_when_the_environment_asks_for_it() -> None:
    result = run_dind("--frobnicate", env={"DIND_LOG_FORMAT": "json"})
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert json.loads(line)["message"].startswith("No such option '--frobnicate'")


def test_errors_in_json_are_one_object(tmp_path: Path) -> None:
    result = run_dind("--log-format", "json", "--", "no-such-command-dind", env=NO_STEPS)
    assert result.returncode == 127
    (line,) = result.stderr.splitlines()
    record = json.loads(line)
    assert record["level"] == "ERROR" and record["errno"] == 2
    assert record["message"] == "no-such-command-dind: command not found"


def test_container_variable_is_exported_unless_already_set() -> None:
    result = run_dind("--", "sh", "-c", 'printf %s "$container"', env=NO_STEPS)
    assert result.stdout == "docker"
    result = run_dind(
        "--", "sh", "-c", 'printf %s "$container"', env={**NO_STEPS, "container": "podman"}
    )
    assert result.stdout == "podman"


def test_fast_path_imports_neither_click_nor_logging() -> None:
    """``dind CMD`` must not pay for click, logging, json or dataclasses at container start."""
    env = {**os.environ, **NO_STEPS}
    env.pop("container", None)
    result = subprocess.run(
        [PY, "-X", "importtime", "-m", "dind", "--", "true"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()}
    assert "dind.main" in imported
    for heavy in (
        "click",
        "logging",
        "json",
        "dataclasses",
        "typing",
        "psutil",
        "pythonjsonlogger",
    ):
        assert heavy not in imported, heavy
    slow = subprocess.run(
        [PY, "-X", "importtime", "-m", "dind", "--strict", "--", "true"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert "click" in {line.rsplit("|", 1)[-1].strip() for line in slow.stderr.splitlines()}


def test_missing_proc_is_explained() -> None:
    result = run_dind("--proc-cgroup", "/proc/no-such-pid/cgroup", "--", "true")
    assert result.returncode == 125
    assert one_error_line(result.stderr) == (
        "dind: error: cannot read cgroup file /proc/no-such-pid/cgroup: No such file or "
        "directory (is /proc mounted in this container?)"
    )


def test_command_starts_with_default_sigpipe_and_sigxfsz() -> None:
    """Python ignores SIGPIPE and SIGXFSZ; an ignored signal survives exec unless dind resets it."""
    result = run_dind("--", "grep", "SigIgn", "/proc/self/status", env=NO_STEPS)
    ignored = int(result.stdout.split()[1], 16)
    assert result.returncode == 0
    assert not ignored & (1 << (13 - 1)), "SIGPIPE ignored"
    assert not ignored & (1 << (25 - 1)), "SIGXFSZ ignored"
