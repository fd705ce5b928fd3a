"""Private Docker daemons for tests: start one, talk to it, stop it by PID.

Used by the end-to-end suite (tests/e2e) and by the frozen-images tests, possibly
at the same time on one machine, so every daemon is private and leaves the host
as it found it:

- **Files**: ``--data-root``, ``--pidfile``, ``--config-file`` (an empty
  ``daemon.json``, so /etc/docker/daemon.json is never read), the API socket
  (``workdir/docker.sock``) and the log (``workdir/dockerd.log``) live under the
  caller's *workdir*, which must not be under /run. The client gets its own
  ``DOCKER_CONFIG`` (``workdir/client``).
- **Mounts**: dockerd runs in its own mount namespace (``unshare --mount
  --propagation private``) with a private tmpfs on /run (exec-root, containerd's
  shim sockets, /run/docker) and on /etc/docker (its key.json). Its overlay, shm
  and netns mounts never appear in the machine's mount table, and all of that
  vanishes with the daemon. So bind-mount sources (``docker run -v``) must not
  be under /run either: the daemon sees its own, empty /run.
- **Network**: dockerd runs in a network namespace of its own (``unshare
  --net``, only ``lo``, brought up), never in the machine's: there, moby deletes
  the machine's ``docker0`` when started with ``--bridge=none``
  (``removeDefaultBridgeInterface``), and a bridge of its own would add links,
  addresses and routes to the machine. Inside, ``--bridge=none --iptables=false
  --ip6tables=false --ip-forward=false --ip-masq=false`` still apply: no bridge,
  no rules, no sysctl writes. Containers run with ``--network none`` (the default
  here: a private netns with only ``lo``, where a nested dockerd can make its own
  bridge) or ``--network host`` (the daemon's namespace). The way out is
  tests.support.netns: an HTTP proxy at 127.0.0.1:3128 in the daemon's namespace,
  which apt of the base image (:func:`base_image`) is configured to use, so
  ``docker build --network host`` (as scripts/build-image runs it) reaches the
  Debian mirror with no build argument (those would enter the build cache's key)
  and no variable in any container (a docker client in a container would send
  even ``tcp://`` daemon calls to an ``HTTPS_PROXY``); ``d.proxy_env`` and
  ``d.build_args`` give other tools the proxy on request. And the machine's
  loopback ports shared with :func:`~tests.support.netns.shared_loopback_port`
  (the test registry's), so ``docker push 127.0.0.1:PORT/...`` works unchanged.
- **Cgroups**: ``--cgroup-parent`` is a per-daemon group (``/dind-test-<pid>-<token>``),
  removed (children first) by :meth:`Dockerd.stop`. On a hybrid host its
  cgroup2 group (/sys/fs/cgroup/unified/<parent>) is created up front with every
  controller the root has (here only ``hugetlb``) enabled, so containers get
  ``hugetlb.*`` files in a cgroup v2 view. That needs the controller enabled in
  the cgroup2 root's subtree_control too: what this module enables there is
  recorded (/run/lock/dind-tests-unified-enabled) and disabled again by the
  last daemon to stop.
- **Capabilities**: the bounding set of these machines lacks CAP_SYS_RESOURCE, so
  runc fails to apply "all capabilities" (``--privileged``, ``docker exec`` into a
  privileged container). A small wrapper deletes that capability from the OCI
  bundle's config.json / the exec process JSON and execs the real runc; it is
  registered as the default runtime (``--add-runtime nosr=WRAPPER
  --default-runtime nosr``).

Interface (stable)::

    ensure_engine()                        # apt-get install docker.io debootstrap if missing
    d = start_dockerd(workdir)             # Dockerd, answering; also a context manager
    d.docker("version")                    # CompletedProcess[str]; check=True raises DockerdError
    d.docker("load", stdin=open(tar, "rb"))
    d.env                                  # DOCKER_HOST etc. for other clients
    tag = base_image(d, Path("/var/cache/dind-e2e"))   # "local/debian:bookworm", cached
    build_dev_image(d, repo, base=tag, tag="dind:e2e")   # scripts/build-image; CompletedProcess
    suite = dockerfile_suite(repo)         # "trixie": the Dockerfile's ARG DEBIAN_SUITE
    tag = debian_slim(d, cache, suite)     # base_image(), also tagged debian:trixie-slim
    build_dev_image(d, repo, tag="dind:e2e")   # no --base: the Dockerfile's own FROM
    d.docker("run", "--network", "host", *(f"-e{k}={v}" for k, v in d.proxy_env.items()), ...)
    d.in_namespaces("ctr", "-a", d.containerd_socket, ...)   # argv for its mount+net namespaces
    d.stop(remove_workdir=True)            # by PID; removes its cgroups (and the workdir)

Everything here needs root and the engine; callers decide whether to skip.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO

from tests.support.netns import PROXY_PORT, Gateway

ENGINE_PACKAGES = ("docker.io", "debootstrap", "docker-registry", "libcap2-bin", "iproute2")
DEFAULT_MIRROR = "http://deb.debian.org/debian"
RUNTIME_NAME = "nosr"
CGROUP_ROOT = Path("/sys/fs/cgroup")
STOP_TIMEOUT = 60.0

_APT_LOCK = Path("/run/lock/dind-tests-apt.lock")
_CGROUP_LOCK = Path("/run/lock/dind-tests-cgroup.lock")
# Controllers this module enabled in the cgroup2 root (hybrid hosts), to undo.
_UNIFIED_STATE = Path("/run/lock/dind-tests-unified-enabled")

# Deletes CAP_SYS_RESOURCE from what runc is told to grant, then becomes runc.
# Only `create`/`run` (bundle config.json) and `exec` (--process JSON) carry
# capabilities; every other call passes straight through.
_RUNC_WRAPPER = """#!{python} -I
# Generated by tests/support/dockerd.py: runc without CAP_SYS_RESOURCE (see there).
import json
import os
import sys

