"""The dev image end to end: nested dockerds through dind in --privileged containers.

Each test asserts on what a person would check (mount tables, `docker info`,
files written by nested containers, exit statuses), and the behaviours dind adds
are checked against a control run with that dind step skipped, so a test fails if
the step stops working (or if the harness stops exercising it).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dind import mountinfo, proccgroup
from dind.mountinfo import MountTable
from dind.steps import KERNEL_STEPS
from tests.e2e.conftest import DATA, FIGURES, NESTED_BASE_TAR, REPO, SUITE, Env, Outer
from tests.support.registry import run_registry

CONTAINER_ID = re.compile(r"[0-9a-f]{64}")


def mounts_of(mountinfo_text: str) -> MountTable:
    """dind's own parser (tested on real captures) reads the container's mount table."""
    return MountTable(mountinfo.parse(mountinfo_text, "container mountinfo"))


def mount_at(table: MountTable, point: str) -> mountinfo.MountEntry:
    """The mount visible at ``point``; failing the test when there is none."""
    found = table.at(point)
    assert found is not None, f"nothing mounted on {point}"
    return found


# --- cgroup v1 view: the image's default command, a nested dockerd ----------------


@pytest.fixture(scope="module")
def v1(e2e: Env) -> Iterator[Outer]:
    """`docker run --privileged -v /var/lib/docker IMAGE`: default CMD, nested dockerd."""
    container = Outer.start(e2e)
    try:
        container.wait_nested_docker()
        yield container
    finally:
        container.remove()


def test_v1_default_command_is_a_nested_dockerd_under_dind_as_init(v1: Outer) -> None:
    """In dockerd mode dind stays as PID 1 (the init that reaps shims and forwards
    signals) and dockerd is its child; `container=docker` is exported to dockerd."""
    assert v1.exec("cat", "/proc/1/comm").stdout.strip() == "dind"
    assert v1.exec("cat", "/proc/1/cmdline").stdout.split("\0")[1] == "/opt/dind/bin/dind"
    dockerd = v1.exec("cat", "/run/docker.pid").stdout.strip()
    assert v1.exec("cat", f"/proc/{dockerd}/comm").stdout.strip() == "dockerd"
    stat = v1.exec("cat", f"/proc/{dockerd}/stat").stdout
    assert stat.rsplit(")", 1)[1].split()[1] == "1", stat  # its parent is dind
    environ = v1.exec("cat", f"/proc/{dockerd}/environ").stdout.split("\0")
    assert "container=docker" in environ
    assert "container=docker" not in v1.exec("cat", "/proc/1/environ").stdout.split("\0")
    info = json.loads(v1.exec("docker", "info", "--format", "{{json .}}").stdout)
    assert info["CgroupVersion"] == "1"
    assert info["Driver"] == "overlay2"
    assert info["DockerRootDir"] == "/var/lib/docker"


def test_v1_nested_container_runs_a_loaded_image(e2e: Env, v1: Outer) -> None:
    tag = v1.load_base()
    expected = e2e.daemon.docker("run", "--rm", e2e.base, "cat", "/etc/debian_version").stdout
    nested = v1.exec("docker", "run", "--rm", tag, "sh", "-c", "cat /etc/debian_version")
    assert nested.stdout == expected
    # The nested container's cgroups sit below the outer container's own: dind's
    # cgroup-confine step made that group the root of the nested daemon's cgroup
    # namespace, so the nested container sees /docker/<id> and nothing above it
    # (test_confine.py checks the same from the host's side).
    inner = v1.exec("docker", "run", "--rm", tag, "cat", "/proc/self/cgroup").stdout
    first = inner.splitlines()[0].split(":", 2)[2]
    assert first.startswith("/docker/"), first
    assert CONTAINER_ID.fullmatch(first.removeprefix("/docker/")), first


def test_v1_rshared_bind_mount_works_nested(v1: Outer) -> None:
    """`-v /x:/x:rshared`: the bind works and a mount made inside propagates back out."""
    tag = v1.load_base()
    v1.exec("mkdir", "-p", "/x")
    script = "mkdir -p /x/sub && mount -t tmpfs e2e-propagated /x/sub && echo through >/x/sub/proof"
    v1.exec(
        "docker", "run", "--rm", "--cap-add", "SYS_ADMIN", "-v", "/x:/x:rshared", tag,
        "sh", "-c", script,
    )  # fmt: skip
    assert v1.exec("cat", "/x/sub/proof").stdout == "through\n"
    mounts = mounts_of(v1.exec("cat", "/proc/1/mountinfo").stdout)
    propagated = mount_at(mounts, "/x/sub")
    assert (propagated.fstype, propagated.source) == ("tmpfs", "e2e-propagated")


def test_v1_mounts_match_dinds_steps(v1: Outer) -> None:
    mounts = mounts_of(v1.exec("cat", "/proc/1/mountinfo").stdout)
    assert mount_at(mounts, "/sys/kernel/security").fstype == "securityfs"
    assert mount_at(mounts, "/tmp").fstype == "tmpfs"
    assert mount_at(mounts, "/").shared
    assert mount_at(mounts, "/cgroup").fstype == "tmpfs"

    hierarchies = [
        tuple(h.options.split(","))
        for h in proccgroup.parse(v1.exec("cat", "/proc/1/cgroup").stdout)
        if not h.unified
    ]
    assert len(hierarchies) >= 2, "expected the host's v1 hierarchies in /proc/1/cgroup"
    names = sorted({c.removeprefix("name=") for h in hierarchies for c in h})
    # Where each /cgroup/<controller> leads (directly or through a symlink).
    resolved = v1.exec("readlink", "-f", *(f"/cgroup/{n}" for n in names)).stdout.split()
    by_name = dict(zip(names, resolved, strict=True))
    cgroup_mounts = {m.mountpoint: m for m in mounts.mounts if m.fstype == "cgroup"}
    for hierarchy in hierarchies:
        for controller in hierarchy:
            point = by_name[controller.removeprefix("name=")]
            assert point in cgroup_mounts, f"/cgroup/{controller} -> {point}: no cgroup mount"
            assert set(hierarchy) <= set(cgroup_mounts[point].super_options.split(","))
    under_root = {p for p in cgroup_mounts if p.startswith("/cgroup/")}
    assert len(under_root) == len(hierarchies), "one mount per hierarchy, no more"
    # Hybrid kernel: /proc/1/cgroup has a `0::` line, so cgroup2 goes to /cgroup/unified.
    assert mount_at(mounts, "/cgroup/unified").fstype == "cgroup2"


def test_v1_rshared_bind_fails_without_dinds_rshared_step(
    outer: Callable[..., Outer],
) -> None:
    """The control for test_v1_rshared_bind_mount_works_nested: skip the step, it fails."""
    container = outer("-e", "DIND_SKIP=rshared")
    container.wait_nested_docker()
    mounts = mounts_of(container.exec("cat", "/proc/1/mountinfo").stdout)
    assert not mount_at(mounts, "/").shared
    tag = container.load_base()
    container.exec("mkdir", "-p", "/x")
    run = container.exec("docker", "run", "--rm", "-v", "/x:/x:rshared", tag, "true", check=False)
    assert run.returncode != 0
    assert "not a shared mount" in run.stderr


# --- pure cgroup v2 view --------------------------------------------------------

V2_VIEW = 'umount -R /sys/fs/cgroup && mount -t cgroup2 cgroup2 /sys/fs/cgroup && exec dind "$@"'


def run_v2_check(e2e: Env, out: Path, *options: str) -> subprocess.CompletedProcess[str]:
    """Run data/v2-check.sh as dind's command in a cgroup v2 view (private cgroupns)."""
    return e2e.daemon.docker(
        "run",
        "--rm",
        "--privileged",
        "--cgroupns",
        "private",
        "-v",
        "/var/lib/docker",
        "-v",
        f"{e2e.base_tar}:{NESTED_BASE_TAR}:ro",
        "-v",
        f"{DATA / 'v2-check.sh'}:/e2e/v2-check.sh:ro",
        "-v",
        f"{out}:/out",
        *options,
        "--entrypoint",
        "sh",
        e2e.image,
        "-c",
        V2_VIEW,
        "sh",
        "sh",
        "/e2e/v2-check.sh",
        check=False,
        timeout=300,
    )


