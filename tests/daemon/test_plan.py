"""The daemon steps' decisions (pure) and the command line they make, from real evidence.

Evidence is what ``dind.daemon.detect`` reads; here it is built from captures of this
machine (``fixtures/route``) and from what the readers return on it, and the plan is
compared exactly. The detection readers themselves are tested for real at the end.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dind import mountinfo
from dind.actions import Action
from dind.daemon import flags, iptables, mtu
from dind.daemon.actions import LinkTools, MakeCertificates
from dind.daemon.detect import find_pidfiles, read_daemon
from dind.daemon.facts import Backend, DaemonEvidence, PidFile, daemon_facts
from dind.errors import SetupError, UsageError
from dind.facts import Facts
from dind.plan import Plan, make_plan
from dind.settings import Settings, from_sources
from dind.steps import KERNEL_STEPS
from tests.conftest import fixture_text, root_only, run_dind

ROUTES = Path(__file__).parent / "fixtures" / "route"
NFT = Backend({"iptables": "/usr/sbin/iptables-nft"}, 0, None)
LEGACY = Backend({"iptables": "/usr/sbin/iptables-legacy"}, 0, None)


def settings(*command: str, env: dict[str, str] | None = None, **options: object) -> Settings:
    """Settings as the command line and variables make them; the kernel steps skipped."""
    return from_sources(list(command), {"skip": KERNEL_STEPS, **options}, env or {})


def evidence(**fields: object) -> DaemonEvidence:
    values: dict[str, object] = {
        "iptables": {"nft": NFT, "legacy": LEGACY},
        "data_root_fs": "ext4",
    }
    values.update(fields)
    return DaemonEvidence(**values)  # type: ignore[arg-type]


def plan_for(s: Settings, ev: DaemonEvidence) -> Plan:
    table = mountinfo.MountTable(
        mountinfo.parse(fixture_text("container-v1-privatens", "mountinfo"))
    )
    facts = Facts(hierarchies=[], mounts=table, own_cgroups=[], daemon=daemon_facts(ev, s))
    return make_plan(facts, s)


def rows(plan: Plan) -> list[tuple[str, str, str]]:
    return [
        (a.step, a.status, a.describe()) for a in plan.actions if a.step not in ("environment",)
    ]


def of(plan: Plan, step: str) -> list[Action]:
    return [a for a in plan.actions if a.step == step]


# --- the command line: dockerd mode, docker:dind's conventions ------------------------


def test_dockerd_as_command_is_dockerd_mode_and_runs_as_dinds_child() -> None:
    s = settings("dockerd", "--debug")
    assert (s.dockerd_command, s.daemon_mode, s.runs_init) == (True, True, True)
    assert settings("/usr/bin/dockerd").dockerd_command
    assert not settings("dockerd-rootless.sh").dockerd_command
    assert not settings("dockerd", env={"DIND_INIT": "0"}).runs_init  # the opt-out


def test_default_command_and_dockerd_flags_the_docker_dind_way() -> None:
    from dind.main import parse_args

    env = {**os.environ, "DIND_DEFAULT_COMMAND": "dockerd"}
    old = dict(os.environ)
    try:
        os.environ.clear()
        os.environ.update(env)
        assert parse_args([]).command == ["dockerd"]
        flagged = parse_args(["--mtu", "1400", "--insecure-registry", "r:5000"])
        assert flagged.command == ["dockerd", "--mtu", "1400", "--insecure-registry", "r:5000"]
        mixed = parse_args(["-v", "--skip", "tmp", "--mtu=1400"])
        assert mixed.command == ["dockerd", "--mtu=1400"] and mixed.skip == {"tmp"}
        assert parse_args(["sh", "-c", "true"]).command == ["sh", "-c", "true"]
        assert parse_args(["--dry-run"]).command == ["dockerd"]
        assert parse_args(["--check"]).command == []
    finally:
        os.environ.clear()
        os.environ.update(old)


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (["--mtu", "1400"], {}, "No such option '--mtu'"),
        (["true"], {"DIND_IPTABLES": "pf"}, "DIND_IPTABLES='pf': expected one of auto, nft"),
        (["true"], {"DIND_MTU": "99999"}, "DIND_MTU='99999': expected auto, off or an MTU"),
        (["true"], {"DIND_MTU": "-1"}, "DIND_MTU='-1': expected auto, off or an MTU"),
        (["--timeout", "-1", "--ready"], {}, "--timeout: '-1' is not a number of seconds >= 0"),
        (["--dockerd-stop-timeout", "abc", "--with-dockerd", "true"], {}, "is not a number"),
        (["true"], {"DOCKER_TLS_SAN": "IP:999.1.1.1"}, "DOCKER_TLS_SAN"),
        (["true"], {"DOCKER_TLS_CERTDIR": "/certs/../etc"}, "DOCKER_TLS_CERTDIR"),
        (["--with-dockerd", "dockerd"], {}, "--with-dockerd starts dockerd itself"),
        (["dockerd", "-H"], {"DIND_DRY_RUN": "1"}, "dockerd flag -H needs a value"),
    ],
)
def test_bad_input_is_one_line_and_a_usage_error(
    args: list[str], env: dict[str, str], expected: str
) -> None:
    result = run_dind(*args, env=env)
    assert (result.returncode, result.stdout) == (2, "")
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and expected in lines[0] and "Traceback" not in result.stderr


def test_dockerd_flags_as_pflag_spells_them() -> None:
    got = flags.parse_flags(
        [
            "-Hunix:///a",
            "--host",
            "tcp://x:1",
            "-H=fd://",
            "--mtu=1400",
            "--tls",
            "--iptables=false",
        ]
    )
    assert got == {
        "host": ["unix:///a", "tcp://x:1", "fd://"],
        "mtu": ["1400"],
        "tls": ["true"],
        "iptables": ["false"],
    }
    with pytest.raises(UsageError, match="-p needs a value"):
        flags.parse_flags(["-p"])
    config = flags.parse_config('{"hosts": ["unix:///b"], "mtu": 1300, "tls": true}', "f")
    d = flags.Directives({"storage-driver": ["vfs"]}, config)
    assert (d.value("host"), d.value("mtu"), d.value("tls"), d.value("storage-driver")) == (
        "unix:///b",
        "1300",
        "true",
        "vfs",
    )
    assert d.given("host") and not d.given("cgroup-parent")


@pytest.mark.parametrize(
    "text", ["[" * 100_000 + "]" * 100_000, '{"a":' * 40 + "1" + "}" * 40, "[]", "{bad"]
)
def test_a_daemon_json_dind_cannot_read_stops_it_with_one_line(text: str) -> None:
    with pytest.raises(SetupError) as err:
        flags.parse_config(text, "/etc/docker/daemon.json")
    assert str(err.value).startswith("/etc/docker/daemon.json: ") and "\n" not in str(err.value)


# --- hosts and tls ---------------------------------------------------------------------


def test_hosts_without_tls_are_the_unix_socket_only() -> None:
    plan = plan_for(settings("dockerd"), evidence())
    assert plan.command == ["dockerd", "-H", "unix:///var/run/docker.sock"]
    assert ("tls", "satisfied", "no TLS") in rows(plan)


def test_tls_certdir_empty_is_plain_tcp_without_the_15_second_sleep() -> None:
    plan = plan_for(settings("dockerd", env={"DOCKER_TLS_CERTDIR": ""}), evidence())
    assert plan.command == [
        "dockerd",
        "-H",
        "unix:///var/run/docker.sock",
        "-H",
        "tcp://0.0.0.0:2375",
        "--tls=false",
    ]


def test_tls_on_listens_on_2376_with_the_servers_certificates() -> None:
    env = {"DOCKER_TLS_CERTDIR": "/certs", "DOCKER_TLS_SAN": "DNS:dind.example IP:10.1.2.3"}
    ev = evidence(addresses=["127.0.0.1", "172.17.0.2"], hostnames=["abc123"], tls_state="new")
    plan = plan_for(settings("dockerd", env=env), ev)
    assert plan.command == [
        "dockerd",
        "-H",
        "unix:///var/run/docker.sock",
        "-H",
        "tcp://0.0.0.0:2376",
        "--tlsverify",
        "--tlscacert",
        "/certs/server/ca.pem",
        "--tlscert",
        "/certs/server/cert.pem",
        "--tlskey",
        "/certs/server/key.pem",
    ]
    (certs,) = of(plan, "tls")
    assert isinstance(certs, MakeCertificates)
    assert set(certs.sans) >= {
        "DNS:dind.example",
        "IP:10.1.2.3",
        "IP:127.0.0.1",
        "IP:172.17.0.2",
        "DNS:abc123",
        "DNS:docker",
        "DNS:localhost",
    }


def test_hosts_already_given_are_kept_and_get_tls_only_for_tcp() -> None:
    env = {"DOCKER_TLS_CERTDIR": "/certs"}
    unix = plan_for(settings("dockerd", "-H", "unix:///x.sock", env=env), evidence(tls_state="new"))
    assert unix.command == ["dockerd", "-H", "unix:///x.sock"]
    tcp = plan_for(settings("dockerd", "-H", "tcp://0.0.0.0:2376", env=env), evidence())
    assert tcp.command[:3] == ["dockerd", "-H", "tcp://0.0.0.0:2376"]
    assert "--tlsverify" in tcp.command
    config = evidence(config_text='{"hosts": ["unix:///y.sock"]}')
    from_json = plan_for(settings("dockerd"), config)
    assert from_json.command == ["dockerd"]  # daemon.json has hosts: a -H too would fail


# --- stale-pid -------------------------------------------------------------------------


def test_stale_pid_files_go_and_live_ones_stay() -> None:
    pidfiles = [
        PidFile("/run/docker.pid", 31, None),  # gone
        PidFile("/run/docker/containerd/containerd.pid", 47, "containerd"),  # alive
        PidFile("/run/docker2.pid", 1, "dind"),  # recycled: PID 1 is now dind itself
        PidFile("/run/containerd.pid", None, None),  # garbage in it: not a pid file
        PidFile("/etc/shadow", None, None),  # dockerd --pidfile /etc/shadow (issue 21)
        PidFile("/run/docker3.pid", None, None, "symlink", "/etc/passwd"),  # issue 21
        PidFile("/run/docker4.pid", None, None, "other"),  # a directory, a FIFO
    ]
    plan = plan_for(settings("dockerd"), evidence(pidfiles=pidfiles))
    assert rows(plan)[:7] == [
        ("stale-pid", "pending", "rm /run/docker.pid"),
        ("stale-pid", "satisfied", "keep /run/docker/containerd/containerd.pid"),
        ("stale-pid", "pending", "rm /run/docker2.pid"),
        ("stale-pid", "conflict", "remove /run/containerd.pid"),
        ("stale-pid", "conflict", "remove /etc/shadow"),
        ("stale-pid", "pending", "rm /run/docker3.pid"),
        ("stale-pid", "conflict", "remove /run/docker4.pid"),
    ]
    notes = {a.describe(): a.note for a in plan.actions}
    assert notes["rm /run/docker3.pid"].startswith("a symlink (to /etc/passwd) where dockerd")
    assert notes["remove /etc/shadow"] == (
        "not a pid file (its content is not a PID alone): left alone; dockerd may refuse to "
        "start or write its PID over it"
    )
    assert notes["remove /run/docker4.pid"].startswith("not a pid file (not a regular file)")
    (warned,) = [w for step, w in plan.warnings if step == "stale-pid"]
    assert warned.startswith("/run/docker3.pid is a symlink (to /etc/passwd)")
    assert warned.endswith("removed, its target left alone")


def test_pid_files_are_found_without_following_symlinks(scratch: Path) -> None:
    (scratch / "docker").mkdir()
    (scratch / "docker.pid").write_text(f"{os.getpid()}\n")
    (scratch / "docker" / "containerd").mkdir()
    (scratch / "docker" / "containerd" / "containerd.pid").write_text("999999\n")
    (scratch / "other.pid").write_text("1\n")
    outside = scratch.parent / f"{scratch.name}-outside"
    outside.mkdir()
    (outside / "docker-evil.pid").write_text("1\n")
    try:
        (scratch / "link").symlink_to(outside)
        (scratch / "docker-link.pid").symlink_to(outside / "docker-evil.pid")
        found = {p.path.removeprefix(str(scratch)): p for p in find_pidfiles(str(scratch), None)}
    finally:
        shutil.rmtree(outside)
    assert set(found) == {"/docker.pid", "/docker/containerd/containerd.pid", "/docker-link.pid"}
    assert (found["/docker-link.pid"].kind, found["/docker-link.pid"].pid) == ("symlink", None)
    assert found["/docker-link.pid"].target == str(outside / "docker-evil.pid")
    assert found["/docker.pid"].pid == os.getpid()
    assert found["/docker.pid"].comm is None  # dind's own PID is never "alive" for a pid file
    assert found["/docker/containerd/containerd.pid"].alive is False


@pytest.mark.parametrize(
    ("content", "pid"),
    [
        ("4242", 4242),
        ("4242\n", 4242),
        ("root:x:0:0:root:/root:/bin/bash\n", None),  # --pidfile /etc/passwd
        ("4242\n4243\n", None),
        (" 4242", None),
        ("4242 and more", None),
        ("", None),
        ("0", None),
        ("9" * 40, None),
    ],
)
def test_only_a_pid_and_nothing_else_is_a_pid(scratch: Path, content: str, pid: int | None) -> None:
    named = scratch / "sub" / "named.file"
    named.parent.mkdir()
    named.write_text(content)
    (found,) = find_pidfiles(str(scratch / "empty-run"), str(named))
    assert (found.path, found.kind, found.pid) == (str(named), "file", pid)


def test_a_named_pid_file_is_found_through_its_directorys_symlink_not_its_own(
    scratch: Path,
) -> None:
    """/var/run is a symlink to /run: the pid file's directory is resolved, its name never."""
    (scratch / "real").mkdir()
    (scratch / "alias").symlink_to(scratch / "real")
    (scratch / "victim").write_text("precious")
    (scratch / "real" / "docker.pid").symlink_to(scratch / "victim")
    (found,) = find_pidfiles(str(scratch / "empty-run"), str(scratch / "alias" / "docker.pid"))
    assert (found.path, found.kind) == (str(scratch / "real" / "docker.pid"), "symlink")
    assert find_pidfiles(str(scratch / "empty-run"), str(scratch / "alias" / "absent.pid")) == []


