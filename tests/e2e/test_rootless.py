"""The rootless nested daemon end to end (issue 18): ``DIND_ROOTLESS=1`` under
``--privileged`` (docker:dind-rootless parity), then without it, with only the least
options the rootless recipe gives, then with limits on a cgroup v2 view.

Each configuration runs the same checks against the real engine: nested ``docker
run`` and ``docker build``, a port published by a nested container reached from the
outer container, a TLS client in another container on a user-defined network, a
restart (ready again, keys kept), and from the machine's side (the test process
sees every PID) the real uid of the nested daemon's and a nested container's
processes. Negative controls (no /dev/net/tun, a masked /proc) are predicted by
``--check`` and refused at start with one line naming the outer option; bad input
(a user that does not exist, one without subordinate ranges) is one line, 125, and
nothing half-made.

The configurations start together (module fixture) and are checked in turn: a rootless
daemon takes a few seconds to start, and CI time is shared.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from dind import requirements
from tests.e2e.conftest import CACHE, FIGURES, NESTED_BASE_TAR, REPO, Env, Outer
from tests.e2e.helpers import (
    NO_PROXY,
    PERL_HTTP,
    PY_GET,
    Network,
    container_pid,
    json_lines,
    logs,
    marker,
    one_error_line,
    remove_all,
    run_rm,
    token,
    wait_host_pid,
    wait_ready,
)
from tests.support.dockerd import base_image, build_dev_image

ROOTLESS = ("-e", "DIND_ROOTLESS=1")
USER_UID = 1000
SUBUID_START = 100000

Done = subprocess.CompletedProcess[str]


def real_uid(pid: int) -> int:
    """The real uid of ``pid`` on the machine (the first field of /proc/PID/status Uid)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid line for {pid}")


def descendants(pid: int, name: str) -> list[int]:
    """PIDs of the processes called ``name`` below ``pid`` (the outer container's init)."""
    return [p.pid for p in psutil.Process(pid).children(recursive=True) if p.name() == name]


def other_suite(e2e: Env) -> str:
    """The Debian release the image is not built on by default (bookworm and trixie are
    both tested bases)."""
    return "trixie" if "bookworm" in e2e.base else "bookworm"


@pytest.fixture(scope="module")
def other_image(e2e: Env) -> str:
    """The same Dockerfile on the other base (Docker 20.10 with rootlesskit 1.1, or Docker 26
    with rootlesskit 2), by scripts/build-image as a user would."""
    suite = other_suite(e2e)
    started = time.monotonic()
    base = base_image(e2e.daemon, CACHE, suite=suite)
    tag = f"{e2e.image}-{suite}"
    build = build_dev_image(e2e.daemon, REPO, base=base, tag=tag)
    if build.returncode != 0:
        pytest.fail(f"scripts/build-image --base {base} failed:\n{build.stderr[-6000:]}")
    FIGURES[f"image on {suite} (rootless tests)"] = f"{time.monotonic() - started:.1f} s"
    return tag


@dataclass
class Case:
    """One rootless configuration: its outer container, address and client certificates."""

    outer: Outer
    ip: str
    certs: str
    net: Network


