"""dockerd mode, --with-dockerd and --ready for real: a real dockerd in throwaway namespaces.

Each run is ``unshare --mount --cgroup --net --pid --fork``: dind is PID 1 of its own PID
namespace, a tmpfs covers /run (the daemon's socket, pid file and exec root never meet
the machine's), the network namespace has only ``lo`` (the daemon's bridge and
iptables rules stay there), and the data root and logs live under a directory of the
test's own. Nothing here starts a container, so no cgroup is created. Root only.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import DIND, clean_env, root_only

pytestmark = root_only

PRELUDE = "mount -t tmpfs tmpfs /run && ip link set lo up"
NAMESPACES = [
    "unshare", "--mount", "--cgroup", "--net", "--pid", "--fork", "--mount-proc",
    "--propagation", "private",
]  # fmt: skip
SKIP_KERNEL = "securityfs,cgroup-confine,cgroup-remount,rshared"
"""Not tmp: from a checkout under /tmp (CI's), dind's own tmpfs then hides its modules,
and the daemon steps must have loaded theirs (cryptography, httpx) before it. Commands
that call dind themselves add ``--skip tmp`` (``KEEP_TMP``), or it is hidden from them."""
KEEP_TMP = ("--skip", "tmp")


@pytest.fixture
def work() -> Iterator[Path]:
    """Data root, logs and certificates: on the real disk (not /run, which runs cover)."""
    if shutil.which("dockerd") is None:
        from tests.support.dockerd import ensure_engine

        ensure_engine()
    path = Path(tempfile.mkdtemp(prefix="dind-daemon-", dir="/var/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def in_namespaces(
    script: str, *args: str, env: dict[str, str] | None = None, timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    """``script`` (after the prelude; ``$@`` are ``args``) in fresh namespaces, as PID 1.

    dind's directory comes first on the PATH, for ``dind --ready`` in commands.
    """
    variables = {"PATH": f"{Path(DIND).parent}:{os.environ['PATH']}", **(env or {})}
    return subprocess.run(
        [*NAMESPACES, "sh", "-c", f"{PRELUDE} && {script}", "sh", *args],
        env=clean_env(**variables),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def sandboxed(
    work: Path, *args: str, env: dict[str, str] | None = None, before: str = ""
) -> subprocess.CompletedProcess[str]:
    """``dind ARGS`` as PID 1 of fresh namespaces; of the kernel steps, only the cgroup mounts."""
    dind = [DIND, "--skip", SKIP_KERNEL, "--cgroup-root", str(work / "cg")]
    return in_namespaces(f'{before} exec "$@"', *dind, *args, env=env)


def daemon_args(work: Path) -> list[str]:
    return [
        "--dockerd-log",
        str(work / "dockerd.log"),
        f"--dockerd-arg=--data-root={work / 'data'}",
    ]


def test_with_dockerd_runs_the_command_when_the_daemon_answers_and_passes_its_status(
    work: Path,
) -> None:
    script = "docker version --format {{.Server.Version}} && dind --ready && exit 7"
    result = sandboxed(
        work, "-v", *KEEP_TMP, "--with-dockerd", *daemon_args(work), "sh", "-c", script
    )
    assert result.returncode == 7, result.stderr
    assert result.stdout.strip()  # the server's version: it answered
    log = (work / "dockerd.log").read_text()
    assert "API listen on /var/run/docker.sock" in log
    assert "Daemon shutdown complete" in log  # stopped by SIGTERM, gracefully, by dind
    assert "dockerd stopped" in result.stderr
    ok = sandboxed(work, "--with-dockerd", *daemon_args(work), "true")
    assert ok.returncode == 0, ok.stderr
    said = [line for line in ok.stderr.splitlines() if "/tmp hides" not in line]
    assert len(said) == 1 and said[0].startswith("dind: dockerd: TLS off")  # the summary alone


def test_a_dockerd_that_fails_is_125_with_its_own_log_lines(work: Path) -> None:
    (work / "dockerd.log").write_text("an earlier run's line\n")
    result = sandboxed(
        work, "--with-dockerd", *daemon_args(work), "--dockerd-arg=--no-such-flag", "true"
    )
    assert result.returncode == 125
    said, first, *rest = [line for line in result.stderr.splitlines() if "/tmp hides" not in line]
    assert said.startswith("dind: dockerd: TLS off")  # what dind decided, before dockerd ran
    assert first.startswith("dind: error: dockerd exited (status 1) before answering at unix://")
    assert any("unknown flag: --no-such-flag" in line for line in rest), result.stderr
    assert "an earlier run's line" not in result.stderr
    assert "Traceback" not in result.stderr


def test_a_dockerd_that_never_answers_is_125_within_the_timeout(work: Path) -> None:
    fake = work / "bin" / "dockerd"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'fake dockerd, never listening'\nexec sleep 60\n")
    fake.chmod(0o755)
    env = {"PATH": f"{fake.parent}:{Path(DIND).parent}:{os.environ['PATH']}"}
    started = time.monotonic()
    result = sandboxed(
        work, "--with-dockerd", "--timeout", "1", *daemon_args(work), "true", env=env
    )
    took = time.monotonic() - started
    assert result.returncode == 125, result.stderr
    assert "dockerd did not answer at unix:///var/run/docker.sock within 1 s" in result.stderr
    assert "fake dockerd, never listening" in result.stderr
    assert took < 15, took


def test_sigterm_stops_the_command_first_then_dockerd(work: Path) -> None:
    """The command sends dind (PID 1) SIGTERM: dind forwards it; the command's status wins."""
    script = 'trap "echo command-got-term; exit 3" TERM; kill -TERM 1; while :; do sleep 0.1; done'
    result = sandboxed(work, "-v", "--with-dockerd", *daemon_args(work), "sh", "-c", script)
    assert result.returncode == 3, result.stderr
    assert result.stdout == "command-got-term\n"
    assert result.stderr.index("exited with status 3") < result.stderr.index("dockerd stopped")
    assert "Daemon shutdown complete" in (work / "dockerd.log").read_text()


def test_a_stale_pid_file_no_longer_stops_dockerd(work: Path) -> None:
    """After a restart, /run/docker.pid names PID 1, alive but not dockerd: removed, not obeyed."""
    stale = "printf 1 > /run/docker.pid &&"
    args = ["--with-dockerd", *daemon_args(work), "true"]
    refused = sandboxed(work, "--skip", "stale-pid", *args, before=stale)
    assert refused.returncode == 125
    assert "pid file found, ensure docker is not running" in refused.stderr
    fixed = sandboxed(work, "-v", *args, before=stale)
    assert fixed.returncode == 0, fixed.stderr
    assert "rm /run/docker.pid" in fixed.stderr


def test_tls_end_to_end_and_a_restart_reuses_the_ca_key(work: Path) -> None:
    certs = work / "certs"
    client = f"DOCKER_HOST=tcp://127.0.0.1:2376 DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH={certs}/client"
    script = f"{client} docker version --format {{{{.Server.Version}}}} && {client} dind --ready"
    env = {"DOCKER_TLS_CERTDIR": str(certs)}
    first = sandboxed(
        work, *KEEP_TMP, "--with-dockerd", *daemon_args(work), "sh", "-c", script, env=env
    )
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip()
    ca_key = (certs / "ca" / "key.pem").read_bytes()
    server_cert = (certs / "server" / "cert.pem").read_bytes()
    assert oct((certs / "client" / "key.pem").stat().st_mode & 0o777) == "0o644"
    again = sandboxed(
        work, *KEEP_TMP, "--with-dockerd", *daemon_args(work), "sh", "-c", script, env=env
    )
    assert again.returncode == 0, again.stderr
    assert (certs / "ca" / "key.pem").read_bytes() == ca_key
    assert (certs / "server" / "cert.pem").read_bytes() != server_cert
    plain = "DOCKER_HOST=tcp://127.0.0.1:2376 docker version"  # no client certificate
    refused = sandboxed(
        work, "--with-dockerd", *daemon_args(work), "sh", "-c", f"{plain} >/dev/null 2>&1", env=env
    )
    assert refused.returncode != 0


def test_tls_off_listens_on_2375_without_the_15_second_sleep(work: Path) -> None:
    script = "DOCKER_HOST=tcp://127.0.0.1:2375 docker version --format {{.Server.Version}}"
    started = time.monotonic()
    result = sandboxed(
        work,
        "--with-dockerd",
        *daemon_args(work),
        "sh",
        "-c",
        script,
        env={"DOCKER_TLS_CERTDIR": ""},
    )
    took = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert took < 8, f"{took:.1f} s: dockerd slept on its insecure TCP port?"


def test_dockerd_mode_keeps_dind_as_its_init(work: Path) -> None:
    """``dind dockerd``: dockerd runs as dind's child; SIGTERM to dind reaches dockerd."""
    dind = shlex.quote(DIND)
    script = (
        f"{dind} --skip {SKIP_KERNEL},tmp --cgroup-root {work}/cg dockerd --data-root {work}/data "
        f"> {work}/dockerd.log 2>&1 & "
        f"{dind} --ready --timeout 30 && "
        'pid=$(cat /run/docker.pid) && echo "parent $(ps -o ppid= -p $pid | tr -d " ")" && '
        'echo "dind $!" && kill -TERM $! && wait $!; echo "status $?"'
    )
    result = in_namespaces(script)
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines())
    assert lines["parent"] == lines["dind"], result.stdout + result.stderr
    assert lines["status"] == "0"  # dockerd's own status after a graceful SIGTERM
    assert "Daemon shutdown complete" in (work / "dockerd.log").read_text()