RUNC = {runc!r}
DROP = "CAP_SYS_RESOURCE"
GLOBAL_WITH_VALUE = {{"--log", "--log-format", "--root", "--criu", "--rootless"}}


def option(args, names):
    for i, arg in enumerate(args):
        if arg in names and i + 1 < len(args):
            return args[i + 1]
        for name in names:
            if name.startswith("--") and arg.startswith(name + "="):
                return arg[len(name) + 1 :]
    return None


def strip(path, key):
    try:
        with open(path) as f:
            doc = json.load(f)
    except (OSError, ValueError):
        return
    process = doc.get(key, {{}}) if key else doc
    caps = process.get("capabilities") or {{}}
    changed = False
    for name, values in caps.items():
        if isinstance(values, list) and DROP in values:
            caps[name] = [v for v in values if v != DROP]
            changed = True
    if changed:
        with open(path, "w") as f:
            json.dump(doc, f)


def main():
    args = sys.argv[1:]
    i = 0
    while i < len(args) and args[i].startswith("-"):
        i += 2 if args[i] in GLOBAL_WITH_VALUE else 1
    command, rest = (args[i], args[i + 1 :]) if i < len(args) else ("", [])
    if command in ("create", "run"):
        bundle = option(rest, ("--bundle", "-b")) or "."
        strip(os.path.join(bundle, "config.json"), "process")
    elif command == "exec":
        process = option(rest, ("--process", "-p"))
        if process:
            strip(process, "")
    os.execv(RUNC, [RUNC, *args])


