"""Run a command as PID 1 of a privileged container of another runtime (issue 11).

One method per runtime, each with the command line measured on these machines
(shared docs, runtimes-here.md), the dev image as the container and ``Spec.argv``
as its PID 1 (the image's ENTRYPOINT is not implied: pass ``dind ...`` yourself):

- **ctr** (containerd): ``ctr run --rm --privileged`` against the containerd of a
  private test dockerd (tests.support.dockerd), in a namespace of its own
  (``-n``), run inside that daemon's mount namespace (containerd's shims open
  ctr's stdio FIFOs by path, and the socket lives in the daemon's private /run).
  The image: ``docker save | ctr images import``. ``--runc-binary`` is the runc
  wrapper that drops CAP_SYS_RESOURCE (absent from this host's bounding set);
  ``--memory-limit`` limits the outer container.
- **podman**: its own ``--root``, ``--runroot``, ``--tmpdir``, network config
  dir and runc state (``--runtime-flag=root=``), the cgroupfs manager,
  ``--network none`` (its default network would add a bridge to the machine),
  ``--ulimit nofile=20000:20000 --ulimit nproc=4096:4096`` (its defaults need
  CAP_SYS_RESOURCE); ``podman load``.
- **lxc**: ``lxc-start -P DIR -n NAME -F`` with a privileged config (AppArmor
  unconfined, nesting allowed, proc/sys/cgroup mounted rw, all devices, autodev,
  ``lxc.net.0.type = empty``); its console (the command's output) is logged to a
  file, and ``lxc-start`` does not pass the command's exit status on (it is 0).
- **nspawn**: ``systemd-nspawn -q -D ROOTFS --register=no --keep-unit
  --capability=all --private-network --pipe``.

LXC and nspawn get a fresh rootfs per run, unpacked from one ``docker export``
of the image per session; the image's environment (PATH=/opt/dind/bin:...) is
passed explicitly since no image config is involved there.

Isolation and clean-up, whatever happens:

- every run has a **confinement cgroup** ``/dind-test-<pid>-rt-<token>`` in every
  hierarchy; the runtime's CLI is started inside it (by a shell that writes its
  own PID there, then execs), and each runtime is told to put the container
  under it (ctr ``--cgroup``, podman ``--cgroup-parent``, LXC
  ``lxc.cgroup.relative``, nspawn ``--keep-unit``). Afterwards every process
  left in it is SIGKILLed by PID (all are ours), the tree is removed, and so is
  any new top-level group the run created elsewhere (a nested dockerd under ctr
  creates ``/docker`` at the host's root);
- podman, LXC and nspawn run in a private mount namespace (``unshare --mount``),
  so their host-side mounts (podman's overlay rootfs) never reach the machine's;
- a bounded timeout per run; then the runtime's own stop (``ctr task kill``,
  ``podman rm -f``, ``lxc-stop -k``) and the confinement kill;
- ``/var/lib/docker`` of the container is a fresh host directory bind-mounted
  (``Spec.docker_dir``), never the container's overlay rootfs;
- all state (podman storage, LXC path, rootfs copies, logs) lives under the
  :class:`Runtimes` workdir, removed by :meth:`Runtimes.close`; what the
  runtimes leave on the host's /run (no tmpfs here) goes too: LXC's and
  nspawn's lock files, nspawn's propagation directory, and /run/lxc,
  /run/systemd/nspawn and /run/runc themselves when this session created them.

While a run lasts, the memory hierarchy is polled for new groups named like a
container ID (64 hex digits): :attr:`Result.new_cgroups` says where nested
containers landed, seen from the host.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import stat
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.dockerd import Dockerd, remove_cgroup_tree, write_runc_wrapper
from tests.support.machine import CGROUP_ROOT, cgroup_hierarchies, parse_mounts

RUNTIMES = ("ctr", "podman", "lxc", "nspawn")
PACKAGES = {"ctr": "containerd", "podman": "podman", "lxc": "lxc", "nspawn": "systemd-container"}
PROGRAMS = {
    "ctr": ("ctr", "nsenter"),
    "podman": ("podman",),
    "lxc": ("lxc-start", "lxc-stop"),
    "nspawn": ("systemd-nspawn",),
}
PRIVATE_MOUNTS = ("unshare", "--mount", "--propagation", "private", "--")
PODMAN_ULIMITS = ("--ulimit", "nofile=20000:20000", "--ulimit", "nproc=4096:4096")
CONTAINER_ID = re.compile(r"[0-9a-f]{64}")
_APT_LOCK = Path("/run/lock/dind-tests-apt.lock")
LXC_RUN = Path("/run/lxc")  # lock files per lxcpath and container
NSPAWN_RUN = Path("/run/systemd/nspawn")  # image locks, the propagation directory
RUNC_RUN = Path("/run/runc")  # made (empty) by `podman run --privileged`, whatever its root
USERNS_SIZE = 65536
LXC_START = "/usr/bin/lxc-start"
ROOT_PATH = "/usr/sbin:/sbin"
"""PATH for lxc-start in a user namespace: without /usr/bin, where newuidmap lives."""
LXC_PRIVILEGED = (
    "lxc.apparmor.profile = unconfined",
    "lxc.apparmor.allow_nesting = 1",
    "lxc.mount.auto = proc:rw sys:rw cgroup:rw",
    "lxc.cgroup.devices.allow = a",
    "lxc.autodev = 1",
)
"""A privileged LXC container (runtimes-here.md)."""


def lxc_userns_keys(base: int) -> list[str]:
    """``dind --recipe lxc``'s keys, with the ID map moved to ``base``."""
    from dind.recipe import LXC_KEYS

    return [
        f"lxc.idmap = {line.split()[2]} 0 {base} {USERNS_SIZE}"
        if line.startswith("lxc.idmap = ")
        else line
        for line in LXC_KEYS
    ]


