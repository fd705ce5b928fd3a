"""Planning the rootless daemon, on real captures (tests/fixtures/rootless: the dev image
run with each set of outer options, captured by ``dind.check.capture`` with
``DIND_ROOTLESS=1``; see README.md there). The plan is what ``--dry-run`` prints and
what a real run executes: its verdicts, refusals, root-only actions, the limits
decision and the rootlesskit command line are checked here whole.
"""

from __future__ import annotations

import copy
import json
import stat
from pathlib import Path

import pytest

from dind import steps
from dind.actions import PENDING, REFUSED, SATISFIED, Action, Decision, Symlink
from dind.check.analyse import analyse
from dind.check.capture import load
from dind.check.model import Snapshot
from dind.facts import from_evidence
from dind.plan import Plan, make_plan, render
from dind.rootless import facts as rf
from dind.rootless.actions import DelegateCgroup, GiveDevice, GiveFiles, UserDirs
from dind.rootless.check import recipe
from dind.settings import Settings, from_sources

CAPTURES = Path(__file__).parents[1] / "fixtures" / "rootless"
TLS = [
    "--tlsverify",
    "--tlscacert", "/certs/server/ca.pem",
    "--tlscert", "/certs/server/cert.pem",
    "--tlskey", "/certs/server/key.pem",
]  # fmt: skip
DOCKERD = [
    "dockerd",
    "-H", "unix:///run/user/1000/docker.sock",
    "-H", "tcp://0.0.0.0:2376", *TLS,
    "--data-root", "/home/rootless/.local/share/docker",
    "--exec-root", "/run/user/1000/docker",
    "--pidfile", "/run/user/1000/docker.pid",
]  # fmt: skip
KIT = [
    "rootlesskit",
    "--net=slirp4netns",
    "--mtu=65520",
    "--disable-host-loopback",
    "--port-driver=builtin",
    "--copy-up=/etc",
]
ENV = {
    "HOME": "/home/rootless",
    "USER": "rootless",
    "LOGNAME": "rootless",
    "XDG_RUNTIME_DIR": "/run/user/1000",
}


def snap(name: str) -> Snapshot:
    return load(str(CAPTURES / name))


def settings(**env: str) -> Settings:
    """``dind dockerd`` as the image runs it, with DIND_ROOTLESS=1 and ``env``."""
    return from_sources(
        ["dockerd"], {}, {"DIND_ROOTLESS": "1", "DOCKER_TLS_CERTDIR": "/certs", **env}
    )


def plan_of(s: Snapshot, **env: str) -> Plan:
    return make_plan(from_evidence(s.evidence, settings(**env)), settings(**env))


def step(plan: Plan, name: str) -> list[Action]:
    return [a for a in plan.actions if a.step == name]


def decisions(plan: Plan) -> dict[str, str]:
    """The rootless step's decisions: text → value."""
    return {
        a.text: a.value for a in plan.actions if isinstance(a, Decision) and a.step == "rootless"
    }


