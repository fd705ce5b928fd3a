"""Privilege (issue 17): the level and nested abilities on real captures, the requirements in
each runtime's words, ``--recipe``, dind's seccomp profile, and the net-sysctls step for real.

The captures under fixtures/check/ named ``docker-*``, ``podman-*`` and ``lxc-userns`` were
taken inside each configuration that tests/e2e/test_privilege.py and
tests/runtimes/test_userns.py then run nested Docker in (capture.py re-makes them); the
answers expected here are what those tests measured (README, "Without --privileged").
"""

from __future__ import annotations

import itertools
import json
import shlex
from pathlib import Path

import pytest

from dind import abilities, privilege, requirements, seccomp, steps
from dind.actions import PENDING, SKIPPED
from dind.check.analyse import analyse
from dind.check.capture import load
from dind.check.env import Env
from dind.facts import from_evidence
from dind.mountinfo import MountTable, parse
from dind.plan import make_plan
from dind.recipe import LXC_KEYS, render
from dind.settings import Settings
from dind.sysctl import plan_net_sysctls
from tests.conftest import DIND, clean_env, root_only, run_dind

CAPTURES = Path(__file__).parent / "fixtures" / "check"
YES, NO = True, False
MEASURED = {
    "docker-privileged": ("privileged", (YES, YES, YES, YES, NO)),
    "docker-recipe": ("capabilities", (YES, YES, YES, YES, NO)),
    "docker-caps-unconfined": ("capabilities", (YES, YES, YES, YES, NO)),
    "docker-default-seccomp": ("capabilities", (NO, NO, NO, NO, NO)),
    "docker-no-net-admin": ("capabilities", (NO, NO, NO, NO, NO)),
    "docker-no-sys-admin": ("none", (NO, NO, NO, NO, NO)),
    "podman-userns": ("user-namespace", (NO, NO, NO, NO, NO)),
    "podman-userns-privileged": ("user-namespace", (NO, NO, NO, NO, NO)),
    "lxc-userns": ("user-namespace", (YES, YES, YES, YES, YES)),
}
"""Capture → (level, nested run, build, ports, limits, privileged) as the real tests saw."""


def report(name: str, skip: frozenset[str] = frozenset()) -> dict[str, object]:
    doc = analyse(load(str(CAPTURES / name)), Settings(command=[], check=True, skip=skip))
    section = doc.sections["privilege"]
    assert isinstance(section, dict)
    return {"section": section, "report": doc}


def blockers(name: str) -> dict[str, str]:
    """``area/name`` → fix of each blocker of the capture's report."""
    doc = analyse(load(str(CAPTURES / name)), Settings(command=[], check=True))
    return {f"{f.area}/{f.name}": f.fix for f in doc.blockers}


# --- the level and the nested abilities, on real captures -----------------------------


@pytest.mark.parametrize("name", sorted(MEASURED))
def test_level_and_nested_answers_are_what_the_real_tests_measured(name: str) -> None:
    level, answers = MEASURED[name]
    section = report(name)["section"]
    assert isinstance(section, dict)
    assert section["level"] == level
    nested = section["nested"]
    assert isinstance(nested, dict)
    assert tuple(nested[a]["can"] for a in abilities.ABILITIES) == answers


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("docker-recipe", {}),
        ("docker-caps-unconfined", {}),
        ("docker-privileged", {}),
        ("lxc-userns", {}),
        ("docker-no-net-admin", {"privilege/cap_net_admin": "docker run --cap-add NET_ADMIN"}),
        (
            "docker-default-seccomp",
            {
                "privilege/keyring": "docker run --security-opt seccomp=dind-seccomp.json",
                "privilege/pivot_root": "docker run --security-opt seccomp=dind-seccomp.json",
            },
        ),
        (
            "docker-no-sys-admin",
            {
                "privilege/cap_sys_admin": "docker run --cap-add SYS_ADMIN",
                "plan/securityfs": "docker run --cap-add SYS_ADMIN",
                "network/ip_forward": "docker run --cap-add SYS_ADMIN",
            },
        ),
    ],
)
def test_each_blocker_names_the_least_option_in_dockers_words(
    name: str, expected: dict[str, str]
) -> None:
    assert blockers(name) == expected