def searchable(path: Path) -> None:
    """Let a user namespace's root reach and read ``path``: ``o+x`` on each of its
    directories that this session made (mkdtemp's are 0700), up to /var/tmp, and ``o+r`` on
    ``path`` itself (``docker save`` writes 0600)."""
    path.chmod(path.stat().st_mode | stat.S_IROTH | (stat.S_IXOTH if path.is_dir() else 0))
    for parent in path.parents:
        if parent in (Path("/var/tmp"), Path("/")):
            break
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH)


def shift_ids(top: Path, base: int) -> None:
    """Give ``top`` and everything below it to the user namespace: each owner moved up by
    ``base`` (root becomes ``base``), symlinks themselves included."""
    os.lchown(top, os.lstat(top).st_uid + base, os.lstat(top).st_gid + base)
    for dirpath, dirs, files in os.walk(top):
        for name in (*dirs, *files):
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            os.lchown(path, st.st_uid + base, st.st_gid + base)


class RuntimeSetupError(RuntimeError):
    """A runtime could not be prepared (image import, rootfs...); the message says why."""


@dataclass(frozen=True)
class Bind:
    """A host path bind-mounted into the container."""

    source: Path
    target: str
    readonly: bool = True


@dataclass
class Spec:
    """What to run: PID 1's argv and the container around it."""

    argv: Sequence[str]
    env: Mapping[str, str] = field(default_factory=dict)
    binds: Sequence[Bind] = ()
    memory_limit: int | None = None  # bytes, on the outer container
    timeout: float = 300.0
    options: Sequence[str] = ()  # extra options of the runtime's own CLI
    docker_dir: bool = True  # a fresh host directory on /var/lib/docker
    userns: int | None = None  # a user namespace: container root is this host UID (and GID)
    privileged: bool = True  # podman --privileged, nspawn --capability=all (else spec.options)