def test_privileged_on_cgroup_v1() -> None:
    """docker:dind-rootless parity: dind's kernel steps as for a rootful daemon, then the
    user's places, /dev/net/tun and the server's files given to it, the socket link, limits
    off (cgroup v1, said once), and rootlesskit wrapping dockerd as the user."""
    plan = plan_of(snap("privileged-v1"))
    assert plan.refused is None
    assert any(a.step == steps.TMP for a in plan.actions)  # the kernel steps run
    assert plan.command == [
        *KIT,
        "--copy-up=/run",
        "--propagation=rslave",  # / is made shared by the rshared step
        "--state-dir=/run/user/1000/dockerd-rootless",
        "-p=0.0.0.0:2376:2376/tcp",
        *DOCKERD,
    ]
    launch = plan.launch
    assert launch is not None
    assert (launch.user, launch.uid, launch.gid, launch.groups) == ("rootless", 1000, 1000, (1000,))
    assert launch.env == ENV
    assert launch.cgroup is None
    assert launch.socket == "unix:///run/user/1000/docker.sock"
    prepared = step(plan, steps.ROOTLESS)
    kinds = [(type(a).__name__, a.status) for a in prepared if not isinstance(a, Decision)]
    assert kinds == [
        ("UserDirs", SATISFIED),  # the image's /run/user/1000
        ("UserDirs", SATISFIED),  # and its data root, the user's already
        ("GiveDevice", PENDING),
        ("GiveFiles", PENDING),
        ("Symlink", PENDING),
    ]
    files = next(a for a in prepared if isinstance(a, GiveFiles))
    assert (files.directory, files.names, files.uid) == (
        "/certs/server",
        ("ca.pem", "cert.pem", "key.pem"),
        1000,
    )
    link = next(a for a in prepared if isinstance(a, Symlink))
    assert (link.path, link.link_target) == ("/run/docker.sock", "/run/user/1000/docker.sock")
    [delegate] = step(plan, steps.CGROUP_DELEGATE)
    assert isinstance(delegate, Decision) and delegate.value == "off"
    assert delegate.note == "cgroup v1 here: a rootless dockerd limits only on cgroup v2"
    warned = [w for s, w in plan.warnings if s == steps.CGROUP_DELEGATE]
    assert len(warned) == 1 and "no resource limits" in warned[0]
    assert plan.decided["limits"] == "off"
    assert plan.decided["rootless"].startswith("as rootless (uid 1000) in rootlesskit")
    said = decisions(plan)
    assert said["rootlesskit --net=slirp4netns --mtu=65520"] == "slirp4netns"
    assert said["rootlesskit --port-driver=builtin"] == "builtin"


def test_least_options_skip_the_kernel_steps_in_one_line() -> None:
    """Without CAP_SYS_ADMIN no mount step can run, and none is planned: one decision says
    so. / is not shared, so rootlesskit keeps its default propagation."""
    plan = plan_of(snap("least-v1"))
    assert plan.refused is None
    assert not [a for a in plan.actions if a.step in steps.KERNEL_STEPS]
    [skipped] = [a for a in plan.actions if isinstance(a, Decision) and a.value == "skipped"]
    assert skipped.note.startswith("dind holds no CAP_SYS_ADMIN: none of its mount steps")
    assert plan.command[:9] == [
        *KIT,
        "--copy-up=/run",
        "--state-dir=/run/user/1000/dockerd-rootless",
        "-p=0.0.0.0:2376:2376/tcp",
    ]
    assert plan.command[9:] == DOCKERD


@pytest.mark.parametrize(
    ("capture", "text", "said"),
    [
        ("least-no-tun", "/dev/net/tun", "missing: slirp4netns needs it (--device /dev/net/tun)"),
        ("least-masked-proc", "/proc", "(--security-opt systempaths=unconfined)"),
        ("least-default-seccomp", "user namespaces", "(--security-opt seccomp=unconfined)"),
        ("least-no-new-privileges", "newuidmap", "no-new-privileges)"),
        ("least-setuid-helpers", "newuidmap", "setuid root is not enough without CAP_SYS_ADMIN"),
    ],
)
def test_what_the_least_options_cannot_spare_is_refused_first(
    capture: str, text: str, said: str
) -> None:
    """Each missing piece stops dind before any action (the first refusal of the plan), in
    one line that names the outer option giving it."""
    plan = plan_of(snap(capture))
    refused = plan.refused
    assert isinstance(refused, Decision)
    assert (refused.step, refused.text) == (steps.ROOTLESS, text)
    assert refused.note.startswith(f"rootless: {text}: ")
    assert said in refused.note.replace("needs it for the daemon's network ", "needs it ")
    first = plan.actions.index(refused)
    assert all(
        a.status in (SATISFIED, REFUSED) or a.step == steps.ENVIRONMENT
        for a in plan.actions[:first]
        if a.step not in steps.KERNEL_STEPS
    )
    assert plan.launch is None