@pytest.mark.parametrize("name", ["podman-userns", "podman-userns-privileged"])
def test_podman_with_a_user_namespace_is_blocked_by_its_undelegated_cgroups(name: str) -> None:
    found = blockers(name)
    assert list(found) == ["privilege/cgroup_delegation"]
    assert found["privilege/cgroup_delegation"] == requirements.CGROUP_DELEGATION.options["podman"]
    section = report(name)["section"]
    assert isinstance(section, dict)
    assert (section["root_outside"], section["cgroup_owner"]) == (100000, "65534")


def test_the_facts_read_in_a_recipe_container() -> None:
    section = report("docker-recipe")["section"]
    assert isinstance(section, dict)
    assert section["seccomp"] == "filter" and section["seccomp_filters"] == 1
    assert section["no_new_privs"] is False
    assert section["read_only"] == ["/proc/sys", "/sys"]
    assert section["masked"] == ["/proc/acpi", "/proc/keys", "/proc/timer_list", "/sys/firmware"]
    assert section["devices"] == [
        "b *:* m",
        "c *:* m",
        "c 1:3 rwm",
        "c 1:5 rwm",
        "c 1:7 rwm",
        "c 1:8 rwm",
        "c 1:9 rwm",
        "c 5:0 rwm",
        "c 5:1 rwm",
        "c 5:2 rwm",
        "c 10:200 rwm",
        "c 136:* rwm",
    ]
    assert (section["keyring"], section["pivot_root"]) == ("ok", "ok")
    assert (section["tun"], section["fuse"], section["net_namespace"]) == (
        "missing",
        "missing",
        "own",
    )
    assert "CAP_SYS_ADMIN" in section["effective"] and "CAP_NET_ADMIN" in section["effective"]


def test_a_privileged_container_has_every_device_and_no_filter() -> None:
    section = report("docker-privileged")["section"]
    assert isinstance(section, dict)
    assert (section["seccomp"], section["devices"], section["masked"], section["read_only"]) == (
        "disabled",
        ["a *:* rwm"],
        [],
        [],
    )
    # What the host itself prevents: its bounding set lacks CAP_SYS_RESOURCE.
    nested = section["nested"]
    assert isinstance(nested, dict)
    assert nested["privileged"]["host"] is True
    assert "CAP_SYS_RESOURCE" in nested["privileged"]["why"]


def test_nested_privileged_says_devices_first_then_capabilities() -> None:
    """runc sets the devices cgroup before it applies capabilities: the first error a user
    sees is the devices one."""
    section = report("docker-recipe")["section"]
    assert isinstance(section, dict)
    nested = section["nested"]
    assert isinstance(nested, dict)
    why = nested["privileged"]["why"]
    assert why.index("devices.allow") < why.index("unable to apply caps")
    assert nested["privileged"]["missing"] == ["all-devices", "all-capabilities"]


def test_the_start_warning_says_once_what_cannot_be_fixed() -> None:
    def said(name: str) -> list[str]:
        snap = load(str(CAPTURES / name))
        facts = privilege.from_evidence(snap.evidence, Env(snap).mounts)
        return abilities.cannot(abilities.assess(facts))

    assert said("docker-privileged") == []
    assert said("docker-no-sys-admin") == []  # --check explains a blocked run, not the warning
    (recipe,) = said("docker-recipe")
    assert recipe.startswith("nested --privileged containers fail here: the devices cgroup")
    (userns,) = said("lxc-userns")
    assert "user namespace" in userns and "no host devices" in userns


def test_device_rules_are_covered_as_the_kernel_covers_them() -> None:
    assert abilities.covers("a *:* rwm", "c 5:1 rwm")
    assert abilities.covers("c 136:* rwm", "c 136:3 rw")
    assert not abilities.covers("c 136:* rwm", "c *:* m")
    assert not abilities.covers("c 5:0 rwm", "c 5:1 rwm")
    assert not abilities.covers("c *:* m", "c 1:3 rwm")
    assert not abilities.covers("b *:* rwm", "c 1:3 rwm")
    podman = (  # podman's default devices cgroup, as listed in its containers here
        "b *:* m",
        "c *:* m",
        "c 1:3 rwm",
        "c 1:5 rwm",
        "c 1:7 rwm",
        "c 1:8 rwm",
        "c 1:9 rwm",
        "c 5:0 rwm",
        "c 5:2 rwm",
        "c 10:200 rwm",
        "c 136:* rwm",
    )
    assert abilities.uncovered(podman, requirements.NESTED_DEVICE_RULES) == ("c 5:1 rwm",)
    assert abilities.uncovered(None, requirements.NESTED_DEVICE_RULES) == ()
    fix = requirements.fix("podman", ("nested-devices",), {"nested-devices": ("c 5:1 rwm",)})
    assert fix == "podman run --device-cgroup-rule='c 5:1 rwm'"