@dataclass
class Result:
    """What a run did; the container's own exit status is ``returncode`` (not LXC's)."""

    runtime: str
    command: list[str]  # the runtime's command line, as run
    returncode: int | None  # None: timed out
    stdout: str
    stderr: str
    seconds: float
    group: str  # the confinement cgroup, e.g. /dind-test-123-rt-ab12cd34
    new_cgroups: list[str]  # container-ID groups that appeared meanwhile (memory hierarchy)
    leftovers: list[str]  # what clean-up could not remove (should be empty)

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def missing_programs(runtime: str) -> list[str]:
    return [p for p in PROGRAMS[runtime] if shutil.which(p) is None]


def ensure_runtimes(runtimes: Sequence[str] = RUNTIMES) -> dict[str, str]:
    """apt-get install the runtimes that are missing; returns {runtime: why it is unusable}."""
    missing = [r for r in runtimes if missing_programs(r)]
    if missing:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        wait = ("-o", "DPkg::Lock::Timeout=300")
        packages = sorted({PACKAGES[r] for r in missing})
        _APT_LOCK.parent.mkdir(parents=True, exist_ok=True)
        with _APT_LOCK.open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # with tests.support.dockerd's installs
            for argv in (
                ["apt-get", *wait, "update", "-q"],
                ["apt-get", *wait, "install", "-y", "-q", "--no-install-recommends", *packages],
            ):
                subprocess.run(argv, env=env, capture_output=True, timeout=600, check=False)
    return {
        r: f"not installed (apt-get install {PACKAGES[r]} failed?): {', '.join(progs)}"
        for r in runtimes
        if (progs := missing_programs(r))
    }


# --- cgroups --------------------------------------------------------------------------


def hierarchies() -> list[Path]:
    """Every cgroup hierarchy mounted under /sys/fs/cgroup, seen by this process."""
    text = Path("/proc/self/mountinfo").read_text(errors="surrogateescape")
    return [Path(p) for p in cgroup_hierarchies(parse_mounts(text))]


def _top_level_groups() -> dict[Path, set[str]]:
    return {h: {e.name for e in os.scandir(h) if e.is_dir()} for h in hierarchies()}


class Confinement:
    """A cgroup of ours in every hierarchy, for a runtime's CLI and its container."""

    def __init__(self, name: str) -> None:
        self.path = "/" + name
        self.dirs = [h / name for h in hierarchies()]
        try:
            for group in self.dirs:
                group.mkdir()
                if (group / "cpuset.cpus").exists():  # v1: a new cpuset has no CPUs, no memory
                    for knob in ("cpuset.cpus", "cpuset.mems"):
                        (group / knob).write_text((group.parent / knob).read_text())
        except OSError:
            self.remove()
            raise

    def limit_memory(self, limit: int) -> None:
        """The limit on the group itself, for runtimes that cannot set one."""
        for group in self.dirs:
            for knob in ("memory.limit_in_bytes", "memory.max"):
                if (group / knob).exists():
                    (group / knob).write_text(str(limit))

    def wrap(self, argv: Sequence[str]) -> list[str]:
        """``argv`` started from inside the group: a shell joins it, then execs argv."""
        joins = " ".join(shlex.quote(str(g / "cgroup.procs")) for g in self.dirs)
        script = f'for f in {joins}; do echo $$ > "$f"; done; exec "$@"'
        return ["sh", "-c", script, "sh", *argv]

    def pids(self) -> set[int]:
        found: set[int] = set()
        for group in self.dirs:
            for procs in group.rglob("cgroup.procs"):
                with contextlib.suppress(OSError, ValueError):
                    found.update(int(p) for p in procs.read_text().split())
        return found

    def kill(self, timeout: float = 15.0) -> set[int]:
        """SIGKILL every process in the group (ours: started by the run) until none is left."""
        deadline = time.monotonic() + timeout
        while (pids := self.pids()) and time.monotonic() < deadline:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)
        return self.pids()

    def remove(self) -> list[str]:
        busy: list[str] = []
        for group in self.dirs:
            busy += [str(p) for p in remove_cgroup_tree(group)]
        return busy