def test_a_setuid_helper_is_enough_under_privileged() -> None:
    """The same setuid-root helper with CAP_SYS_ADMIN in the bounding set (--privileged)."""
    s = copy.deepcopy(snap("privileged-v1"))
    ev = s.evidence.rootless
    assert ev is not None
    for name, info in ev.helpers.items():
        assert info is not None
        ev.helpers[name] = rf.FileInfo(info.path, stat.S_IFREG | 0o4755, 0, 0)
    verdict = rf.helper_verdict(ev, "newuidmap")
    assert (verdict.ok, verdict.value) == (True, "setuid root")
    assert plan_of(s).refused is None


def test_the_images_helpers_have_file_capabilities() -> None:
    ev = snap("least-v1").evidence.rootless
    assert ev is not None
    uid, gid = ev.helpers["newuidmap"], ev.helpers["newgidmap"]
    assert uid is not None and gid is not None
    assert rf.file_caps(uid.caps) == (1 << 7, True)  # cap_setuid=ep (struct vfs_cap_data v2)
    assert rf.file_caps(gid.caps) == (1 << 6, True)
    assert not uid.mode & stat.S_ISUID
    assert rf.file_caps("01000001ff") is None and rf.file_caps("zz") is None


@pytest.mark.parametrize(
    ("user", "said"),
    [
        ("nosuchuser", "no user 'nosuchuser' in /etc/passwd (DIND_ROOTLESS_USER names the user)"),
        ("nobody", "/etc/subuid has no range for nobody (uid 65534): rootlesskit maps"),
        ("root", "'root' is uid 0: a rootless daemon runs as an unprivileged user"),
    ],
)
def test_a_bad_user_is_refused_before_anything(user: str, said: str) -> None:
    plan = plan_of(snap("privileged-v1"), DIND_ROOTLESS_USER=user)
    refused = plan.refused
    assert refused is not None and refused.note.startswith(said)
    assert plan.actions.index(refused) < min(
        plan.actions.index(a) for a in plan.actions if a.step == steps.STALE_PID
    )


def test_started_as_the_user_on_a_0600_device_is_refused_with_the_way_out() -> None:
    plan = plan_of(snap("privileged-user-1000"))
    refused = plan.refused
    assert isinstance(refused, Decision) and refused.text == "/dev/net/tun"
    assert "start the container as root: dind gives the device to the user" in refused.note


def test_started_as_the_user_with_a_usable_device() -> None:
    """As uid 1000 (a host whose /dev/net/tun is 0666): no kernel step, nothing given, no
    link; dind says what it skips; rootlesskit starts as dind itself (no user to become)."""
    s = copy.deepcopy(snap("privileged-user-1000"))
    ev = s.evidence.rootless
    assert ev is not None and ev.tun is not None
    ev.tun = rf.FileInfo(ev.tun.path, stat.S_IFCHR | 0o666, 0, 0, ev.tun.rdev)
    plan = plan_of(s)
    assert plan.refused is None
    assert not [a for a in plan.actions if isinstance(a, GiveDevice | GiveFiles | Symlink)]
    assert not [a for a in plan.actions if a.step in steps.KERNEL_STEPS]
    assert plan.launch is not None and plan.launch.user is None and plan.launch.uid == 1000
    [said] = [w for s, w in plan.warnings if s == steps.ROOTLESS]
    assert said.startswith("dind runs as rootless (uid 1000), not as root: it skips")
    assert said.endswith("clients use DOCKER_HOST=unix:///run/user/1000/docker.sock")