# --- planning from privilege ------------------------------------------------------------


def plan_of(name: str) -> list[tuple[str, str, str]]:
    snap = load(str(CAPTURES / name))
    settings = Settings(command=["true"], skip=frozenset({steps.CGROUP_CONFINE}))
    plan = make_plan(from_evidence(snap.evidence, settings, everything=True), settings)
    return [(a.step, a.status, a.describe()) for a in plan.actions]


def test_net_sysctls_binds_and_remounts_proc_sys_net_where_proc_sys_is_read_only() -> None:
    planned = [row for row in plan_of("docker-recipe") if row[0] == steps.NET_SYSCTLS]
    assert planned == [
        (steps.NET_SYSCTLS, PENDING, "mount --bind /proc/sys/net /proc/sys/net"),
        (steps.NET_SYSCTLS, PENDING, "mount -o remount,bind,rw,nosuid,nodev,noexec /proc/sys/net"),
    ]
    assert not [row for row in plan_of("docker-privileged") if row[0] == steps.NET_SYSCTLS]


def test_net_sysctls_is_skipped_without_cap_sys_admin() -> None:
    """A new step must not make a container that skipped every other mounting step (no
    CAP_SYS_ADMIN, dind for its daemon steps) fail where it ran before."""
    planned = [row for row in plan_of("docker-no-sys-admin") if row[0] == steps.NET_SYSCTLS]
    assert [row[1] for row in planned] == [SKIPPED, SKIPPED]


def test_net_sysctls_is_skipped_in_the_hosts_network_namespace() -> None:
    mounts = MountTable(parse((CAPTURES / "docker-recipe/proc/self/mountinfo").read_text()))
    actions = plan_net_sysctls(mounts, net_host=True)
    assert [a.status for a in actions] == [SKIPPED, SKIPPED]
    assert "the host's network namespace" in actions[0].note
    assert [a.status for a in plan_net_sysctls(mounts, net_host=None)] == [PENDING, PENDING]


def test_securityfs_is_planned_skipped_in_a_user_namespace() -> None:
    (securityfs,) = [row for row in plan_of("lxc-userns") if row[0] == steps.SECURITYFS]
    assert securityfs[1] == SKIPPED
    (rootful,) = [row for row in plan_of("docker-recipe") if row[0] == steps.SECURITYFS]
    assert rootful[1] == PENDING


# --- the requirements and the recipes ------------------------------------------------


def test_every_requirement_is_said_in_each_runtimes_words() -> None:
    assert requirements.fix("docker", ("cap-net-admin",)) == "docker run --cap-add NET_ADMIN"
    assert requirements.fix("kubernetes", ("cap-sys-admin",)) == (
        "securityContext: {capabilities: {add: [SYS_ADMIN]}}"
    )
    assert requirements.fix("systemd-nspawn", ("seccomp",)) == (
        "systemd-nspawn --system-call-filter=@keyring"
    )
    assert "lxc.apparmor.allow_nesting = 1" in requirements.fix("lxc", ("apparmor",))
    assert requirements.fix("unknown", ("cap-sys-admin",)) == "grant CAP_SYS_ADMIN"
    for requirement in requirements.ALL:
        for runtime in requirements.RUNTIMES:
            assert "--privileged" not in requirements.fix(runtime, (requirement.key,))


@pytest.mark.parametrize("runtime", requirements.RUNTIMES)
def test_recipes_render_and_never_say_privileged(runtime: str) -> None:
    text = render(runtime)
    assert "--privileged" not in text and "privileged: true" not in text
    comments = [line for line in text.splitlines() if line.startswith("#")]
    assert text.endswith("\n") and comments and all(len(line) <= 100 for line in comments)