def test_a_live_daemon_is_recognised_by_its_process_name(scratch: Path) -> None:
    fake = scratch / "dockerd"
    shutil.copy("/bin/sleep", fake)
    proc = subprocess.Popen([str(fake), "30"])
    try:
        deadline = time.monotonic() + 10
        while Path(f"/proc/{proc.pid}/comm").read_text().strip() != "dockerd":
            assert time.monotonic() < deadline, "the child never exec'd"
            time.sleep(0.01)
        (scratch / "docker.pid").write_text(str(proc.pid))
        (pid,) = find_pidfiles(str(scratch), None)
        assert (pid.comm, pid.alive) == ("dockerd", True)
    finally:
        proc.kill()
        proc.wait()


# --- data-root -------------------------------------------------------------------------


def test_overlay_data_root_is_refused_before_anything_changes() -> None:
    plan = plan_for(settings("dockerd"), evidence(data_root_fs="overlay"))
    refused = plan.refused
    assert refused is not None and refused.step == "data-root"
    assert "-v /var/lib/docker" in refused.note and "DIND_DATA_ROOT_CHECK=0" in refused.note
    allowed = plan_for(settings("dockerd", "-s", "vfs"), evidence(data_root_fs="overlay"))
    assert allowed.refused is None
    off = settings("dockerd", env={"DIND_DATA_ROOT_CHECK": "0"})
    assert plan_for(off, evidence(data_root_fs="overlay")).refused is None
    elsewhere = plan_for(settings("dockerd", "--data-root", "/data"), evidence())
    assert ("data-root", "satisfied", "data root /data not on overlayfs") in rows(elsewhere)