main()
"""


class DockerdError(RuntimeError):
    """The daemon (or a client call against it) failed; the message carries its output."""


def _run(
    argv: Sequence[str], timeout: float = 1800.0, **kwargs: object
) -> subprocess.CompletedProcess[str]:
    """Checked, and bounded: apt and debootstrap over a slow mirror take minutes, not hours."""
    return subprocess.run(list(argv), check=True, text=True, timeout=timeout, **kwargs)  # type: ignore[call-overload,no-any-return]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serialise a critical section across processes (two suites may run at once)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def engine_missing() -> list[str]:
    """Names of the programs this module needs that are not on PATH."""
    needed = (
        "dockerd",
        "containerd",
        "runc",
        "docker",
        "debootstrap",
        "docker-registry",
        "capsh",
        "unshare",
        "nsenter",
        "ip",
        "tar",
    )
    return [p for p in needed if shutil.which(p) is None]


def ensure_engine() -> None:
    """Install the engine with apt when it is missing (a fresh CI machine has none).

    ``docker.io`` brings dockerd, containerd, runc, tini and iptables; debootstrap
    builds base images without any registry; ``docker-registry`` is a real registry
    server for loopback; ``libcap2-bin`` gives capsh, for runs without CAP_SYS_ADMIN;
    ``iproute2`` brings up ``lo`` in a daemon's namespace.
    Serialised with a lock file, and apt waits for the dpkg lock, so two suites
    starting at once do not collide.
    """
    if not engine_missing():
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    wait = ("-o", "DPkg::Lock::Timeout=300")
    with _locked(_APT_LOCK):
        if not engine_missing():
            return
        _run(["apt-get", *wait, "update", "-q"], env=env, stdout=subprocess.DEVNULL)
        _run(
            ["apt-get", *wait, "install", "-y", "-q", "--no-install-recommends", *ENGINE_PACKAGES],
            env=env,
            stdout=subprocess.DEVNULL,
        )
    missing = engine_missing()
    if missing:
        raise DockerdError(f"still missing after apt-get install: {', '.join(missing)}")


def docker_client() -> str:
    """The docker CLI on PATH (a newer client is fine: it negotiates the API version)."""
    path = shutil.which("docker")
    if path is None:
        raise DockerdError("no docker client on PATH (run ensure_engine())")
    return path


def _real_runc() -> str:
    for candidate in ("/usr/sbin/runc", "/usr/bin/runc"):
        if os.access(candidate, os.X_OK):
            return candidate
    path = shutil.which("runc")
    if path is None:
        raise DockerdError("runc not found (run ensure_engine())")
    return path


def write_runc_wrapper(path: Path, runc: str | None = None) -> Path:
    """Write the CAP_SYS_RESOURCE-dropping runc wrapper (executable) to ``path``."""
    path.write_text(_RUNC_WRAPPER.format(python=sys.executable, runc=runc or _real_runc()))
    path.chmod(0o755)
    return path


def _ping(sock: Path, timeout: float = 2.0) -> bool:
    """True once the API socket answers ``GET /_ping`` with 200 (no client fork)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(str(sock))
            s.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            status = s.recv(64).split(b"\r\n", 1)[0]
    except OSError:
        return False
    return status.split(b" ")[1:2] == [b"200"]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _processes_using(marker: str) -> list[int]:
    """PIDs whose command line mentions ``marker`` (our private exec-root).

    After a daemon had to be killed, its containerd and shims are found this way:
    the marker is a random per-daemon path, so only our own processes match.
    """
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in cmdline:
            pids.append(int(entry.name))
    return pids


def remove_cgroup_tree(top: Path, timeout: float = 10.0) -> list[Path]:
    """rmdir ``top`` and its sub-groups, deepest first; returns the ones still busy.

    Retried for up to ``timeout`` seconds: a group whose last process was just
    killed stays busy (EBUSY) until the kernel has finished with it.
    """
    deadline = time.monotonic() + timeout
    while True:
        busy = []
        if top.is_dir():
            for dirpath, _dirs, _files in sorted(os.walk(top), key=lambda t: -t[0].count("/")):
                try:
                    Path(dirpath).rmdir()
                except FileNotFoundError:
                    pass
                except OSError:
                    busy.append(Path(dirpath))
        if not busy or time.monotonic() > deadline:
            return busy
        time.sleep(0.2)