def test_limits_on_a_cgroup_v2_view() -> None:
    """cgroup v2, dind root with cgroup nesting: a subtree given to the user, the daemon
    started in its daemon/ group, and dockerd in its standard mode (no
    ROOTLESSKIT_STATE_DIR, its port helper given it back) with the nested containers'
    parent in the subtree."""
    plan = plan_of(snap("privileged-v2-view"))
    assert plan.refused is None
    [delegate] = step(plan, steps.CGROUP_DELEGATE)
    assert isinstance(delegate, DelegateCgroup)
    assert (delegate.path, delegate.uid, delegate.children) == (
        "/sys/fs/cgroup/dind-rootless",
        1000,
        ("daemon",),
    )
    assert delegate.note.startswith("cgroup v2: dind gives uid 1000 the subtree dind-rootless/")
    assert not [w for s, w in plan.warnings if s == steps.CGROUP_DELEGATE]
    launch = plan.launch
    assert launch is not None and launch.cgroup == "/sys/fs/cgroup/dind-rootless/daemon"
    assert launch.env == {**ENV, "DIND_ROOTLESSKIT_STATE_DIR": "/run/user/1000/dockerd-rootless"}
    assert plan.command == [
        *KIT,
        "--copy-up=/etc/docker",
        "--copy-up=/run",
        "--propagation=rslave",
        "--state-dir=/run/user/1000/dockerd-rootless",
        "-p=0.0.0.0:2376:2376/tcp",
        "env", "-u", "ROOTLESSKIT_STATE_DIR",
        *DOCKERD,
        "--cgroup-parent", "/dind-rootless/docker",
        "--userland-proxy-path", "/opt/dind/bin/dind-rootlesskit-docker-proxy",
    ]  # fmt: skip
    nesting = [a for a in plan.actions if a.step == steps.CGROUP_NESTING]
    assert nesting and plan.actions.index(nesting[0]) < plan.actions.index(delegate)
    assert plan.decided["limits"].startswith("on (cgroup v2")


def test_limits_off_when_the_nesting_step_is_skipped() -> None:
    plan = plan_of(snap("privileged-v2-view"), DIND_SKIP="cgroup-nesting")
    [delegate] = step(plan, steps.CGROUP_DELEGATE)
    assert isinstance(delegate, Decision) and delegate.value == "off"
    assert delegate.note.startswith("cgroup-nesting is skipped")
    assert "env" not in plan.command


def test_with_dockerd_the_daemon_is_rootlesskit_and_the_command_stays() -> None:
    s = snap("least-v1")
    config = from_sources(
        ["make", "test"], {"with_dockerd": True},
        {"DIND_ROOTLESS": "1", "DOCKER_TLS_CERTDIR": ""},
    )  # fmt: skip
    plan = make_plan(from_evidence(s.evidence, config), config)
    assert plan.command == ["make", "test"]
    assert plan.dockerd is not None and plan.dockerd[0] == "rootlesskit"
    assert "-p=0.0.0.0:2375:2375/tcp" in plan.dockerd
    assert plan.dockerd[plan.dockerd.index("dockerd") :][:5] == [
        "dockerd", "-H", "unix:///run/user/1000/docker.sock", "-H", "tcp://0.0.0.0:2375",
    ]  # fmt: skip


def test_dry_run_shows_how_the_daemon_starts() -> None:
    plan = plan_of(snap("least-v1"))
    text = render(plan)
    last = text.splitlines()[-1]
    assert last.startswith("exec            pending    rootlesskit --net=slirp4netns")
    assert last.endswith(
        "# as rootless (uid 1000), with HOME=/home/rootless USER=rootless LOGNAME=rootless "
        "XDG_RUNTIME_DIR=/run/user/1000"
    )
    row = json.loads(render(plan, "json").splitlines()[-1])
    assert row["launch"]["uid"] == 1000 and row["argv"] == plan.command
    assert isinstance(next(a for a in plan.actions if isinstance(a, UserDirs)), UserDirs)


# --- --check's rootless area -------------------------------------------------------------


def report(name: str) -> dict[str, object]:
    doc = analyse(snap(name), Settings(command=[], check=True, rootless=True))
    return {"ok": doc.ok, "section": doc.sections["rootless"], "findings": doc.findings}


def test_check_least_options_works_without_limits() -> None:
    got = report("least-v1")
    assert got["ok"] is True
    section = got["section"]
    assert isinstance(section, dict)
    assert section["limits"] == "off" and section["recipe"] == recipe()
    assert section["newuidmap"] == "file capabilities (setuid)"
    findings = [f for f in got["findings"] if f.area == "rootless"]  # type: ignore[attr-defined]
    assert [(f.name, f.level) for f in findings if f.level != "ok"] == [("limits", "warning")]