# --- iptables --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("nft", "legacy", "choice", "expected"),
    [
        (0, 5, "auto", "legacy"),
        (7, 2, "auto", "nft"),
        (3, 3, "auto", "nft"),
        (0, 0, "auto", "nft"),
        (0, 0, "legacy", "legacy"),
        (9, 0, "legacy", "legacy"),
    ],
)
def test_the_backend_holding_rules_wins(nft: int, legacy: int, choice: str, expected: str) -> None:
    backends = {
        "nft": Backend({"iptables": "x"}, nft, None),
        "legacy": Backend({"iptables": "y"}, legacy, None),
    }
    assert iptables.decide(choice, backends, "DIND_IPTABLES")[0] == expected


def test_without_rules_a_backend_that_works_is_taken_else_none() -> None:
    broken = Backend({"iptables": "x"}, 0, "iptables v1.8.9 (nf_tables): table nat missing")
    assert iptables.decide("auto", {"nft": broken, "legacy": LEGACY}, "")[0] == "legacy"
    assert iptables.decide("auto", {"nft": broken, "legacy": broken}, "")[0] is None


def test_iptables_links_go_first_on_dockerds_path() -> None:
    tools = {t: f"/usr/sbin/{iptables.variant(t, 'legacy')}" for t in iptables.TOOLS}
    ev = evidence(iptables={"nft": NFT, "legacy": Backend(tools, 12, None)})
    plan = plan_for(settings("dockerd"), ev)
    (links,) = of(plan, "iptables")
    assert isinstance(links, LinkTools)
    assert dict(links.links)["ip6tables-save"] == "/usr/sbin/ip6tables-legacy-save"
    assert "12 rule(s) in the legacy tables" in links.note
    assert plan.dockerd_path == ["/run/dind/iptables"]
    forced = plan_for(settings("dockerd", env={"DOCKER_IPTABLES_LEGACY": "1"}), evidence())
    assert "DIND_IPTABLES=legacy" in of(forced, "iptables")[0].note  # docker:dind's variable
    off = plan_for(settings("dockerd", "--iptables=false"), evidence())
    assert rows(off).count(("iptables", "satisfied", "no iptables")) == 1