def _cgroup_mounts() -> list[Path]:
    """Mount points of every cgroup hierarchy (v1 and v2) under /sys/fs/cgroup."""
    from dind import mountinfo

    text = Path("/proc/self/mountinfo").read_text(errors="surrogateescape")
    return [
        Path(m.mountpoint)
        for m in mountinfo.parse(text, "/proc/self/mountinfo")
        if m.fstype in ("cgroup", "cgroup2") and m.mountpoint.startswith(str(CGROUP_ROOT))
    ]


def _delegate_unified(parent: str) -> None:
    """On a hybrid host, give our cgroup2 parent every controller the root offers.

    runc's cgroupfs driver creates the v1 groups itself, but in hybrid mode it
    enables no controller on the cgroup2 side, so containers would get no
    ``hugetlb.*`` files and a nested cgroup v2 view would see no controllers.
    Controllers this module enables in the root's subtree_control are recorded in
    a state file, so that the last daemon to stop can disable them again.
    """
    unified = CGROUP_ROOT / "unified"
    if not (unified / "cgroup.subtree_control").exists():
        return
    with _locked(_CGROUP_LOCK):
        available = (unified / "cgroup.controllers").read_text().split()
        enabled = (unified / "cgroup.subtree_control").read_text().split()
        added = [c for c in available if c not in enabled]
        if added:
            recorded = _read_words(_UNIFIED_STATE)
            _UNIFIED_STATE.write_text(" ".join(sorted({*recorded, *added})) + "\n")
            (unified / "cgroup.subtree_control").write_text(" ".join(f"+{c}" for c in added))
        group = unified / parent.lstrip("/")
        group.mkdir(exist_ok=True)
        if available:
            (group / "cgroup.subtree_control").write_text(" ".join(f"+{c}" for c in available))


def _undelegate_unified() -> None:
    """Disable at the cgroup2 root what this module enabled there, once no daemon is left.

    Another test daemon still running (its ``dind-test-*`` group exists) keeps them
    on; a controller some other group uses makes the kernel refuse (EBUSY), and it
    stays recorded for the next daemon to stop.
    """
    unified = CGROUP_ROOT / "unified"
    if not _UNIFIED_STATE.exists() or not (unified / "cgroup.subtree_control").exists():
        return
    with _locked(_CGROUP_LOCK):
        if any(unified.glob("dind-test-*")):
            return
        remaining = []
        for controller in _read_words(_UNIFIED_STATE):
            try:
                (unified / "cgroup.subtree_control").write_text(f"-{controller}")
            except OSError:
                remaining.append(controller)
        if remaining:
            _UNIFIED_STATE.write_text(" ".join(remaining) + "\n")
        else:
            _UNIFIED_STATE.unlink(missing_ok=True)


def _read_words(path: Path) -> list[str]:
    try:
        return path.read_text().split()
    except FileNotFoundError:
        return []


