"""Nested Docker without ``--privileged`` (issue 17), with the real engine.

Each configuration is the image as a CI service (``docker run -d IMAGE``: dind dockerd)
started with the outer options under test, never ``--privileged``:

- ``recipe``: exactly what ``docker run --rm IMAGE --recipe docker`` prints, with the
  profile ``--seccomp-profile`` prints;
- ``caps-unconfined``: CAP_SYS_ADMIN and CAP_NET_ADMIN with ``seccomp=unconfined``;
- the negative controls, the recipe minus one item: ``no-net-admin``, ``no-sys-admin``,
  ``default-seccomp`` (Docker's default filter), ``no-net-sysctls`` (dind's step that
  makes /proc/sys/net writable, skipped: the test daemon's containers start with
  ip_forward 0, as on any host that does not forward).

For each, ``dind --check`` runs first in a fresh container with the same options (what
a user runs before), then the service is started and ``tests.support.nested.PROBE``
measures nested run, build, ``-p``, ``-m 64m`` and nested ``--privileged`` inside it.
The check's verdict and its ``nested`` answers must be what then happened, and where it
blocks it must name the missing option in docker's words. The outer containers are
started together (module fixture) and probed in parallel.
"""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.e2e.conftest import FIGURES, Env, Outer
from tests.e2e.helpers import logs, one_error_line, remove_all, run_rm
from tests.support.nested import PROBE, Nested

SYS_ADMIN = ("--cap-add", "SYS_ADMIN")
NET_ADMIN = ("--cap-add", "NET_ADMIN")
UNCONFINED = ("--security-opt", "seccomp=unconfined")
ABILITIES = ("run", "build", "ports", "limits", "privileged")
CONFIGS = (
    "recipe",
    "caps-unconfined",
    "no-net-admin",
    "no-sys-admin",
    "default-seccomp",
    "no-net-sysctls",
)
KEXEC = """
import ctypes, errno, os
libc = ctypes.CDLL(None, use_errno=True)
number = {"x86_64": 246, "aarch64": 104}[os.uname().machine]
result = libc.syscall(number, 0, 0, None, 0)
print(errno.errorcode.get(ctypes.get_errno(), "0") if result < 0 else "allowed")
"""
"""kexec_load(2): this kernel has no kexec, so unfiltered it answers ENOSYS; a seccomp filter
that refuses it answers EPERM first."""


def without(options: list[str], *pair: str) -> list[str]:
    """``options`` less one ``--flag value`` pair."""
    for i in range(len(options) - 1):
        if tuple(options[i : i + 2]) == pair:
            return options[:i] + options[i + 2 :]
    raise AssertionError(f"{pair} not in {options}")


@dataclass
class Config:
    """One outer configuration: its options, --check's report, and what nested Docker did."""

    name: str
    options: list[str]
    check: dict[str, Any] = field(default_factory=dict)
    check_status: int = -1
    outer: Outer | None = None
    nested: Nested | None = None
    running: bool = False
    exit_code: int | None = None
    log: str = ""

    @property
    def blockers(self) -> dict[str, dict[str, str]]:
        return {
            f"{f['area']}/{f['name']}": f for f in self.check["findings"] if f["level"] == "blocker"
        }

    @property
    def answers(self) -> dict[str, bool | None]:
        nested = self.check["privilege"]["nested"]
        return {name: nested[name]["can"] for name in ABILITIES}


@pytest.fixture(scope="module")
def recipe(e2e: Env) -> list[str]:
    """``--recipe docker``'s options line, its profile file in place of its name."""
    printed = e2e.daemon.docker("run", "--rm", e2e.image, "--recipe", "docker").stdout
    (line,) = [x for x in printed.splitlines() if x and not x.startswith("#")]
    profile = e2e.scratch("seccomp") / "dind-seccomp.json"
    profile.write_text(e2e.daemon.docker("run", "--rm", e2e.image, "--seccomp-profile").stdout)
    return [
        f"seccomp={profile}" if word == "seccomp=dind-seccomp.json" else word
        for word in shlex.split(line)
    ]