@pytest.mark.parametrize("runtime", ["docker", "podman"])
def test_docker_and_podman_recipes_are_one_line_of_options(runtime: str) -> None:
    (line,) = [x for x in render(runtime).splitlines() if not x.startswith("#")]
    words = shlex.split(line)
    for before, word in itertools.pairwise(words):
        assert word.startswith("--") or before in ("--cap-add", "--security-opt"), word
    assert words[:4] == ["--cap-add", "SYS_ADMIN", "--cap-add", "NET_ADMIN"]
    assert "seccomp=dind-seccomp.json" in words


def test_the_lxc_recipe_is_unprivileged_with_nesting() -> None:
    lines = render("lxc").splitlines()
    assert [x for x in lines if not x.startswith("#")] == list(LXC_KEYS)
    assert "lxc.idmap = u 0 100000 65536" in lines
    assert any("Proxmox VE" in x and "nesting=1" in x for x in lines)


def test_the_kubernetes_recipe_is_a_user_namespaced_pod_with_the_profile() -> None:
    text = render("kubernetes")
    for wanted in (
        "hostUsers: false",
        "add: [SYS_ADMIN, NET_ADMIN, MKNOD, NET_RAW, AUDIT_WRITE]",
        "type: Localhost",
        "localhostProfile: dind-seccomp.json",
        "pod-security.kubernetes.io/enforce: privileged",
        "cgroup_writable = true",
    ):
        assert wanted in text, wanted


def test_the_nspawn_recipe_is_a_settings_file() -> None:
    body = [x for x in render("nspawn").splitlines() if not x.startswith("#")]
    assert body[:4] == ["[Exec]", "SystemCallFilter=@keyring", "[Network]", "Private=yes"]


# --- dind's seccomp profile -----------------------------------------------------------


def _allowed(profile: dict[str, object]) -> dict[str, list[dict[str, object]]]:
    rules = profile["syscalls"]
    assert isinstance(rules, list)
    found: dict[str, list[dict[str, object]]] = {}
    for rule in rules:
        if rule["action"] == seccomp.ALLOW:
            for name in rule["names"]:
                found.setdefault(name, []).append(rule)
    return found


def test_the_profile_is_dockers_default_plus_the_additions_with_their_reasons() -> None:
    profile = json.loads(seccomp.render())
    assert (profile["defaultAction"], profile["defaultErrnoRet"]) == ("SCMP_ACT_ERRNO", 1)
    rules = profile["syscalls"]
    docker = seccomp.docker_default()
    assert rules[: len(docker)] == docker
    added = rules[len(docker) :]
    assert [r["names"] for r in added] == [
        ["add_key", "keyctl", "request_key"],
        ["pivot_root"],
    ]
    assert all(r["comment"].startswith("dind: ") for r in added)
    assert added[1]["includes"] == {"caps": ["CAP_SYS_ADMIN"]}
    allowed = _allowed({"syscalls": docker})
    for extra in seccomp.ADDITIONS:
        assert not set(extra.names) & set(allowed)  # truly beyond Docker's default


def test_the_profile_still_refuses_what_docker_refuses() -> None:
    allowed = _allowed(json.loads(seccomp.render()))
    for call in ("kexec_load", "kexec_file_load", "open_tree_attr", "userfaultfd", "bpf"):
        assert all("includes" in r for r in allowed.get(call, [])), call
    assert "kexec_load" not in allowed
    assert [r["includes"] for r in allowed["init_module"]] == [{"caps": ["CAP_SYS_MODULE"]}]


def test_seccomp_profile_option_prints_the_profile() -> None:
    result = run_dind("--seccomp-profile")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == seccomp.profile()


# --- the command line ----------------------------------------------------------------


def test_recipe_runs_anywhere_and_prints_the_recipe() -> None:
    result = run_dind("--recipe", "docker", env={"DIND_DEFAULT_COMMAND": "dockerd"})
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout == render("docker")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--recipe", "rkt"], "--recipe: 'rkt' is not one of docker, podman, lxc, nspawn"),
        (["--recipe"], "Option '--recipe' requires an argument"),
        (["--recipe", "docker", "true"], "--recipe takes no command"),
        (["--recipe", "docker", "--check"], "--check and --recipe cannot be combined"),
        (["--seccomp-profile", "true"], "--seccomp-profile takes no command"),
    ],
)
def test_recipe_and_profile_usage_errors_are_one_line_and_2(args: list[str], message: str) -> None:
    result = run_dind(*args)
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith("dind: error: ") and message in line, line