class CgroupWatch:
    """Polls the memory hierarchy for new groups named like container IDs."""

    def __init__(self, interval: float = 0.1) -> None:
        memory = [h for h in hierarchies() if h.name == "memory"]
        self.root = memory[0] if memory else Path(CGROUP_ROOT)
        self.before = self._scan()
        self.seen: dict[str, None] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True)

    def _scan(self) -> set[str]:
        found: set[str] = set()
        for dirpath, dirs, _files in os.walk(self.root):
            found.update(os.path.join(dirpath, d) for d in dirs if CONTAINER_ID.fullmatch(d))
        return found

    def _run(self, interval: float) -> None:
        while not self._stop.wait(interval):
            for path in sorted(self._scan() - self.before):
                self.seen.setdefault("/" + os.path.relpath(path, self.root), None)

    def __enter__(self) -> CgroupWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# --- the runtimes ---------------------------------------------------------------------


class Runtimes:
    """The four runtimes around the dev image; all state under ``workdir``.

    ``daemon`` holds ``image`` (and gives ctr its containerd). Images and the
    exported rootfs are prepared once, on first use.
    """

    def __init__(self, workdir: Path, daemon: Dockerd, image: str) -> None:
        self.workdir = workdir
        self.daemon = daemon
        self.image = image
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.session = f"{os.getpid()}-{secrets.token_hex(2)}"
        self.ctr_namespace = f"dind-rt-{self.session}"
        self.runc = write_runc_wrapper(workdir / "runc-nosr")
        self._short_dir = Path(f"/var/tmp/dind-rt-{self.session}")
        self.image_env = self._image_env()
        self._cache: dict[str, object] = {}
        self._lock = threading.RLock()  # the ctr and podman images need image.tar first
        self._runtime_dirs = [d for d in (LXC_RUN, NSPAWN_RUN, RUNC_RUN) if not d.exists()]

    # Image preparation, once each ---------------------------------------------------

    def _once(self, key: str, make: Callable[[], object]) -> object:
        with self._lock:
            if key not in self._cache:
                self._cache[key] = make()
            return self._cache[key]

    def _image_env(self) -> dict[str, str]:
        config = self.daemon.docker("image", "inspect", "-f", "{{json .Config.Env}}", self.image)
        return dict(v.split("=", 1) for v in json.loads(config.stdout) or [] if "=" in v)

    def image_tar(self) -> Path:
        def save() -> Path:
            tar = self.workdir / "image.tar"
            self.daemon.docker("save", "-o", tar, self.image, timeout=300)
            return tar

        return Path(str(self._once("image.tar", save)))

    def rootfs_tar(self) -> Path:
        def export() -> Path:
            tar = self.workdir / "rootfs.tar"
            cid = self.daemon.docker("create", self.image).stdout.strip()
            try:
                with tar.open("wb") as out:
                    proc = subprocess.run(
                        [self.daemon.client, "export", cid],
                        stdout=out,
                        stderr=subprocess.PIPE,
                        env=self.daemon.env,
                        timeout=300,
                        check=False,
                    )
                if proc.returncode != 0:
                    raise RuntimeSetupError(
                        f"docker export: {proc.stderr.decode(errors='replace')}"
                    )
            finally:
                self.daemon.docker("rm", "-f", cid, check=False)
            return tar

        return Path(str(self._once("rootfs.tar", export)))

    def ctr_image(self) -> str:
        def load() -> str:
            imported = _run(
                self._ctr("images", "import", "--digests=false", self.image_tar()), timeout=300
            )
            refs = _run(self._ctr("images", "ls", "-q"), timeout=60).stdout.split()
            repo, _, tag = self.image.partition(":")
            ref = next((r for r in refs if r.endswith(f"/{repo}:{tag or 'latest'}")), None)
            if ref is None:
                raise RuntimeSetupError(f"ctr images import: no {self.image} in {refs}\n{imported}")
            return ref

        return str(self._once("ctr", load))

    def podman_image(self) -> str:
        def load() -> str:
            out = _run(self._podman("load", "-q", "-i", self.image_tar()), timeout=300).stdout
            match = re.search(r"Loaded image(?:\(s\))?: (\S+)", out)
            if not match:
                raise RuntimeSetupError(f"podman load: no image named in {out!r}")
            return match.group(1)

        return str(self._once("podman", load))

    def _fresh_rootfs(self, path: Path) -> Path:
        path.mkdir(parents=True)
        _run(
            ["tar", "--numeric-owner", "-C", str(path), "-xf", str(self.rootfs_tar())], timeout=300
        )
        return path

    @property
    def _lxc_lock(self) -> Path:
        """Where LXC keeps a lock file per container of our lxcpath (on the host's /run)."""
        return Path("/run/lxc/lock") / str(self.workdir / "lxc").lstrip("/")

    # Command lines -------------------------------------------------------------------

    def _ctr(self, *args: str | os.PathLike[str]) -> list[str]:
        sock = self.daemon.containerd_socket
        return self.daemon.in_namespaces("ctr", "-a", sock, "-n", self.ctr_namespace, *args)

    def _podman(self, *args: str | os.PathLike[str]) -> list[str]:
        """podman with state of its own, in a private mount namespace (its mounts stay there).

        podman refuses a runroot path longer than 50 characters: that one is short.
        """
        state = self.workdir / "podman"
        dirs = {name: state / name for name in ("root", "tmp", "net")}
        dirs["runroot"] = self._short_dir
        for d in dirs.values():
            d.mkdir(parents=True, exist_ok=True)
        return [
            *PRIVATE_MOUNTS,
            "podman",
            f"--root={dirs['root']}",
            f"--runroot={dirs['runroot']}",
            f"--tmpdir={dirs['tmp']}",
            f"--network-config-dir={dirs['net']}",
            "--cgroup-manager=cgroupfs",
            "--events-backend=file",
            "--storage-driver=overlay",
            f"--runtime-flag=root={self._short_dir / 'runc'}",  # not /run/runc
            *(os.fspath(a) for a in args),
        ]

    # Running -------------------------------------------------------------------------

    def run(self, runtime: str, spec: Spec) -> Result:
        runner: dict[str, Callable[[Spec], Result]] = {
            "ctr": self.ctr,
            "podman": self.podman,
            "lxc": self.lxc,
            "nspawn": self.nspawn,
        }
        return runner[runtime](spec)

    def ctr(self, spec: Spec) -> Result:
        image = self.ctr_image()

        def command(run: _Run) -> list[str]:
            argv = ["run", "--rm", "--privileged", f"--runc-binary={self.runc}"]
            argv += [f"--cgroup={run.group.path}/ctr"]
            if spec.memory_limit:
                argv += [f"--memory-limit={spec.memory_limit}"]
            argv += [f"--env={k}={v}" for k, v in spec.env.items()]
            for bind in run.binds:
                mode = "ro" if bind.readonly else "rw"
                argv += [
                    f"--mount=type=bind,src={bind.source},dst={bind.target},options=rbind:{mode}"
                ]
            return self._ctr(*argv, *spec.options, image, run.name, *spec.argv)

        def stop(run: _Run) -> None:
            for args in (
                ("task", "kill", "--signal", "SIGKILL", run.name),
                ("task", "delete", "--force", run.name),
                ("containers", "delete", run.name),
            ):
                _run(self._ctr(*args), timeout=30, check=False)

        return self._execute("ctr", spec, command, stop)

    def podman(self, spec: Spec) -> Result:
        image = self.podman_image()

        def command(run: _Run) -> list[str]:
            argv = ["run", "--rm", f"--name={run.name}", "--network=none"]
            argv += ["--privileged"] if spec.privileged else []
            if spec.userns is not None:
                ids = f"0:{spec.userns}:{USERNS_SIZE}"
                argv += [f"--uidmap={ids}", f"--gidmap={ids}"]
            argv += [*PODMAN_ULIMITS, f"--cgroup-parent={run.group.path}"]
            if spec.memory_limit:
                argv += [f"--memory={spec.memory_limit}"]
            argv += [f"--env={k}={v}" for k, v in spec.env.items()]
            for bind in run.binds:
                if spec.userns is not None:
                    if not bind.readonly:
                        shift_ids(bind.source, spec.userns)
                    searchable(bind.source)
                argv += [f"--volume={bind.source}:{bind.target}:{'ro' if bind.readonly else 'rw'}"]
            argv += [f"--entrypoint={json.dumps(list(spec.argv))}"]
            return self._podman(*argv, *spec.options, image)

        def stop(run: _Run) -> None:
            _run(self._podman("rm", "--force", "--time=0", run.name), timeout=60, check=False)

        return self._execute("podman", spec, command, stop)

    def lxc(self, spec: Spec) -> Result:
        lxcpath = self.workdir / "lxc"

        def command(run: _Run) -> list[str]:
            home = lxcpath / run.name
            rootfs = self._fresh_rootfs(home / "rootfs")
            env = {**self.image_env, **spec.env}
            if spec.userns is None:
                access = list(LXC_PRIVILEGED)
            else:  # the recipe's keys (dind --recipe lxc), the rootfs owned by the mapped IDs
                access = [*lxc_userns_keys(spec.userns)]
                shift_ids(home, spec.userns)
                for bind in run.binds:
                    if not bind.readonly:
                        shift_ids(bind.source, spec.userns)
                    searchable(bind.source)
                searchable(rootfs)
            lines = [
                f"lxc.uts.name = {run.name}",
                f"lxc.rootfs.path = dir:{rootfs}",
                "lxc.net.0.type = empty",
                *access,
                "lxc.pty.max = 1024",
                "lxc.cgroup.relative = 1",  # under lxc-start's group: the confinement
                f"lxc.console.logfile = {home / 'console.log'}",
                f"lxc.log.file = {home / 'lxc.log'}",
                "lxc.log.level = WARN",
                *(f"lxc.environment = {k}={v}" for k, v in env.items()),
            ]
            if spec.memory_limit:
                lines.append(f"lxc.cgroup.memory.limit_in_bytes = {spec.memory_limit}")
            for bind in run.binds:
                kind = "file" if bind.source.is_file() else "dir"
                mode = ",ro" if bind.readonly else ""
                target = bind.target.lstrip("/")
                lines.append(
                    f"lxc.mount.entry = {bind.source} {target} none bind{mode},create={kind} 0 0"
                )
            (home / "config").write_text("\n".join(lines) + "\n")
            run.console = home / "console.log"
            argv = [LXC_START, f"--lxcpath={lxcpath}", f"--name={run.name}", "-F"]
            if spec.userns is not None:
                # Without newuidmap on its PATH, LXC (as root) writes the ID maps itself;
                # with it, LXC insists on root's ranges in /etc/subuid, which this machine's
                # must not gain.
                argv = ["env", f"PATH={ROOT_PATH}", *argv]
            return [*PRIVATE_MOUNTS, *argv, *spec.options, "--", *spec.argv]

        def stop(run: _Run) -> None:
            _run(
                ["lxc-stop", f"--lxcpath={lxcpath}", f"--name={run.name}", "-k"],
                timeout=30,
                check=False,
            )

        def cleanup(run: _Run) -> None:
            log = lxcpath / run.name / "lxc.log"
            if log.exists():  # lxc-start says little itself: its log is the evidence
                run.log = log.read_text(errors="replace")
            shutil.rmtree(lxcpath / run.name, ignore_errors=True)
            (self._lxc_lock / f".{run.name}").unlink(missing_ok=True)  # LXC leaves it

        return self._execute("lxc", spec, command, stop, cleanup)

    def nspawn(self, spec: Spec) -> Result:
        propagate = NSPAWN_RUN / "propagate"

        def command(run: _Run) -> list[str]:
            # Its own directory: nspawn puts a lock file (.#rootfs.lck) beside the rootfs.
            rootfs = self._fresh_rootfs(self.workdir / "nspawn" / run.name / "rootfs")
            if spec.memory_limit:  # --property=MemoryMax= needs systemd as the host's init
                run.group.limit_memory(spec.memory_limit)
            argv = ["systemd-nspawn", "-q", f"--directory={rootfs}", f"--machine={run.name}"]
            argv += ["--register=no", "--keep-unit", "--private-network", "--pipe"]
            argv += ["--capability=all"] if spec.privileged else []
            argv += [f"--setenv={k}={v}" for k, v in {**self.image_env, **spec.env}.items()]
            for bind in run.binds:
                argv += [f"--bind{'-ro' if bind.readonly else ''}={bind.source}:{bind.target}"]
            return [*PRIVATE_MOUNTS, *argv, *spec.options, *spec.argv]

        def cleanup(run: _Run) -> None:
            rootfs = self.workdir / "nspawn" / run.name / "rootfs"
            with contextlib.suppress(OSError):  # nspawn's image lock, named by the inode
                st = rootfs.stat()
                (NSPAWN_RUN / "locks" / f"inode-{st.st_dev}:{st.st_ino}").unlink(missing_ok=True)
            shutil.rmtree(self.workdir / "nspawn" / run.name, ignore_errors=True)
            with contextlib.suppress(OSError):  # nspawn leaves it on a /run that is no tmpfs
                (propagate / run.name).rmdir()

        return self._execute("nspawn", spec, command, lambda run: None, cleanup)

    def _execute(
        self,
        runtime: str,
        spec: Spec,
        command: Callable[[_Run], list[str]],
        stop: Callable[[_Run], None],
        cleanup: Callable[[_Run], None] = lambda run: None,
    ) -> Result:
        """One run: confinement, command, bounded wait, then clean-up whatever happened."""
        token = secrets.token_hex(4)
        name = f"dind-rt-{token}"
        state = self.workdir / "runs" / name
        state.mkdir(parents=True)
        binds = list(spec.binds)
        if spec.docker_dir:
            (state / "docker").mkdir()
            binds.append(Bind(state / "docker", "/var/lib/docker", readonly=False))
        tops = _top_level_groups()
        group = Confinement(f"dind-test-{os.getpid()}-rt-{token}")
        run = _Run(name, group, binds)
        argv: list[str] = []
        returncode: int | None = None
        started = time.monotonic()
        out, err = state / "stdout", state / "stderr"
        stdout_text = stderr_text = ""
        try:
            with CgroupWatch() as watch:
                argv = command(run)
                with out.open("wb") as stdout, err.open("wb") as stderr:
                    proc = subprocess.Popen(
                        group.wrap(argv), stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr
                    )
                    try:
                        returncode = proc.wait(timeout=spec.timeout)
                    except subprocess.TimeoutExpired:
                        proc.kill()  # the runtime's CLI; its container is stopped below
                        proc.wait()
            seconds = time.monotonic() - started
        finally:
            with contextlib.suppress(Exception):  # harmless when the container is gone
                stop(run)
            leftovers = [f"process {pid}" for pid in group.kill()]
            leftovers += [f"cgroup {p}" for p in group.remove()]
            leftovers += _remove_new_top_level_groups(tops)
            for path in (run.console, out):
                if path is not None and path.exists():
                    stdout_text += path.read_text(errors="replace")
            if err.exists():
                stderr_text = err.read_text(errors="replace")
            cleanup(run)  # may read the runtime's own log into run.log
            shutil.rmtree(state, ignore_errors=True)  # with the nested /var/lib/docker
        return Result(
            runtime=runtime,
            command=argv,
            returncode=returncode,
            stdout=stdout_text,
            stderr=stderr_text + run.log,
            seconds=seconds,
            group=group.path,
            new_cgroups=list(watch.seen),
            leftovers=leftovers,
        )

    def containers(self, runtime: str) -> list[str]:
        """Containers ``runtime`` still knows of in our state (none, after every run)."""
        if runtime == "ctr":
            return _run(self._ctr("containers", "ls", "-q"), timeout=60).stdout.split()
        if runtime == "podman":
            return _run(self._podman("ps", "--all", "--quiet"), timeout=60).stdout.split()
        directory = self.workdir / ("lxc" if runtime == "lxc" else "nspawn")
        return sorted(p.name for p in directory.glob("*")) if directory.is_dir() else []

    def close(self) -> None:
        """Remove every image and all state (the ctr namespace goes with the daemon's data)."""
        if "ctr" in self._cache:
            _run(self._ctr("images", "rm", str(self._cache["ctr"])), timeout=60, check=False)
        # podman's storage goes with the workdir (its mounts went with their namespaces);
        # `podman system reset` would create /run/runc.
        shutil.rmtree(self._short_dir, ignore_errors=True)
        shutil.rmtree(self.workdir, ignore_errors=True)
        # LXC's lock directory for our lxcpath, and its parents while they are empty.
        lock = self._lxc_lock
        for directory in (lock, *lock.parents):
            if directory == Path("/run/lxc/lock"):
                break
            try:
                directory.rmdir()
            except FileNotFoundError:
                continue
            except OSError:  # not empty: in use by something else
                break
        # The runtimes' directories on /run (no tmpfs here), if they came with us.
        for top in self._runtime_dirs:
            for dirpath, _dirs, _files in os.walk(top, topdown=False):
                with contextlib.suppress(OSError):
                    Path(dirpath).rmdir()