def test_no_working_nat_is_said_before_dockerd_starts() -> None:
    broken = Backend({"iptables": "x"}, 0, "table `nat' does not exist")
    plan = plan_for(settings("dockerd"), evidence(iptables={"nft": broken, "legacy": broken}))
    (warning,) = [text for step, text in plan.warnings if step == "iptables"]
    assert "no working NAT table" in warning and "--iptables=false" in warning


# --- mtu -------------------------------------------------------------------------------


def test_the_default_route_interface_from_real_route_tables() -> None:
    assert mtu.default_interface((ROUTES / "host-vm").read_text()) == "eth0"
    assert mtu.default_interface((ROUTES / "two-defaults").read_text()) == "v2"  # lower metric
    assert mtu.default_interface((ROUTES / "no-default").read_text()) is None
    assert mtu.default_interface("garbage\n\x00\nx y z\n") is None


def test_dockerd_versions() -> None:
    assert mtu.version("Docker version 20.10.24+dfsg1, build 297e128") == (20, 10)
    assert mtu.version("Docker version 27.3.1, build 41ca978") == (27, 3)
    assert mtu.version("nonsense") is None
    assert mtu.version("Docker version \u00b2\u2070.10") is None  # Unicode digits, int() refuses
    assert mtu.version("Docker version 26.1\u00b2") is None