@pytest.mark.parametrize(
    ("name", "blockers", "fix"),
    [
        ("least-no-tun", [("rootless", "tun")], "--device /dev/net/tun"),
        ("least-masked-proc", [("rootless", "proc")], "--security-opt systempaths=unconfined"),
        ("least-default-seccomp", [("rootless", "userns")], "--security-opt seccomp=unconfined"),
        (
            "least-no-new-privileges",
            [("rootless", "newuidmap"), ("rootless", "newgidmap")],
            "no-new-privileges",
        ),
    ],
)
def test_check_names_the_option_that_is_missing(
    name: str, blockers: list[tuple[str, str]], fix: str
) -> None:
    got = report(name)
    assert got["ok"] is False
    found = [f for f in got["findings"] if f.level == "blocker"]  # type: ignore[attr-defined]
    assert [(f.area, f.name) for f in found] == blockers
    assert all(fix in f.fix for f in found if f.area == "rootless")


def test_check_says_limits_are_on_in_the_v2_view() -> None:
    got = report("privileged-v2-view")
    section = got["section"]
    assert isinstance(section, dict) and section["limits"] == "on"
    command = section["dockerd"]
    assert isinstance(command, list) and "--cgroup-parent" in command


def test_checks_daemon_area_agrees_with_its_rootless_area_on_limits() -> None:
    """The daemon area plans after the kernel steps, as a real run does: cgroup-delegate
    follows from the nesting step there too, not from an empty kernel plan."""
    doc = analyse(snap("privileged-v2-view"), Settings(command=[], check=True, rootless=True))
    daemon = doc.sections["daemon"]
    assert isinstance(daemon, dict)
    delegate = [row for row in daemon["steps"] if row["step"] == steps.CGROUP_DELEGATE]
    assert delegate and "limits off" not in delegate[0]["describe"], delegate
    assert "--cgroup-parent" in daemon["dockerd"]
    warned = [f.name for f in doc.findings if f.level == "warning"]
    assert f"{steps.CGROUP_DELEGATE}-warning" not in warned


def test_the_recipe_is_the_least_options_in_order() -> None:
    assert recipe() == [
        "--security-opt seccomp=unconfined",
        "--security-opt apparmor=unconfined",
        "--security-opt systempaths=unconfined",
        "--device /dev/net/tun",
    ]


def test_dockerds_own_hosts_are_waited_on_and_published() -> None:
    """`dind dockerd -H ...`: dind adds no host; it waits on the first unix socket given and
    publishes the tcp:// ports given through rootlesskit."""
    s = snap("least-v1")
    config = from_sources(
        ["dockerd", "-H", "unix:///run/user/1000/mine.sock", "-H", "tcp://0.0.0.0:3000"],
        {},
        {"DIND_ROOTLESS": "1"},
    )
    plan = make_plan(from_evidence(s.evidence, config), config)
    assert plan.launch is not None and plan.launch.socket == "unix:///run/user/1000/mine.sock"
    assert "-p=0.0.0.0:3000:3000/tcp" in plan.command
    inner = plan.command[plan.command.index("dockerd") :]
    assert inner[:5] == [
        "dockerd",
        "-H",
        "unix:///run/user/1000/mine.sock",
        "-H",
        "tcp://0.0.0.0:3000",
    ]
    assert inner.count("-H") == 2


def test_recipe_docker_rootless_is_the_least_options_and_the_variable() -> None:
    """`dind --recipe docker --rootless`: comments, then one line of options from
    dind.requirements (the same the rootless area's fixes are made of), no capability."""
    from dind.recipe import render

    text = render("docker", rootless_daemon=True)
    [line] = [x for x in text.splitlines() if not x.startswith("#")]
    assert line == " ".join([*recipe(), "-e DIND_ROOTLESS=1"])
    assert "--privileged" not in text and "--cap-add" not in text
    other = render("kubernetes", rootless_daemon=True)
    assert "procMount" in other and "grant /dev/net/tun" in other
    assert all(x.startswith("#") for x in other.splitlines())


def test_the_readme_shows_the_rootless_recipe_as_dind_prints_it() -> None:
    from dind.recipe import render

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    [line] = [x for x in render("docker", True).splitlines() if not x.startswith("#")]
    assert line in readme