def _configs(recipe: list[str]) -> dict[str, list[str]]:
    profile = next(w for w in recipe if w.startswith("seccomp="))
    return {
        "recipe": recipe,
        "caps-unconfined": [*SYS_ADMIN, *NET_ADMIN, *UNCONFINED],
        "no-net-admin": without(recipe, *NET_ADMIN),
        "no-sys-admin": without(recipe, *SYS_ADMIN),
        "default-seccomp": without(recipe, "--security-opt", profile),
        "no-net-sysctls": [*recipe, "-e", "DIND_SKIP=net-sysctls"],
    }


def _settle(config: Config, timeout: float = 90) -> None:
    """Wait until the nested daemon answers or the service has stopped."""
    assert config.outer is not None
    daemon = config.outer.env.daemon
    deadline = time.monotonic() + timeout
    while True:
        state = daemon.docker(
            "inspect", "-f", "{{.State.Running}} {{.State.ExitCode}}", config.outer.name
        ).stdout.split()
        config.running, config.exit_code = state[0] == "true", int(state[1])
        if not config.running:
            break
        answer = config.outer.exec("docker", "version", check=False, timeout=30)
        if answer.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    config.log = logs(config.outer, tail=5000)
    if config.running:
        config.nested = Nested.parse(config.outer.sh(PROBE, check=False).stdout)


@pytest.fixture(scope="module")
def configs(e2e: Env, recipe: list[str]) -> Iterator[dict[str, Config]]:
    """Every configuration: --check first (fresh containers), then the services together."""
    started = time.monotonic()
    found = {name: Config(name, options) for name, options in _configs(recipe).items()}
    outers: list[Outer] = []
    try:
        for config in found.values():
            done = run_rm(e2e, *config.options, e2e.image, "--check", "--log-format", "json")
            config.check_status = done.returncode
            config.check = json.loads(done.stdout)
        for config in found.values():
            config.outer = Outer.start(e2e, *config.options, privileged=False)
            outers.append(config.outer)
        with ThreadPoolExecutor(max_workers=len(found)) as pool:
            list(pool.map(_settle, found.values()))
        FIGURES["privilege: configurations measured"] = f"{time.monotonic() - started:.1f} s"
        for config in found.values():
            FIGURES[f"privilege: {config.name}"] = row(config)
        yield found
    finally:
        remove_all(outers)


def row(config: Config) -> str:
    """The README table's cells for one configuration, as measured."""
    level = config.check["privilege"]["level"]
    verdict = "ok" if config.check["ok"] else "blocked: " + ", ".join(config.blockers)
    if config.nested is None:
        return f"dind or dockerd stopped (exit {config.exit_code}); --check {level}, {verdict}"
    did = config.nested.answers()
    cells = " ".join(f"{k}={'yes' if did[k] else 'no'}" for k in ABILITIES)
    return f"{cells}; --check {level}, {verdict}"


def test_recipe_options_are_one_line_without_privileged(e2e: Env, recipe: list[str]) -> None:
    printed = e2e.daemon.docker("run", "--rm", e2e.image, "--recipe", "docker").stdout
    assert "--privileged" not in printed
    assert recipe[:4] == [*SYS_ADMIN, *NET_ADMIN]
    assert "--privileged" not in recipe and not any("unconfined" in w for w in recipe[:-1])


@pytest.mark.parametrize("name", ["recipe", "caps-unconfined"])
def test_nested_run_build_ports_and_limits_work_without_privileged(
    configs: dict[str, Config], name: str
) -> None:
    config = configs[name]
    nested = config.nested
    assert nested is not None and nested.dockerd, config.log
    assert nested.run, nested.why("run")
    assert nested.build, nested.why("build")
    assert nested.ports, nested.output[-2000:]
    assert nested.limits, nested.output[-2000:]  # 64 MiB set, a 120 MB allocation OOM-killed
    # What no outer option short of --privileged allows: the devices cgroup refuses first.
    assert not nested.privileged
    assert "devices.allow: operation not permitted" in nested.why("privileged")