def test_a_smaller_mtu_is_passed_on_and_user_networks_get_it_where_supported() -> None:
    small = evidence(mtus={"eth0": 1400}, dockerd_version="Docker version 20.10.24+dfsg1")
    plan = plan_for(settings("dockerd"), small)
    assert plan.command[-2:] == ["--mtu", "1400"]
    newer = evidence(mtus={"eth0": 1360}, dockerd_version="Docker version 27.3.1, build x")
    assert plan_for(settings("dockerd"), newer).command[-4:] == [
        "--mtu",
        "1360",
        "--default-network-opt",
        "bridge=com.docker.network.driver.mtu=1360",
    ]
    full = plan_for(settings("dockerd"), evidence(mtus={"eth0": 1500}))
    assert "--mtu" not in full.command
    given = plan_for(settings("dockerd", "--mtu", "1300"), small)
    assert given.command.count("--mtu") == 1
    off = plan_for(settings("dockerd", env={"DIND_MTU": "off"}), small)
    assert "--mtu" not in off.command
    forced = plan_for(settings("dockerd", env={"DIND_MTU": "1280"}), evidence())
    assert forced.command[-2:] == ["--mtu", "1280"]


# --- --with-dockerd --------------------------------------------------------------------


def test_with_dockerd_plans_the_daemon_beside_the_command() -> None:
    s = settings("make", "test", with_dockerd=True, dockerd_arg=("--debug",))
    plan = plan_for(s, evidence())
    assert plan.command == ["make", "test"]
    assert plan.dockerd == ["dockerd", "--debug", "-H", "unix:///var/run/docker.sock"]