def test_ready_is_bounded_and_says_why(work: Path) -> None:
    started = time.monotonic()
    result = subprocess.run(
        [DIND, "--ready", "--timeout", "1"],
        env=clean_env(DOCKER_HOST=f"unix://{work}/none.sock"),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    took = time.monotonic() - started
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"dind: error: not ready: unix://{work}/none.sock: ")
    assert 0.9 < took < 5, took
    once = subprocess.run(
        [DIND, "--ready"],
        env=clean_env(DOCKER_HOST="tcp://127.0.0.1:9"),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert once.returncode == 1 and len(once.stderr.splitlines()) == 1
    bad = subprocess.run(
        [DIND, "--ready"],
        env=clean_env(DOCKER_HOST="ssh://somewhere"),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert bad.returncode == 2 and "unix:// and tcp://" in bad.stderr


# --- issue 21: surfaces others can write ------------------------------------------------


def test_a_symlinked_pid_file_is_removed_not_written_through(work: Path) -> None:
    """Before: /run/docker.pid -> a victim file was "no stale pid file", and dockerd then
    wrote its PID through the link (the victim became a PID)."""
    victim = work / "passwd"
    victim.write_text("root:x:0:0:root:/root:/bin/sh\n")
    plant = f"ln -s {shlex.quote(str(victim))} /run/docker.pid &&"
    check = "test ! -L /run/docker.pid && cat /run/docker.pid"
    result = sandboxed(work, "--with-dockerd", *daemon_args(work), "sh", "-c", check, before=plant)
    assert result.returncode == 0, result.stderr
    assert victim.read_text() == "root:x:0:0:root:/root:/bin/sh\n"
    assert result.stdout.strip().isdigit()  # dockerd's own pid file, a file of its own
    (warning,) = [line for line in result.stderr.splitlines() if "/run/docker.pid" in line]
    assert warning.startswith("dind: warning: /run/docker.pid is a symlink (to ")
    assert "removed, its target left alone" in warning


def test_a_pidfile_that_is_no_pid_file_is_left_alone(work: Path) -> None:
    """Before: `dind dockerd --pidfile /etc/shadow` planned and performed `rm /etc/shadow`."""
    shadow = work / "shadow"
    shadow.write_text("root:*:19000:0:99999:7:::\n")
    fake = work / "bin" / "dockerd"
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\necho "fake dockerd $*"\n')
    fake.chmod(0o755)
    env = {"PATH": f"{fake.parent}:{Path(DIND).parent}:{os.environ['PATH']}"}
    args = ["--skip", "tls,iptables,mtu", "dockerd", "--pidfile", str(shadow)]
    result = sandboxed(work, *args, env=env)
    assert result.returncode == 0, result.stderr
    assert "fake dockerd" in result.stdout
    assert shadow.read_text() == "root:*:19000:0:99999:7:::\n"
    (warning,) = [line for line in result.stderr.splitlines() if str(shadow) in line]
    assert warning == (
        f"dind: warning: not done: remove {shadow}: not a pid file (its content is not a PID"
        " alone): left alone; dockerd may refuse to start or write its PID over it"
    )


def test_ready_is_not_wedged_by_a_fifo_in_the_certificate_directory(work: Path) -> None:
    """Before: a FIFO at ca.pem, cert.pem or key.pem hung --ready forever, with every
    terminating signal blocked (not even `timeout` could stop it)."""
    from dind.daemon import tls

    tls.make_certificates(str(work / "certs"), ["DNS:docker"])
    certs = work / "certs" / "client"
    for name in ("ca.pem", "cert.pem", "key.pem"):
        saved = (certs / name).read_bytes()
        (certs / name).unlink()
        os.mkfifo(certs / name)
        env = clean_env(
            DOCKER_HOST="tcp://127.0.0.1:9", DOCKER_TLS_VERIFY="1", DOCKER_CERT_PATH=str(certs)
        )
        started = time.monotonic()
        result = subprocess.run(
            [DIND, "--ready", "--timeout", "2"],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        took = time.monotonic() - started
        assert result.returncode == 1, (name, result.stderr)
        (line,) = result.stderr.splitlines()
        assert f"TLS files: {certs}/" in line and "is not a regular file" in line, line
        assert took < 6, (name, took)
        (certs / name).unlink()
        (certs / name).write_bytes(saved)


def test_ready_answers_a_terminating_signal_while_it_waits(work: Path) -> None:
    """--ready waits on the network: SIGTERM ends it at once (one line, 143), not after
    its timeout; before, every terminating signal was blocked for the whole probe."""
    import socket

    with socket.socket() as silent:  # accepts, never answers: each attempt waits 5 s
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        proc = subprocess.Popen(
            [DIND, "--ready", "--timeout", "60"],
            env=clean_env(DOCKER_HOST=f"tcp://127.0.0.1:{port}"),
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(1.0)
        started = time.monotonic()
        proc.terminate()
        try:
            _, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            pytest.fail("--ready did not answer SIGTERM within 10 s")
    assert time.monotonic() - started < 3
    assert proc.returncode == 128 + 15
    assert err.splitlines() == ["dind: error: SIGTERM during --ready"]


# --- issue 20: the start says what it decided --------------------------------------------


def summary_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "dockerd: TLS " in line]


@pytest.mark.parametrize("verbosity", [(), ("-q",), ("--log-format", "json")])
def test_dockerd_mode_says_its_decisions_in_one_line_before_dockerd_starts(
    work: Path, verbosity: tuple[str, ...]
) -> None:
    fake = work / "bin" / "dockerd"
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\necho "fake dockerd $*" >&2\n')
    fake.chmod(0o755)
    env = {
        "PATH": f"{fake.parent}:{Path(DIND).parent}:{os.environ['PATH']}",
        "DOCKER_TLS_CERTDIR": str(work / "certs"),
    }
    result = sandboxed(work, *verbosity, "dockerd", "--data-root", str(work / "data"), env=env)
    assert result.returncode == 0, result.stderr
    lines = summary_lines(result.stderr)
    order = result.stderr.splitlines()
    started = order.index(next(x for x in order if "fake dockerd" in x))
    if verbosity == ("-q",):
        assert lines == []
        return
    (said,) = lines
    assert order.index(said) < started  # before dockerd starts
    if verbosity:
        record = json.loads(said)
        assert record["event"] == "decisions" and record["level"] == "NOTICE"
        assert set(record) >= {"tls", "iptables", "mtu", "data_root", "nested_cgroups"}
        assert record["tls"] == f"on 2376, {work}/certs (a new CA and keys)"
        assert record["data_root"] == f"{work}/data on ext4"
        return
    assert said.startswith(f"dind: dockerd: TLS on 2376, {work}/certs (a new CA and keys); ")
    assert f"; data root {work}/data on ext4; nested cgroups " in said


def test_with_dockerd_says_its_decisions_too(work: Path) -> None:
    result = sandboxed(work, "--with-dockerd", *daemon_args(work), "true")
    assert result.returncode == 0, result.stderr
    (said,) = summary_lines(result.stderr)
    assert said.startswith("dind: dockerd: TLS off (DOCKER_TLS_CERTDIR is not set: the unix")