@dataclass
class _Run:
    name: str
    group: Confinement
    binds: list[Bind]
    console: Path | None = None  # where the container's output went, if not to stdout
    log: str = ""  # the runtime's own log, added to stderr


def _remove_new_top_level_groups(before: Mapping[Path, set[str]]) -> list[str]:
    """Remove groups a run created at the top of a hierarchy (nested runc's ``/docker``).

    Groups of another test session (``dind-test-<pid>-``, pid not ours) are left alone.
    """
    busy = []
    other_session = re.compile(rf"^dind-test-(?!{os.getpid()}-)\d+-")
    for hierarchy, names in _top_level_groups().items():
        for name in sorted(names - before.get(hierarchy, set())):
            if other_session.match(name):
                continue
            busy += [f"cgroup {p}" for p in remove_cgroup_tree(hierarchy / name)]
    return busy


def _run(
    argv: Sequence[str | os.PathLike[str]], *, timeout: float, check: bool = True
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [os.fspath(a) for a in argv],
        capture_output=True,
        text=True,
        errors="replace",
        timeout=timeout,
        check=False,
    )
    if check and proc.returncode != 0:
        raise RuntimeSetupError(
            f"{' '.join(map(str, argv))} exited {proc.returncode}\n{proc.stdout[-2000:]}"
            f"{proc.stderr[-2000:]}"
        )
    return proc


@contextlib.contextmanager
def runtimes(workdir: Path, daemon: Dockerd, image: str) -> Iterator[Runtimes]:
    """:class:`Runtimes` that cleans up after itself."""
    rt = Runtimes(workdir, daemon, image)
    try:
        yield rt
    finally:
        rt.close()