@pytest.mark.parametrize(
    "name",
    [
        "recipe",
        "caps-unconfined",
        "no-net-admin",
        "no-sys-admin",
        "default-seccomp",
        "no-net-sysctls",
    ],
)
def test_check_verdict_and_answers_match_what_happened(
    configs: dict[str, Config], name: str
) -> None:
    config = configs[name]
    check = config.check
    assert config.check_status == (0 if check["ok"] else 1)
    nested = config.nested
    works = nested is not None and nested.run
    assert check["ok"] == works, f"--check ok={check['ok']}\n{config.blockers}\n{config.log}"
    did = nested.answers() if nested is not None else dict.fromkeys(ABILITIES, False)
    said = config.answers
    assert {k: v for k, v in said.items() if v is not None} == {
        k: did[k] for k, v in said.items() if v is not None
    }, config.check["privilege"]["nested"]
    assert None not in (said["run"], said["privileged"])


@pytest.mark.parametrize("name", ["recipe", "caps-unconfined"])
def test_check_names_the_capabilities_level(configs: dict[str, Config], name: str) -> None:
    privilege = configs[name].check["privilege"]
    assert privilege["level"] == "capabilities"
    assert privilege["read_only"] == ["/proc/sys", "/sys"] and privilege["masked"]
    assert privilege["seccomp"] == ("filter" if name == "recipe" else "disabled")
    warning = next(f for f in configs[name].check["findings"] if f["name"] == "nested_privileged")
    assert warning["level"] == "warning" and "devices cgroup" in warning["meaning"]


def test_the_service_warns_once_about_what_cannot_be_fixed(configs: dict[str, Config]) -> None:
    warnings = [
        line for line in configs["recipe"].log.splitlines() if "nested --privileged" in line
    ]
    assert len(warnings) == 1 and warnings[0].startswith("dind: warning: "), warnings


@pytest.mark.parametrize(
    ("name", "blocker", "fix"),
    [
        ("no-net-admin", "privilege/cap_net_admin", "docker run --cap-add NET_ADMIN"),
        ("no-sys-admin", "privilege/cap_sys_admin", "docker run --cap-add SYS_ADMIN"),
        (
            "default-seccomp",
            "privilege/keyring",
            "docker run --security-opt seccomp=dind-seccomp.json",
        ),
        ("no-net-sysctls", "network/ip_forward", "do not --skip net-sysctls"),
    ],
)
def test_the_recipe_minus_one_item_fails_as_check_said_naming_it(
    configs: dict[str, Config], name: str, blocker: str, fix: str
) -> None:
    config = configs[name]
    assert config.check["ok"] is False
    assert config.blockers[blocker]["fix"] == fix, config.blockers
    assert not any("--privileged" in f["fix"] for f in config.blockers.values())
    if name == "no-net-admin":  # dockerd itself exits at start
        assert not config.running, config.log
        assert "iptables" in config.log and "Permission denied" in config.log
    elif name == "no-sys-admin":  # dind stops at its first mount, one line
        assert (config.running, config.exit_code) == (False, 125)
        line = one_error_line("\n".join(x for x in config.log.splitlines() if "dind:" in x))
        assert "[EPERM]" in line and "CAP_SYS_ADMIN" in line
    elif name == "default-seccomp":  # dockerd runs, every nested container fails
        assert config.nested is not None and config.nested.dockerd
        assert "unable to join session keyring" in config.nested.why("run")
        assert "privilege/pivot_root" in config.blockers
    else:  # ip_forward 0 and /proc/sys read-only: dockerd stops
        assert not config.running, config.log
        assert "ip_forward: read-only file system" in config.log


def test_dinds_profile_still_refuses_a_forbidden_call(e2e: Env, recipe: list[str]) -> None:
    """kexec_load is refused by the filter (EPERM) with dind's profile; unconfined, the
    kernel itself answers (ENOSYS: it has no kexec)."""

    def kexec(*options: str) -> str:
        done = run_rm(e2e, *options, "--entrypoint", "python3", e2e.image, "-c", KEXEC)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    assert kexec(*recipe) == "EPERM"
    assert kexec(*SYS_ADMIN, *NET_ADMIN, *UNCONFINED) == "ENOSYS"


def test_recipe_of_an_unknown_runtime_is_a_usage_error(e2e: Env) -> None:
    done = run_rm(e2e, "--network", "none", e2e.image, "--recipe", "rkt")
    assert done.returncode == 2
    assert "'rkt' is not one of docker, podman, lxc, nspawn, kubernetes" in one_error_line(
        done.stderr
    )