def test_v2_view_nested_dockerd_gets_controllers(e2e: Env) -> None:
    out = e2e.scratch("v2")
    run = run_v2_check(e2e, out)
    assert run.returncode == 0, run.stderr
    assert (out / "status").read_text() == "finished\n"
    mounts = mounts_of((out / "mountinfo").read_text())
    assert mount_at(mounts, "/sys/fs/cgroup").fstype == "cgroup2"
    # Precondition: the outer daemon delegated a controller, else nothing is proven.
    assert "hugetlb" in (out / "controllers").read_text().split()
    # dind's nesting step: every process moved to init/, controllers enabled.
    assert (out / "root.procs").read_text().split() == []
    assert "1" in (out / "init.procs").read_text().split()
    assert "hugetlb" in (out / "subtree_control").read_text().split()
    info = json.loads((out / "info.json").read_text())
    assert info["CgroupVersion"] == "2"
    nested = (out / "nested.txt").read_text()
    assert re.search(r"^hugetlb\.\S+\.max$", nested, re.M), nested


def test_v2_view_without_dinds_nesting_step_has_no_controllers(e2e: Env) -> None:
    """The control: skip cgroup-nesting and the nested container gets no hugetlb files."""
    out = e2e.scratch("v2-control")
    run = run_v2_check(e2e, out, "-e", "DIND_SKIP=cgroup-nesting")
    assert run.returncode == 0, run.stderr
    assert "hugetlb" in (out / "controllers").read_text().split()
    assert "1" in (out / "root.procs").read_text().split()
    assert not (out / "init.procs").exists()
    assert json.loads((out / "info.json").read_text())["CgroupVersion"] == "2"
    nested = (out / "nested.txt").read_text()
    assert "cgroup.procs" in nested  # the listing itself worked
    assert "hugetlb" not in nested