@pytest.fixture(scope="module")
def recipe(e2e: Env) -> tuple[str, ...]:
    """The least outer options of the rootless daemon: what `dind --recipe docker --rootless`
    prints (its one line that is not a comment), without its `-e DIND_ROOTLESS=1`."""
    done = run_rm(
        e2e, "--network", "none", "--entrypoint", "dind", e2e.image,
        "--recipe", "docker", "--rootless",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    [line] = [x for x in done.stdout.splitlines() if not x.startswith("#")]
    FIGURES["dind --recipe docker --rootless"] = line
    words = shlex.split(line)
    assert words[-2:] == list(ROOTLESS)
    assert "--privileged" not in words and "--cap-add" not in words  # no added capability
    return tuple(words[:-2])


CONFIGURATIONS: dict[str, tuple[bool, bool, bool]] = {
    # name: (--privileged, the recipe's options, on the other base)
    "privileged": (True, False, False),
    "least options": (False, True, False),
    "least options, other base": (False, True, True),
}


@pytest.fixture(scope="module")
def cases(e2e: Env, other_image: str, recipe: tuple[str, ...]) -> Iterator[dict[str, Case]]:
    """The configurations, started together on one user-defined network, TLS on (the
    image's default), each with a volume for its client certificates."""
    net = Network.create(e2e, 18)
    started: dict[str, Case] = {}
    volumes = []
    try:
        for i, (name, (privileged, least, other)) in enumerate(CONFIGURATIONS.items()):
            options = recipe if least else ()
            certs = f"dind-e2e-rootless-certs-{token()}"
            volumes.append(certs)
            ip = net.ip(10 + i)
            outer = Outer.start(
                e2e, "--network", net.name, "--ip", ip, *NO_PROXY, *ROOTLESS,
                "-v", f"{certs}:/certs/client", *options,
                command=("-v", "--log-format", "json"),
                image=other_image if other else "",
                privileged=privileged,
            )  # fmt: skip
            started[name] = Case(outer, ip, certs, net)
        for name, case in started.items():
            FIGURES[f"rootless ({name}): docker run -d to ready"] = (
                f"{wait_ready(case.outer):.2f} s"
            )
        yield started
    finally:
        remove_all([case.outer for case in started.values()])
        for volume in volumes:
            e2e.daemon.docker("volume", "rm", volume, check=False)
        net.remove()


NAMES = list(CONFIGURATIONS)

BUILD = """
set -eu
docker load -q -i {tar} >/dev/null
printf 'FROM {base}\\nRUN echo built-as-$(id -u) >/built\\n' >/tmp/Dockerfile
docker build -q -t rootless-e2e - </tmp/Dockerfile >/dev/null
docker run --rm rootless-e2e cat /built
"""


@pytest.mark.parametrize("name", NAMES)
def test_nested_run_and_build(cases: dict[str, Case], name: str) -> None:
    """A nested container and a nested build, as root inside (uid 0 of the user namespace)."""
    outer = cases[name].outer
    script = BUILD.format(tar=NESTED_BASE_TAR, base=outer.env.base)
    done = outer.sh(script, check=False)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n{logs(outer)}"
    assert done.stdout.strip() == "built-as-0"


GET = ("python3", "-c", PY_GET, "127.0.0.1", "8080")
"""An HTTP request to the published port, from the outer container's network namespace."""


def served(get: Callable[[], Done]) -> str:
    """What the nested server answered. rootlesskit accepts in the outer namespace at once,
    then connects inside: until the nested server listens, a connection closes empty, so
    the request is made again (for up to 30 s)."""
    deadline = time.monotonic() + 30
    while "hello-e2e" not in (got := get()).stdout and time.monotonic() < deadline:
        time.sleep(0.5)
    return got.stdout + got.stderr


@pytest.mark.parametrize("name", NAMES)
def test_published_port_reached_from_the_outer_container(cases: dict[str, Case], name: str) -> None:
    """``docker run -p 8080:80`` in the rootless daemon: rootlesskit's port driver listens
    in the outer container's network namespace."""
    outer = cases[name].outer
    outer.exec("docker", "load", "-q", "-i", NESTED_BASE_TAR)
    outer.exec(
        "docker", "run", "-d", "--name", "web", "-p", "8080:80", outer.env.base,
        "perl", "-e", PERL_HTTP,
    )  # fmt: skip
    try:
        assert "hello-e2e" in served(lambda: outer.exec(*GET, check=False))
    finally:
        outer.exec("docker", "rm", "-f", "web", check=False)


@pytest.mark.parametrize("name", NAMES)
def test_tls_client_in_another_container(e2e: Env, cases: dict[str, Case], name: str) -> None:
    """The CI-service set-up: a client container on the same user-defined network reaches
    the rootless daemon on 2376 with TLS verified, the certificates from the volume."""
    case = cases[name]
    done = run_rm(
        e2e, "--network", case.net.name, *NO_PROXY,
        "-e", f"DOCKER_HOST=tcp://{case.ip}:2376", "-e", "DOCKER_TLS_VERIFY=1",
        "-e", "DOCKER_CERT_PATH=/certs/client", "-v", f"{case.certs}:/certs/client:ro",
        "--entrypoint", "docker", e2e.image, "info", "--format", "{{json .SecurityOptions}}",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "name=rootless" in json.loads(done.stdout)


@pytest.mark.parametrize("name", NAMES)
def test_processes_run_as_the_user_on_the_machine(
    e2e: Env, cases: dict[str, Case], name: str
) -> None:
    """Read from the machine's /proc: rootlesskit and the nested dockerd run as uid 1000; a
    nested container's root is uid 1000 too, and its uid 5 is subordinate uid 100004."""
    outer = cases[name].outer
    init = container_pid(e2e, outer.name)
    assert real_uid(init) == 0  # dind, the outer container's init, stays root (as root started)
    daemons = descendants(init, "dockerd")
    assert daemons, psutil.Process(init).children(recursive=True)
    assert {real_uid(p) for p in daemons} == {USER_UID}
    assert {real_uid(p) for p in descendants(init, "rootlesskit")} == {USER_UID}
    outer.exec("docker", "load", "-q", "-i", NESTED_BASE_TAR)
    marks = {0: marker(), 5: marker()}
    for uid, mark in marks.items():
        outer.exec("docker", "run", "-d", "--user", str(uid), outer.env.base, "sleep", mark)
    try:
        seen = {uid: real_uid(wait_host_pid("sleep", mark)) for uid, mark in marks.items()}
        assert seen == {0: USER_UID, 5: SUBUID_START + 4}
        FIGURES[f"rootless ({name}): real uid of nested root, nested uid 5"] = str(seen)
    finally:
        outer.exec("sh", "-c", "docker rm -f $(docker ps -aq)", check=False)


@pytest.mark.parametrize("name", NAMES)
def test_docker_exec_and_ready_without_flags(e2e: Env, cases: dict[str, Case], name: str) -> None:
    """`docker exec CONTAINER docker version` (the /var/run/docker.sock link), `dind --ready`
    and the image's HEALTHCHECK reach the rootless daemon."""
    outer = cases[name].outer
    assert outer.exec("docker", "version", "--format", "{{.Server.Version}}").stdout.strip()
    assert outer.exec("readlink", "/var/run/docker.sock").stdout.strip() == (
        f"/run/user/{USER_UID}/docker.sock"
    )
    assert outer.exec("dind", "--ready", check=False).returncode == 0
    deadline = time.monotonic() + 60
    while (
        health := e2e.daemon.docker(
            "inspect", "-f", "{{.State.Health.Status}}", outer.name
        ).stdout.strip()
    ) != "healthy" and time.monotonic() < deadline:
        time.sleep(0.5)
    assert health == "healthy"


@pytest.mark.parametrize("name", NAMES)
def test_restart_is_ready_again_with_the_keys_kept(
    e2e: Env, cases: dict[str, Case], name: str
) -> None:
    outer = cases[name].outer

    def digest(path: str) -> str:
        return hashlib.sha256(outer.exec("cat", path).stdout.encode()).hexdigest()

    before = {f: digest(f"/certs/{f}") for f in ("ca/key.pem", "server/key.pem")}
    e2e.daemon.docker("restart", "-t", "20", outer.name, timeout=120)
    FIGURES[f"rootless ({name}): docker restart to ready"] = f"{wait_ready(outer):.2f} s"
    assert {f: digest(f"/certs/{f}") for f in before} == before
    assert outer.exec("docker", "version", "--format", "{{.Server.Version}}").stdout.strip()


def test_limits_off_on_cgroup_v1_warned_once(e2e: Env, cases: dict[str, Case]) -> None:
    """This machine's v1 view: Docker's rootless mode (cgroup driver none), one warning at
    start, and a nested container stays in the daemon's own group."""
    outer = cases["privileged"].outer
    records = json_lines(logs(outer, tail=5000))
    warned = [
        r
        for r in records
        if r.get("step") == "cgroup-delegate" and str(r.get("level")).lower() == "warning"
    ]
    assert len(warned) == 1 + restarts(records), warned
    assert "no resource limits" in warned[0]["message"]
    info = outer.exec("docker", "info", "--format", "{{.CgroupDriver}}").stdout.strip()
    assert info == "none"


def restarts(records: list[dict[str, object]]) -> int:
    """How many times dind started again in this container's log (a restart test ran)."""
    return max(0, sum(r.get("event") == "decisions" for r in records) - 1)


# --- limits: a cgroup v2 view ------------------------------------------------------------

# As tests/e2e/test_confine.py builds it: a private cgroup namespace and cgroup2 mounted on
# /sys/fs/cgroup (on this hybrid machine it carries hugetlb only). dind's nesting moves
# everything into init/ and enables hugetlb; cgroup-delegate gives uid 1000 dind-rootless/.
V2_VIEW = 'umount -R /sys/fs/cgroup && mount -t cgroup2 cgroup2 /sys/fs/cgroup && exec dind "$@"'


@pytest.fixture(scope="module")
def v2(e2e: Env) -> Iterator[Outer]:
    outer = Outer.start(
        e2e, "--cgroupns", "private", "--network", "none", *ROOTLESS,
        "-e", "DOCKER_TLS_CERTDIR=", "--entrypoint", "sh",
        command=("-c", V2_VIEW, "sh", "-v", "--log-format", "json", "dockerd"),
    )  # fmt: skip
    try:
        yield outer
    finally:
        remove_all([outer])


def in_outer(outer: Outer, script: str, timeout: float = 300) -> Done:
    """``script`` in the outer container's namespaces, as root there, started from the test
    process: `docker exec` into a container whose root group gave its controllers away fails
    on this hybrid machine (EBUSY joining it), nsenter joins no cgroup."""
    pid = container_pid(outer.env, outer.name)
    argv = [
        "nsenter", f"--target={pid}", "--mount", "--uts", "--ipc", "--net", "--pid",
        "--cgroup", "--", "env", "-i", "PATH=/opt/dind/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "sh", "-euc", script,
    ]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)


def wait_v2_ready(outer: Outer, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while in_outer(outer, "dind --ready", timeout=30).returncode != 0:
        if time.monotonic() > deadline:
            pytest.fail(f"the rootless daemon in the v2 view is not ready:\n{logs(outer)}")
        time.sleep(0.5)


def host_group(pid: int) -> Path:
    """The cgroup2 directory of ``pid`` on this machine (its hybrid cgroup2 is at .../unified)."""
    path = next(
        line.split(":", 2)[2]
        for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines()
        if line.startswith("0::")
    )
    return Path("/sys/fs/cgroup/unified") / path.lstrip("/")


def test_limits_on_a_cgroup_v2_view_the_subtree_is_the_users(e2e: Env, v2: Outer) -> None:
    """The daemon runs in dind-rootless/daemon and its containers in groups it made below
    dind-rootless/docker, all owned by uid 1000 with hugetlb enabled for them (the only
    controller this machine's cgroup2 has): what can be asserted here. dockerd runs in its
    standard mode (cgroupfs driver); `-m 64m` is discarded only because this view has no
    memory controller, which dockerd says."""
    wait_v2_ready(v2)
    mark = marker()
    script = f"""
        docker load -q -i {NESTED_BASE_TAR} >/dev/null
        docker info --format '{{{{.CgroupDriver}}}} {{{{.CgroupVersion}}}}'
        docker run -d --name probe {v2.env.base} sleep {mark} >/dev/null
        docker run --rm -m 64m {v2.env.base} true 2>&1 || true
    """
    done = in_outer(v2, script)
    assert done.returncode == 0, done.stderr
    first, *rest = done.stdout.splitlines()
    assert first == "cgroupfs 2"
    nested = wait_host_pid("sleep", mark)
    group = host_group(nested)
    init = container_pid(e2e, v2.name)
    outer_group = host_group(init)
    assert outer_group.name == "init", outer_group  # dind, after cgroup nesting
    subtree = outer_group.parent / "dind-rootless"
    assert group.parent == subtree / "docker", group
    assert real_uid(nested) == USER_UID
    for path in (subtree, subtree / "cgroup.procs", subtree / "cgroup.subtree_control", group):
        assert path.stat().st_uid == USER_UID, path
    assert (subtree / "cgroup.subtree_control").read_text().split() == ["hugetlb"]
    assert (group / "hugetlb.2MB.max").exists()
    daemons = descendants(init, "dockerd")
    assert daemons and {host_group(p) for p in daemons} == {subtree / "daemon"}
    assert {real_uid(p) for p in daemons} == {USER_UID}
    FIGURES["rootless, cgroup v2 view: a nested container's group"] = str(group)
    assert any("memory limit" in line for line in rest), rest
    records = json_lines(logs(v2, tail=5000))
    assert not [
        r
        for r in records
        if r.get("step") == "cgroup-delegate" and str(r.get("level")).lower() == "warning"
    ]
    assert in_outer(v2, "docker rm -f probe").returncode == 0


# --- what the least options cannot spare, predicted and refused ---------------------------


def without(recipe: tuple[str, ...], *dropped: str) -> list[str]:
    """The least options without the given ones (each a whole option: flag and value)."""
    words = list(recipe)
    out = []
    i = 0
    while i < len(words):
        pair = f"{words[i]} {words[i + 1]}"
        if pair not in dropped:
            out += words[i : i + 2]
        i += 2
    return out


NEGATIVE = {
    "no /dev/net/tun": requirements.TUN,
    "masked /proc": requirements.UNMASKED_PROC,
}


@pytest.mark.parametrize("case", list(NEGATIVE))
def test_a_missing_option_is_predicted_and_refused_in_one_line(
    e2e: Env, recipe: tuple[str, ...], case: str
) -> None:
    """`--check` says the rootless daemon cannot work and names the option; the start then
    fails with one line naming it (not a rootlesskit stack), 125, before changing anything."""
    option = NEGATIVE[case].option(requirements.DOCKER)
    assert option is not None
    options = without(recipe, option)
    assert len(options) == len(recipe) - 2
    check = run_rm(
        e2e, "--network", "none", *ROOTLESS, *options, "--entrypoint", "dind", e2e.image,
        "--check", "--log-format", "json",
    )  # fmt: skip
    assert check.returncode == 1, check.stderr
    report = json.loads(check.stdout)
    blockers = [f for f in report["findings"] if f["level"] == "blocker"]
    assert [f["area"] for f in blockers] == ["rootless"], blockers
    assert option in blockers[0]["fix"], blockers[0]
    start = run_rm(e2e, "--network", "none", *ROOTLESS, *options, e2e.image)
    assert start.returncode == 125
    line = one_error_line(start.stderr.replace(WARNING_IPV4, ""))
    assert option in line, line
    FIGURES[f"rootless, {case}: the start says"] = line


def test_check_with_the_least_options_says_it_works_without_limits(
    e2e: Env, recipe: tuple[str, ...]
) -> None:
    """The control of the two above: with all four options `--check --rootless` exits 0,
    nothing blocks (the capabilities a rootful daemon needs are not asked for), and the
    limits are off on this cgroup v1 machine, said as a warning."""
    check = run_rm(
        e2e, "--network", "none", *recipe, "--entrypoint", "dind", e2e.image,
        "--check", "--rootless", "--log-format", "json",
    )  # fmt: skip
    assert check.returncode == 0, check.stdout
    report = json.loads(check.stdout)
    assert report["blockers"] == 0
    section = report["rootless"]
    assert (section["user"], section["uid"], section["limits"]) == ("rootless", USER_UID, "off")
    assert section["dockerd"][0] == "rootlesskit"
    warned = [(f["area"], f["name"]) for f in report["findings"] if f["level"] == "warning"]
    assert ("rootless", "limits") in warned


WARNING_IPV4 = "WARNING: IPv4 forwarding is disabled. Networking will not work.\n"
"""What the test daemon's client prints for a container on --network none (not dind's)."""


# --- started as the user, and bad input ---------------------------------------------------


def test_started_as_the_user_says_exactly_why_it_cannot(e2e: Env) -> None:
    """`docker run --user 1000`: dind cannot give /dev/net/tun (mode 0600 root here) to the
    user, and says so in one line naming the way out; nothing is started."""
    done = run_rm(e2e, "--network", "none", "--privileged", "--user", "1000", *ROOTLESS, e2e.image)
    assert done.returncode == 125, done.stderr
    line = one_error_line(done.stderr.replace(WARNING_IPV4, ""))
    assert "/dev/net/tun" in line and "start the container as root" in line, line


USER_START = """
chmod 0666 /dev/net/tun
exec setpriv --reuid 1000 --regid 1000 --init-groups dind -v dockerd
"""


def test_started_as_the_user_works_where_the_device_is_the_users(e2e: Env) -> None:
    """With /dev/net/tun usable by uid 1000 (a host whose device is 0666, played by a chmod
    before dind starts as the user), the user start works: it says in one line what it
    skips, and the user's docker CLI context finds the socket without DOCKER_HOST."""
    outer = Outer.start(
        e2e, "--network", "none", *ROOTLESS, "--entrypoint", "sh", command=("-c", USER_START)
    )
    try:
        as_user = ("exec", "-u", str(USER_UID), outer.name, "docker", "version", "--format")
        deadline = time.monotonic() + 90
        while (
            version := e2e.daemon.docker(*as_user, "{{.Server.Version}}", check=False)
        ).returncode:
            assert time.monotonic() < deadline, f"{version.stderr}\n{logs(outer)}"
            time.sleep(0.5)
        assert version.stdout.strip()
        said = [line for line in logs(outer, tail=5000).splitlines() if "not as root" in line]
        assert len(said) == 1 and "it skips what needs root" in said[0], said
        init = container_pid(e2e, outer.name)
        assert real_uid(init) == USER_UID  # dind itself is the user here
    finally:
        outer.remove()


NOTHING_HALF_MADE = """
dind dockerd; echo "status=$?"
echo "certs=$(ls /certs)"
echo "tun=$(stat -c %u /dev/net/tun)"
echo "tmp=$(awk '$2 == "/tmp"' /proc/self/mounts)"
echo "run-user=$(ls /run/user)"
"""


@pytest.mark.parametrize(
    ("user", "says"),
    [
        ("nosuchuser", "no user 'nosuchuser' in /etc/passwd"),
        ("nobody", "/etc/subuid has no range for nobody"),
    ],
    ids=["no-such-user", "no-subordinate-ranges"],
)
def test_bad_user_is_one_line_125_and_nothing_half_made(e2e: Env, user: str, says: str) -> None:
    done = run_rm(
        e2e, "--network", "none", "--privileged", *ROOTLESS, "-e", f"DIND_ROOTLESS_USER={user}",
        "--entrypoint", "sh", e2e.image, "-c", NOTHING_HALF_MADE,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    line = one_error_line(done.stderr.replace(WARNING_IPV4, ""))
    assert says in line, line
    out = dict(line.split("=", 1) for line in done.stdout.splitlines())
    assert out == {
        "status": "125",
        "certs": "client",  # the image's; no CA, no server files
        "tun": "0",
        "tmp": "",  # no mount step ran
        "run-user": str(USER_UID),  # the image's directory only
    }


def test_with_dockerd_rootless_passes_the_status_through(e2e: Env) -> None:
    """--with-dockerd: the rootless daemon answers before COMMAND runs (as root, with the
    daemon found without flags), COMMAND's status is dind's, and the daemon is stopped."""
    done = run_rm(
        e2e, "--network", "none", "--privileged", *ROOTLESS, e2e.image, "--with-dockerd",
        "sh", "-c", 'docker info --format "{{.SecurityOptions}}" && exit 7',
    )  # fmt: skip
    assert done.returncode == 7, done.stderr
    assert "rootless" in done.stdout


def test_limits_on_a_cgroup_v2_view_build_and_ports_work_too(v2: Outer) -> None:
    """dockerd in its standard mode in rootlesskit's namespaces: a build, and a published
    port reached from the outer container through dind's port helper
    (dind-rootlesskit-docker-proxy, which gives rootlesskit's state directory back)."""
    wait_v2_ready(v2)
    build = BUILD.format(tar=NESTED_BASE_TAR, base=v2.env.base)
    done = in_outer(v2, build)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    assert done.stdout.strip() == "built-as-0"
    serve = f"docker run -d --name web -p 8080:80 {v2.env.base} perl -e {shlex.quote(PERL_HTTP)}"
    assert in_outer(v2, serve).returncode == 0
    try:
        assert "hello-e2e" in served(lambda: in_outer(v2, shlex.join(GET)))
    finally:
        in_outer(v2, "docker rm -f web")


def test_docker_stop_ends_the_rootless_daemon_through_dind(
    e2e: Env, cases: dict[str, Case]
) -> None:
    """Last of the module (it stops a configuration): SIGTERM goes from dind to rootlesskit,
    which passes it to dockerd; dockerd shuts down, and dind exits 0 in a few seconds, as
    for the rootful daemon."""
    outer = cases["least options"].outer
    started = time.monotonic()
    e2e.daemon.docker("stop", "-t", "30", outer.name, timeout=90)
    took = time.monotonic() - started
    FIGURES["rootless (least options): docker stop"] = f"{took:.2f} s"
    code = e2e.daemon.docker("inspect", "-f", "{{.State.ExitCode}}", outer.name).stdout
    assert int(code) == 0
    assert took < 15
    said = logs(outer, tail=400)
    assert "Processing signal 'terminated'" in said
    assert any(
        r.get("message") == "init: rootlesskit exited with status 0" for r in json_lines(said)
    ), said