@dataclass
class Dockerd:
    """A running private daemon; use as a context manager or call :meth:`stop`."""

    workdir: Path
    pid: int
    socket: Path
    exec_root: Path
    cgroup_parent: str
    log_path: Path
    client: str = field(default_factory=docker_client)
    gateway: Gateway | None = None
    _stopped: bool = False

    @property
    def host(self) -> str:
        """The ``DOCKER_HOST`` value for this daemon."""
        return f"unix://{self.socket}"

    @property
    def data_root(self) -> Path:
        return self.workdir / "data"

    @property
    def proxy_env(self) -> dict[str, str]:
        """The way to the network from the daemon's namespace, as proxy variables."""
        proxy = f"http://127.0.0.1:{PROXY_PORT}"
        direct = "localhost,127.0.0.1,::1"
        return {
            **{name: proxy for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy")},
            **{name: direct for name in ("NO_PROXY", "no_proxy")},
        }

    @property
    def build_args(self) -> list[str]:
        """``--build-arg`` options that give RUN steps the proxy (docker's predefined ARGs)."""
        return [arg for k, v in self.proxy_env.items() for arg in ("--build-arg", f"{k}={v}")]

    @property
    def containerd_socket(self) -> Path:
        """The socket of the daemon's own containerd, a path in its mount namespace only."""
        return self.exec_root / "containerd" / "containerd.sock"

    def in_namespaces(self, *argv: str | os.PathLike[str]) -> list[str]:
        """``argv`` prefixed to run in the daemon's mount and network namespaces.

        For clients that must see what the daemon sees: its private /run (e.g.
        ``ctr``, whose stdio FIFOs containerd's shims open by path) and its
        loopback.
        """
        return [
            "nsenter",
            f"--target={self.pid}",
            "--mount",
            "--net",
            "--",
            *(os.fspath(a) for a in argv),
        ]

    @property
    def env(self) -> dict[str, str]:
        """Environment for any docker client (or SDK) that should talk to this daemon."""
        return {
            **os.environ,
            "DOCKER_HOST": self.host,
            "DOCKER_CONFIG": str(self.workdir / "client"),
            "DOCKER_CLI_HINTS": "false",
        }

    def docker(
        self,
        *args: str | os.PathLike[str],
        check: bool = True,
        input: str | None = None,
        stdin: IO[bytes] | int | None = None,
        timeout: float = 600.0,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run the docker client against this daemon, capturing stdout and stderr.

        ``check=True`` raises :class:`DockerdError` with both streams on failure.
        ``stdin`` may be an open file (e.g. a tarball for ``docker load``).
        """
        argv = [self.client, *(os.fspath(a) for a in args)]
        proc = subprocess.run(
            argv,
            input=input,
            stdin=stdin if input is None else None,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            env={**self.env, **(env or {})},
            check=False,
        )
        if check and proc.returncode != 0:
            raise DockerdError(
                f"{' '.join(argv[1:])!s} exited {proc.returncode}\n"
                f"--- stdout\n{proc.stdout[-4000:]}--- stderr\n{proc.stderr[-4000:]}"
            )
        return proc

    def image_exists(self, ref: str) -> bool:
        return self.docker("image", "inspect", ref, check=False).returncode == 0

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = STOP_TIMEOUT, *, remove_workdir: bool = False) -> None:
        """SIGTERM the daemon by PID, SIGKILL it (and its own containerd/shims) if it hangs.

        Then remove the per-daemon cgroups and, if asked, the workdir (images,
        volumes: often a gigabyte). Idempotent.
        """
        if self._stopped:
            if remove_workdir:
                shutil.rmtree(self.workdir, ignore_errors=True)
            return
        self._stopped = True
        _terminate(self.pid, timeout)
        # Leftovers (containerd, shims) only when the daemon could not shut down.
        for pid in _processes_using(str(self.exec_root)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self.gateway is not None:
            self.gateway.close()
        for mount in _cgroup_mounts():
            remove_cgroup_tree(mount / self.cgroup_parent.lstrip("/"))
        _undelegate_unified()
        if remove_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Dockerd:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# Run as `sh -euc SCRIPT sh dockerd ARGS...` in the daemon's new mount and network
# namespaces: a private /run hides containerd's shim sockets, /run/docker and the
# exec-root, a private /etc/docker its key.json; all of it vanishes with the
# namespaces. The new network namespace starts with `lo` down.
# A new network namespace copies net.ipv4.ip_forward from the machine's (Linux's
# devconf_inherit_init_net=0): 0 on a machine with no engine of its own, and then
# every `docker run` on a user-defined network prints "WARNING: IPv4 forwarding is
# disabled" on stderr (a fresh CI machine; the daemon runs with --ip-forward=false).
# The namespace's own value, as a machine running Docker has it.
_PRIVATE_NAMESPACE = """
mount -t tmpfs -o mode=755,nosuid,nodev dind-test-run /run
if [ -d /etc/docker ]; then mount -t tmpfs -o mode=755 dind-test-etc /etc/docker; fi
ip link set lo up
echo 1 > /proc/sys/net/ipv4/ip_forward
exec "$@"
"""

# Popen objects of the daemons this process started, so stop() can reap them.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def _terminate(pid: int, timeout: float) -> None:
    """SIGTERM ``pid``, wait up to ``timeout``, then SIGKILL; reaps it if it is our child."""
    proc = _CHILDREN.pop(pid, None)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if proc is not None:
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        return
    deadline = time.monotonic() + timeout
    while _pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def start_dockerd(
    workdir: Path,
    *,
    extra_args: Sequence[str] = (),
    timeout: float = 60.0,
) -> Dockerd:
    """Start a private dockerd whose state lives under ``workdir``; wait until it answers.

    ``extra_args`` are appended to dockerd's command line (e.g.
    ``["--insecure-registry", "127.0.0.1:5000"]``; 127.0.0.0/8 is insecure by default).
    On failure the daemon is stopped and :class:`DockerdError` carries its log tail.
    """
    workdir = workdir.resolve()
    if workdir.is_relative_to("/run"):
        raise ValueError(f"{workdir}: /run is private to the daemon, pick another workdir")
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "client").mkdir(exist_ok=True)
    token = secrets.token_hex(4)
    exec_root = Path(f"/run/dd-{token}")  # inside the daemon's private /run
    sock = workdir / "docker.sock"
    log_path = workdir / "dockerd.log"
    config = workdir / "daemon.json"
    config.write_text("{}\n")
    wrapper = write_runc_wrapper(workdir / "runc-nosr")
    parent = f"/dind-test-{os.getpid()}-{token}"  # the PID: see tests/support/machine.py
    _delegate_unified(parent)
    argv = [
        "unshare",
        "--mount",
        "--net",
        "--propagation",
        "private",
        "--",
        "sh",
        "-euc",
        _PRIVATE_NAMESPACE,
        "sh",
        "dockerd",
        f"--host=unix://{sock}",
        f"--data-root={workdir / 'data'}",
        f"--exec-root={exec_root}",
        f"--pidfile={workdir / 'dockerd.pid'}",
        f"--config-file={config}",
        f"--cgroup-parent={parent}",
        "--bridge=none",
        "--iptables=false",
        "--ip6tables=false",
        "--ip-forward=false",
        "--ip-masq=false",
        f"--add-runtime={RUNTIME_NAME}={wrapper}",
        f"--default-runtime={RUNTIME_NAME}",
        *extra_args,
    ]
    with log_path.open("ab") as log:
        proc = subprocess.Popen(  # unshare execs dockerd: same PID
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
        )
    _CHILDREN[proc.pid] = proc
    daemon = Dockerd(
        workdir=workdir,
        pid=proc.pid,
        socket=sock,
        exec_root=exec_root,
        cgroup_parent=parent,
        log_path=log_path,
    )
    deadline = time.monotonic() + timeout
    while not _ping(sock):
        if proc.poll() is not None or time.monotonic() > deadline:
            daemon.stop()
            raise DockerdError(
                f"dockerd did not come up (exit {proc.returncode}):\n{daemon.log_tail()}"
            )
        time.sleep(0.1)
    # Answering means unshare(2) is long done: the namespace is the daemon's own.
    netns = f"/proc/{proc.pid}/ns/net"
    if os.readlink(netns) == os.readlink("/proc/self/ns/net"):
        daemon.stop()
        raise DockerdError("dockerd runs in this process's network namespace")
    daemon.gateway = Gateway(netns).start()
    return daemon


def build_dev_image(
    d: Dockerd,
    repo: Path,
    *,
    tag: str,
    base: str | None = None,
    build_args: Sequence[str] = (),
    timeout: float = 900.0,
) -> subprocess.CompletedProcess[str]:
    """``scripts/build-image [--base BASE] --tag TAG -- BUILD_ARGS`` of ``repo`` against
    ``d`` (not checked). Without ``base`` the Dockerfile's own ``FROM`` applies
    (``debian:SUITE-slim``: see :func:`debian_slim`).

    The build's apt reaches the Debian mirror through the daemon's proxy (see
    Network above): the script's default ``--network host`` is the daemon's netns.
    """
    base_args = ["--base", base] if base else []
    return subprocess.run(
        [str(repo / "scripts/build-image"), *base_args, "--tag", tag, "--", *build_args],
        env={**d.env, "DOCKER": d.client},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


# --- base images without a registry -------------------------------------------------


def apt_mirror(sources: Sequence[Path] | None = None) -> str:
    """The Debian mirror this machine's apt uses (first ``debian`` URI), else deb.debian.org.

    Reads one-line ``deb URI SUITE`` entries and deb822 ``URIs:`` fields.
    """
    if sources is None:
        listd = sorted(Path("/etc/apt/sources.list.d").glob("*"))
        sources = [Path("/etc/apt/sources.list"), *listd]
    for path in sources:
        try:
            text = path.read_text()
        except OSError:
            continue
        for match in re.finditer(r"^(?:deb\s+(?:\[[^]]*\]\s+)?|URIs:\s*)(\S+)", text, re.M):
            uri = match.group(1).rstrip("/")
            if uri.endswith("/debian"):
                return uri
    return DEFAULT_MIRROR


# Like the official debian:*-slim images: no docs, man pages or locales from later
# installs, no services started by package scripts, apt caches cleaned.
_SLIM_DPKG = """path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
"""
_CLEAN = "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin || true"
_APT_CLEAN = f"""DPkg::Post-Invoke {{ "{_CLEAN}"; }};
APT::Update::Post-Invoke {{ "{_CLEAN}"; }};
Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";
"""


# Bump when _slim() or build_rootfs_tar() change what the cached tarball holds.
_ROOTFS_RECIPE = "minbase-slim-3-proxy"

# Test daemons live in network namespaces of their own; their way to the mirror
# is the proxy on their loopback (tests/support/netns.py). apt only: no variable.
_APT_PROXY = f"""// tests/support/dockerd.py: the test daemon's proxy (tests/support/netns.py)
Acquire::http::Proxy "http://127.0.0.1:{PROXY_PORT}";
Acquire::https::Proxy "http://127.0.0.1:{PROXY_PORT}";
"""


def _slim(rootfs: Path) -> None:
    (rootfs / "etc/dpkg/dpkg.cfg.d/docker-slim").write_text(_SLIM_DPKG)
    (rootfs / "etc/apt/apt.conf.d/docker-clean").write_text(_APT_CLEAN)
    (rootfs / "etc/apt/apt.conf.d/dind-test-proxy").write_text(_APT_PROXY)
    (rootfs / "etc/apt/apt.conf.d/docker-no-recommends").write_text(
        'APT::Install-Recommends "false";\n'
    )
    policy = rootfs / "usr/sbin/policy-rc.d"
    policy.write_text("#!/bin/sh\n# no service starts in an image build\nexit 101\n")
    policy.chmod(0o755)
    for pattern in (
        "var/lib/apt/lists/*",
        "var/cache/apt/archives/*.deb",
        "usr/share/man/*",
        "usr/share/info/*",
        "usr/share/locale/*",
        "usr/share/lintian/*",
    ):
        for path in rootfs.glob(pattern):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.name != "lock":
                path.unlink()
    for path in rootfs.glob("usr/share/doc/*/*"):
        if path.name != "copyright":
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
    for leftover in ("var/log/bootstrap.log", "var/cache/ldconfig/aux-cache"):
        (rootfs / leftover).unlink(missing_ok=True)


def build_rootfs_tar(
    tarball: Path,
    *,
    suite: str = "bookworm",
    mirror: str | None = None,
    packages: Sequence[str] = (),
) -> Path:
    """debootstrap a minbase ``suite`` (plus ``packages``) and tar it to ``tarball``.

    debootstrap mounts /proc and /sys into the target, so it runs in a private mount
    namespace. The tarball is written atomically (temp name, then rename).
    """
    mirror = mirror or apt_mirror()
    tarball.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="rootfs-", dir=tarball.parent) as tmp:
        rootfs = Path(tmp) / "rootfs"
        include = ["--include=" + ",".join(packages)] if packages else []
        _run(
            [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "--",
                "debootstrap",
                "--variant=minbase",
                *include,
                suite,
                str(rootfs),
                mirror,
            ],
            stdout=subprocess.DEVNULL,
        )
        _slim(rootfs)
        partial = tarball.with_suffix(".partial")
        _run(["tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(partial), "."])
        partial.rename(tarball)
    return tarball


def base_image(
    d: Dockerd,
    cache_dir: Path,
    *,
    suite: str = "bookworm",
    packages: Sequence[str] = (),
    tag: str | None = None,
) -> str:
    """A local Debian ``suite`` minbase image in ``d``, built without any registry.

    The rootfs tarball is cached in ``cache_dir`` (keyed by suite, mirror and
    packages) so later runs only ``docker import`` it (seconds instead of ~30 s of
    debootstrap). A lock makes concurrent callers share one debootstrap. The image
    looks like ``debian:<suite>-slim`` (no docs, policy-rc.d denies service starts),
    and its apt uses the test daemon's proxy (127.0.0.1:3128, see Network above).
    Returns the tag, by default ``local/debian:<suite>`` (plus a key suffix when
    ``packages`` are given).
    """
    mirror = apt_mirror()
    recipe = [_ROOTFS_RECIPE, suite, mirror, sorted(packages)]
    key = hashlib.sha256(json.dumps(recipe).encode()).hexdigest()[:12]
    if tag is None:
        tag = f"local/debian:{suite}" + (f"-{key}" if packages else "")
    if d.image_exists(tag):
        return tag
    tarball = cache_dir / f"rootfs-{suite}-{key}.tar"
    with _locked(cache_dir / ".lock"):
        if not tarball.exists():
            build_rootfs_tar(tarball, suite=suite, mirror=mirror, packages=packages)
    d.docker(
        "import",
        "--change",
        'CMD ["bash"]',
        "--message",
        f"debootstrap --variant=minbase {suite} {mirror}",
        tarball,
        tag,
    )
    return tag


def dockerfile_suite(repo: Path) -> str:
    """The Debian suite the image is built on by default: ``ARG DEBIAN_SUITE=`` of the
    repository's Dockerfile (one place for that fact, read by the tests too)."""
    text = (repo / "Dockerfile").read_text()
    found = re.search(r"^ARG DEBIAN_SUITE=([a-z]+)$", text, re.M)
    if found is None:
        raise DockerdError(f"{repo / 'Dockerfile'}: no ARG DEBIAN_SUITE=<suite>")
    return found.group(1)


def debian_slim(d: Dockerd, cache_dir: Path, suite: str) -> str:
    """:func:`base_image` of ``suite``, also tagged ``debian:<suite>-slim`` in ``d``: the
    name the Dockerfile's ``FROM`` gives it (``ARG DEBIAN_SUITE``), so the image builds
    from its own defaults, no ``--base``, as a user's would (the daemon is private: the
    local tag shadows no one's). Returns the ``local/debian:<suite>`` tag."""
    tag = base_image(d, cache_dir, suite=suite)
    d.docker("tag", tag, f"debian:{suite}-slim")
    return tag