# --- exit status and signals ----------------------------------------------------


def test_exit_status_is_the_commands(e2e: Env) -> None:
    def run(*command: str) -> subprocess.CompletedProcess[str]:
        return e2e.daemon.docker(
            "run", "--rm", "--privileged", e2e.image, *command, check=False, timeout=120
        )

    assert run("sh", "-c", "exit 7").returncode == 7
    assert run("true").returncode == 0
    missing = run("no-such-command-e2e")
    assert missing.returncode == 127
    assert "no-such-command-e2e" in missing.stderr  # dind's message, not docker's
    not_executable = run("/etc/hostname")
    assert not_executable.returncode == 126
    assert "/etc/hostname" in not_executable.stderr


def _wait_for_process(e2e: Env, name: str, comm: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        top = e2e.daemon.docker("top", name, "-o", "pid,comm", check=False)
        if comm in top.stdout.split():
            return
        time.sleep(0.2)
    pytest.fail(f"{comm} never ran in {name}")


def _stop_and_status(e2e: Env, name: str, *stop_options: str) -> tuple[float, int]:
    started = time.monotonic()
    e2e.daemon.docker("stop", *stop_options, name, timeout=120)
    elapsed = time.monotonic() - started
    code = int(e2e.daemon.docker("inspect", "-f", "{{.State.ExitCode}}", name).stdout)
    return elapsed, code


def test_docker_stop_of_an_init_container_ends_by_sigterm(e2e: Env) -> None:
    """`dind --init` forwards SIGTERM: 143, not the grace period's SIGKILL (137)."""
    name = "dind-e2e-init"
    e2e.daemon.docker("rm", "-f", name, check=False)
    try:
        e2e.daemon.docker(
            "run", "-d", "--privileged", "--name", name, e2e.image, "--init", "sleep", "600"
        )
        _wait_for_process(e2e, name, "sleep")
        elapsed, code = _stop_and_status(e2e, name)
        FIGURES["docker stop of a --init container"] = f"{elapsed:.2f} s"
        assert code == 128 + 15
    finally:
        e2e.daemon.docker("rm", "-f", name, check=False)


def test_docker_stop_without_init_needs_sigkill(e2e: Env) -> None:
    """The control: sleep as PID 1 ignores SIGTERM, so docker stop ends with SIGKILL."""
    name = "dind-e2e-noinit"
    e2e.daemon.docker("rm", "-f", name, check=False)
    try:
        e2e.daemon.docker("run", "-d", "--privileged", "--name", name, e2e.image, "sleep", "600")
        _wait_for_process(e2e, name, "sleep")
        _, code = _stop_and_status(e2e, name, "-t", "2")
        assert code == 128 + 9
    finally:
        e2e.daemon.docker("rm", "-f", name, check=False)


# --- the original flow: `make binary` ran `docker run --privileged IMAGE hack/make.sh binary`


def test_make_binary_flow_builds_in_a_nested_container(e2e: Env) -> None:
    src = e2e.scratch("project")
    shutil.copytree(DATA / "project", src, dirs_exist_ok=True)
    bundles = src / "bundles"
    bundles.mkdir()
    run = e2e.daemon.docker(
        "run",
        "--rm",
        "--privileged",
        "-v",
        f"{src}:/src:ro",
        "-v",
        f"{bundles}:/src/bundles",
        "-v",
        f"{e2e.base_tar}:{NESTED_BASE_TAR}:ro",
        e2e.image,
        "hack/make.sh",
        "binary",
        check=False,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    dest = bundles / "0.0.0-e2e" / "binary"
    assert "Created binary: /src/bundles/0.0.0-e2e/binary/docker-0.0.0-e2e" in run.stdout
    binary = dest / "docker-0.0.0-e2e"
    assert binary.stat().st_mode & 0o111
    debian = e2e.daemon.docker("run", "--rm", e2e.base, "cat", "/etc/debian_version").stdout
    output = subprocess.run([binary], capture_output=True, text=True, check=True).stdout
    assert output == f"docker version 0.0.0-e2e, built on Debian {debian.strip()}\n"
    digest, fname = (dest / "docker-0.0.0-e2e.sha256").read_text().split()
    assert (fname, digest) == (binary.name, hashlib.sha256(binary.read_bytes()).hexdigest())
    # Built by a container of the nested daemon: its cgroup is <outer>/docker/<id>,
    # seen as /docker/<id> because dind made the outer container's group the root
    # of the nested daemon's cgroup namespace (cgroup-confine).
    path = (dest / "build-cgroup").read_text().splitlines()[0].split(":", 2)[2]
    parts = path.strip("/").split("/")
    assert len(parts) == 2, f"not confined to the outer container: {path}"
    assert parts[0] == "docker" and CONTAINER_ID.fullmatch(parts[1]), path
    assert (dest / "build-hostname").read_text().strip() == parts[1][:12]


# --- the image build: offline, cache-friendly, lean ----------------------------------


def test_default_image_is_debian_13_with_docker_26_or_later(e2e: Env) -> None:
    """Issue 20: built with no --base, the image is the Dockerfile's default suite
    (trixie), whose docker.io is 26 or later (20.10 is out of upstream support), with
    its docker CLI (a package of its own, docker-cli, from Debian 13 on)."""
    script = """
        . /etc/os-release; echo "suite=$VERSION_CODENAME"
        echo "dockerd=$(dockerd --version)"
        echo "docker=$(docker --version)"
    """
    out = e2e.daemon.docker("run", "--rm", "--entrypoint", "sh", e2e.image, "-c", script).stdout
    found = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    FIGURES["engine in the image"] = f"{found['dockerd']}; {found['docker']}"
    assert (SUITE, found["suite"]) == ("trixie", "trixie")
    for tool in ("dockerd", "docker"):
        version = re.match(r"Docker version (\d+)\.(\d+)", found[tool])
        assert version, found[tool]
        assert (int(version[1]), int(version[2])) >= (26, 0), found[tool]


def test_build_installed_python_packages_from_the_wheelhouse_only(e2e: Env) -> None:
    log = e2e.build_log
    assert "Looking in links: /build/wheels" in log
    assert "Looking in indexes" not in log
    assert "Successfully installed dind-" in log


def test_rebuild_after_a_code_change_is_offline_and_reuses_dependency_layers(
    e2e: Env,
) -> None:
    """Change dind's code, rebuild with --network none: only the project layers rerun."""
    ctx = e2e.scratch("context")
    for name in ("Dockerfile", ".dockerignore", "pyproject.toml", "README.md"):
        if (REPO / name).exists():
            shutil.copy2(REPO / name, ctx / name)
    shutil.copytree(REPO / "dind", ctx / "dind", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "wheelhouse", ctx / "wheelhouse")
    with (ctx / "dind" / "__init__.py").open("a") as f:
        f.write(f"\n# e2e rebuild marker {ctx.name}\n")
    tag = "dind:e2e-rebuild"
    build = e2e.daemon.docker(
        "build",
        "--network",
        "none",
        "--build-arg",
        f"BASE_IMAGE={e2e.base}",
        "--tag",
        tag,
        ctx,
        env={"DOCKER_BUILDKIT": "0"},  # the classic builder's step-by-step output
        timeout=600,
    )
    try:
        steps = _build_steps(build.stdout)
        cached = {step for step, used_cache in steps if used_cache}
        rerun = {step for step, used_cache in steps if not used_cache}
        assert any("apt-get install" in s and "docker.io" in s for s in cached), steps
        assert any("COPY pyproject.toml wheelhous[e]" in s for s in cached), steps
        assert any("pip install --no-cache-dir -r" in s for s in cached), steps
        assert any("COPY dind /build/src/dind" in s for s in rerun), steps
        version = e2e.daemon.docker("run", "--rm", tag, "--version").stdout
        assert "dind" in version
    finally:
        e2e.daemon.docker("rmi", "-f", tag, check=False)


def _build_steps(output: str) -> list[tuple[str, bool]]:
    """(instruction, used the cache) for each RUN/COPY step of classic `docker build` output."""
    steps: list[tuple[str, bool]] = []
    current = ""
    for line in output.splitlines():
        match = re.match(r"Step \d+/\d+ : (.*)", line)
        if match:
            current = match.group(1)
            if current.startswith(("RUN", "COPY")):
                steps.append((current, False))
        elif "Using cache" in line and steps and steps[-1][0] == current:
            steps[-1] = (current, True)
    return steps


def test_final_image_has_no_build_tools_and_compiled_bytecode(e2e: Env) -> None:
    script = r"""
        for tool in pip pip3 gcc cc make; do
            if command -v "$tool" >/dev/null; then echo "tool: $tool"; fi
        done
        ls /opt/dind/lib/python3*/site-packages
        pkg=$(echo /opt/dind/lib/python3*/site-packages/dind)
        find "$pkg" -name '*.py' | sed 's/^/py: /'
        find "$pkg" -name '*.pyc' | sed 's/^/pyc: /'
        ls -A /docker-frozen-images | sed 's/^/frozen: /'
        ls -A /var/lib/apt/lists | sed 's/^/apt-list: /'
    """
    out = e2e.daemon.docker("run", "--rm", "--entrypoint", "sh", e2e.image, "-c", script).stdout
    lines = out.splitlines()
    assert not [line for line in lines if line.startswith("tool: ")]
    site = {line for line in lines if ":" not in line}
    assert not {"pip", "setuptools"} & site, site
    assert "dind" in site
    modules = {Path(line[4:]).stem for line in lines if line.startswith("py: ")}
    compiled = {Path(line[5:]).name.split(".")[0] for line in lines if line.startswith("pyc: ")}
    assert "main" in modules
    assert modules <= compiled, modules - compiled
    assert not [line for line in lines if line.startswith("frozen: ")]  # off by default
    assert not [line for line in lines if line.startswith("apt-list: ")]


def test_image_start_path_imports_neither_click_nor_re(e2e: Env) -> None:
    """The container-start path in the image: no option given, so no click; a current
    pip's console script, so no re either (an old pip's would import it)."""
    # Not privileged: every kernel step (each mounts, unshares or writes cgroups) is skipped.
    steps = f"DIND_SKIP={','.join(KERNEL_STEPS)}"
    run = e2e.daemon.docker(
        "run", "--rm", "-e", steps, "--entrypoint", "/opt/dind/bin/python3", e2e.image,
        "-X", "importtime", "/opt/dind/bin/dind", "--", "true",
    )  # fmt: skip
    imported = {line.rsplit("|", 1)[-1].strip() for line in run.stderr.splitlines()}
    assert "dind.main" in imported
    assert not {"click", "re", "logging", "json", "typing"} & imported


# --- optional stage: images frozen into the image (off by default) -------------------


@pytest.fixture
def registry(e2e: Env) -> Iterator[str]:
    """A real registry (Debian's docker-registry, installed with the engine) on loopback."""
    with run_registry(e2e.scratch("registry")) as reg:
        yield reg.hostport


def test_frozen_images_stage_puts_loadable_images_in_the_image(e2e: Env, registry: str) -> None:
    ref = f"{registry}/e2e/frozen:1"
    e2e.daemon.docker("tag", e2e.base, ref)
    e2e.daemon.docker("push", ref)
    tag = "dind:e2e-frozen"
    argv = [str(REPO / "scripts/build-image"), "--base", e2e.base, "--tag", tag]
    build = subprocess.run(
        [*argv, "--frozen-images", f"--insecure {ref}"],
        env={**e2e.daemon.env, "DOCKER": e2e.daemon.client},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert build.returncode == 0, build.stdout[-4000:] + build.stderr
    container = None
    try:
        container = Outer.start(e2e, image=tag)
        container.wait_nested_docker()
        container.sh("tar -C /docker-frozen-images -c . | docker load")
        debian = container.exec("docker", "run", "--rm", ref, "cat", "/etc/debian_version")
        expected = e2e.daemon.docker("run", "--rm", e2e.base, "cat", "/etc/debian_version")
        assert debian.stdout == expected.stdout
        # The freezing tool and its venv stay in the build stage.
        assert "frozen" not in container.exec("ls", "/opt").stdout.split()
    finally:
        if container is not None:
            container.remove()
        e2e.daemon.docker("rmi", "-f", tag, ref, check=False)