def test_dry_run_lists_the_daemon_steps() -> None:
    result = run_dind(
        "--dry-run", "--allow-host", "--skip", "securityfs,tmp,cgroup-confine,rshared", "dockerd"
    )
    assert result.returncode == 0, result.stderr
    steps = [line.split()[0] for line in result.stdout.splitlines()]
    for step in ("stale-pid", "data-root", "tls", "hosts", "iptables", "mtu", "exec"):
        assert step in steps, step
    assert result.stdout.splitlines()[-1].startswith(
        "exec            pending    dockerd -H unix://"
    )


# --- detection, for real -----------------------------------------------------------------


@root_only
def test_iptables_evidence_in_fresh_network_namespaces() -> None:
    """No rules at all, then a legacy rule, then an nf_tables rule: each backend's own
    ``*-save`` counts them (run in throwaway network namespaces)."""
    probe = (
        "import json,sys; from dind.daemon.detect import read_backend as r; "
        "print(json.dumps({b: r(b).rules for b in ('nft', 'legacy')}))"
    )

    def counts(setup: str) -> dict[str, int]:
        script = f'{setup} exec {sys.executable} -c "{probe}"'
        out = subprocess.run(
            ["unshare", "--net", "sh", "-euc", script],
            capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        import json

        return dict(json.loads(out.stdout))

    if not (shutil.which("iptables-legacy") and shutil.which("iptables-nft")):
        pytest.fail("iptables-legacy and iptables-nft are needed (Debian package iptables)")
    assert counts("") == {"nft": 0, "legacy": 0}
    assert counts("iptables-legacy -t nat -A POSTROUTING -j ACCEPT;") == {"nft": 0, "legacy": 1}
    assert counts("iptables-nft -A INPUT -j ACCEPT; iptables-nft -A INPUT -j ACCEPT;") == {
        "nft": 2,
        "legacy": 0,
    }


def test_read_daemon_on_this_machine_reads_what_the_steps_need() -> None:
    ev = read_daemon(settings("dockerd", env={"DOCKER_TLS_CERTDIR": "/nonexistent-certs"}))
    assert set(ev.iptables) == {"nft", "legacy"}
    assert ev.data_root_fs is not None
    assert ev.tls_state == "new"
    assert "127.0.0.1" in ev.addresses
    if ev.mtus:
        iface, value = next(iter(ev.mtus.items()))
        assert Path(f"/sys/class/net/{iface}/mtu").read_text().strip() == str(value)


@root_only
def test_reading_the_iptables_evidence_creates_no_table() -> None:
    """``iptables-legacy -t nat -S`` would create the legacy nat table in the namespace it
    asks about: the evidence is read without it (found by the e2e iptables tests)."""
    probe = (
        "from dind.daemon.detect import read_backend as r; "
        "[r(b) for b in ('nft', 'legacy')]; "
        "print(repr(open('/proc/net/ip_tables_names').read()))"
    )
    out = subprocess.run(
        ["unshare", "--net", sys.executable, "-c", probe],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert out.stdout.strip() == "''"


# --- the start-up summary (issue 20): read off the plan, nothing decided twice ----------


def test_the_summary_says_each_decision_as_the_plan_made_it() -> None:
    from dind.summary import decisions, line

    ev = evidence(
        tls_state="managed",
        route=(ROUTES / "host-vm").read_text(),
        mtus={"eth0": 1400},
        dockerd_version="Docker version 26.1.5+dfsg1, build a72d7cd",
        iptables={"nft": Backend(NFT.tools, 6, None), "legacy": LEGACY},
    )
    s = settings("dockerd", env={"DOCKER_TLS_CERTDIR": "/certs"})
    plan = plan_for(s, ev)
    decided = decisions(plan)
    assert decided == {
        "tls": "on 2376, /certs (keys kept, certificates renewed)",
        "iptables": "nf_tables (6 rule(s) in nf_tables, 0 in the legacy tables)",
        "mtu": "1400 (the default route leaves by eth0, MTU 1400; also the default of "
        "user-defined bridge networks)",
        "data_root": "/var/lib/docker on ext4",
        "nested_cgroups": "not looked at (--skip cgroup-confine)",
    }
    # the same decisions the plan acts on: its flags and its links
    assert plan.command[plan.command.index("--mtu") + 1] == "1400"
    (links,) = of(plan, "iptables")
    assert isinstance(links, LinkTools) and dict(links.links)["iptables"].endswith("-nft")
    assert line(decided).startswith("dockerd: TLS on 2376, /certs (keys kept, certificates")
    assert "; iptables nf_tables (6 rule(s)" in line(decided)
    assert "; MTU 1400 (" in line(decided) and "; data root /var/lib/docker on ext4; " in line(
        decided
    )


@pytest.mark.parametrize(
    ("env", "command", "field", "said"),
    [
        ({}, ("dockerd",), "tls", "off (DOCKER_TLS_CERTDIR is not set: the unix socket only)"),
        (
            {"DOCKER_TLS_CERTDIR": ""},
            ("dockerd",),
            "tls",
            "off (DOCKER_TLS_CERTDIR is empty: TLS off, plain TCP on 2375 (--tls=false))",
        ),
        ({"DOCKER_TLS_CERTDIR": "/c"}, ("dockerd",), "tls", "on 2376, /c (a new CA and keys)"),
        (
            {},
            ("dockerd", "--iptables=false"),
            "iptables",
            "off (dockerd runs with --iptables=false)",
        ),
        ({"DIND_IPTABLES": "legacy"}, ("dockerd",), "iptables", "legacy (DIND_IPTABLES=legacy)"),
        ({"DIND_MTU": "off"}, ("dockerd",), "mtu", "dockerd's default (DIND_MTU=off)"),
        ({}, ("dockerd", "--mtu", "1300"), "mtu", "1300 (dockerd's own --mtu 1300)"),
        (
            {"DIND_DATA_ROOT_CHECK": "0"},
            ("dockerd",),
            "data_root",
            "/var/lib/docker on ext4 (DIND_DATA_ROOT_CHECK=0)",
        ),
        ({"DIND_SKIP": "mtu"}, ("dockerd",), "mtu", "not decided (--skip mtu)"),
    ],
)
def test_the_summary_in_each_case(
    env: dict[str, str], command: tuple[str, ...], field: str, said: str
) -> None:
    from dind.summary import decisions

    ev = evidence(tls_state="new", mtus={"eth0": 1400})
    s = from_sources(list(command), {}, {"DIND_SKIP": ",".join(KERNEL_STEPS), **env})
    if "DIND_SKIP" in env:
        s = from_sources(list(command), {"skip": (*KERNEL_STEPS, env["DIND_SKIP"])}, env)
    assert decisions(plan_for(s, ev))[field] == said


def test_the_summary_says_where_nested_cgroups_land_as_cgroup_confine_decided() -> None:
    from dind.proccgroup import parse
    from dind.summary import decisions

    hierarchies = parse(fixture_text("container-v1-hostns", "proc_1_cgroup"))
    table = mountinfo.MountTable(mountinfo.parse(fixture_text("container-v1-hostns", "mountinfo")))
    s = from_sources(["dockerd"], {}, {})
    facts = Facts(
        hierarchies=hierarchies,
        mounts=table,
        own_cgroups=hierarchies,
        cgroupns=True,
        daemon=daemon_facts(evidence(), s),
    )
    said = decisions(make_plan(facts, s))["nested_cgroups"]
    assert said.startswith("inside (a cgroup namespace of dind's own: this container's group")
    facts.cgroupns = False  # no cgroup namespaces: dockerd's --cgroup-parent instead
    said = decisions(make_plan(facts, s))["nested_cgroups"]
    assert said.startswith("inside (dockerd --cgroup-parent /docker/") and said.endswith("/docker)")