def test_help_documents_the_new_options() -> None:
    text = run_dind("--help").stdout
    for wanted in ("--recipe RUNTIME", "--seccomp-profile", "net-sysctls"):
        assert wanted in text, wanted


# --- for real, as root ------------------------------------------------------------------

PROC_SYS_READ_ONLY = "mount --bind /proc/sys /proc/sys && mount -o remount,bind,ro /proc/sys"
WRITES = (
    "if echo 1 > /proc/sys/net/ipv4/ip_forward; "
    'then echo "net=$(cat /proc/sys/net/ipv4/ip_forward)"; else echo net=read-only; fi; '
    "if test -w /proc/sys/kernel/sysrq; then echo kernel=writable; else echo kernel=read-only; fi"
)


def _run(script: str, *prefix: str) -> dict[str, str]:
    import subprocess

    done = subprocess.run(
        [*prefix, "sh", "-euc", script],
        env=clean_env(DIND=DIND),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    found = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    return {k: v for k, v in found.items() if k.isalpha()}


@root_only
def test_net_sysctls_makes_only_proc_sys_net_writable_in_a_network_namespace() -> None:
    """As under Docker without --privileged: /proc/sys read-only, a network namespace of its
    own. dind's step makes ip_forward writable there; kernel.* stays read-only."""
    unshare = ("unshare", "--mount", "--net", "--cgroup", "--propagation", "private")
    run = f'{PROC_SYS_READ_ONLY}; "$DIND" --skip tmp -- sh -c {shlex.quote(WRITES)}'
    assert _run(run, *unshare) == {"net": "1", "kernel": "read-only"}
    skipped = f'{PROC_SYS_READ_ONLY}; "$DIND" --skip tmp,net-sysctls -- sh -c {shlex.quote(WRITES)}'
    assert _run(skipped, *unshare) == {"net": "read-only", "kernel": "read-only"}


@root_only
def test_net_sysctls_leaves_the_hosts_network_namespace_alone() -> None:
    """In the machine's own network namespace (6.x numbers it), the step is skipped."""
    if int(Path("/proc/self/ns/net").readlink().name[5:-1]) != privilege.NET_NS_INIT:
        pytest.fail("this kernel does not number the initial network namespace (before 6.x)")
    probe = "if test -w /proc/sys/net/ipv4/ip_forward; then echo net=writable; else echo net=ro; fi"
    script = f'{PROC_SYS_READ_ONLY}; "$DIND" -v --skip tmp -- sh -c {shlex.quote(probe)} 2>&1'
    import subprocess

    unshare = ("unshare", "--mount", "--cgroup", "--propagation", "private")
    done = subprocess.run(
        [*unshare, "sh", "-euc", script],
        env=clean_env(DIND=DIND),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "net=ro" in done.stdout.splitlines()
    assert "dind: skipped: mount --bind /proc/sys/net /proc/sys/net: this is the host's" in (
        done.stdout
    )


def test_the_start_up_summary_gets_the_level_from_the_plan() -> None:
    """dind.summary reads what planning decided: in dockerd mode, the privilege level."""
    from dind.summary import decisions

    snap = load(str(CAPTURES / "docker-recipe"))
    settings = Settings(command=["dockerd"])
    facts = from_evidence(snap.evidence, settings, everything=True)
    assert decisions(make_plan(facts, settings))["privilege"] == (
        "capabilities (nested run yes, build yes, ports yes, limits yes, privileged no)"
    )
    assert "privilege" not in make_plan(facts, Settings(command=["true"])).decided


@pytest.mark.parametrize("runtime", requirements.RUNTIMES)
def test_the_readme_shows_each_recipe_as_dind_prints_it(runtime: str) -> None:
    """The README's recipes are --recipe's output (one source), not a copy that drifts."""
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    body = [line for line in render(runtime).splitlines() if not line.startswith("#")]
    if runtime == "nspawn":  # the README gives its command-line form, from the comment
        assert "--private-network --system-call-filter=@keyring" in readme
        return
    assert "\n".join(body) in readme, runtime
