"""``dind --check``: the parsers, the analysis of real captures, and real runs in namespaces.

The captures under fixtures/check/ were taken for real on this kind of machine
(see the README there and capture.py); a few tests change one documented file of a
capture to reach what no machine here shows (AppArmor, SELinux, Sysbox).
"""

from __future__ import annotations

import copy
import json
import os
import shlex
import subprocess
from pathlib import Path

import pytest

from dind import detect, procfs
from dind.check.analyse import analyse
from dind.check.capture import load, save
from dind.check.env import Env, cgroup_namespace
from dind.check.gather import gather
from dind.check.model import Namespace, Snapshot
from dind.check.predict import OUTCOMES
from dind.check.report import AREAS, LEVELS, Report, render_json, render_text
from dind.facts import Evidence, from_evidence
from dind.namespaces import is_initial
from dind.plan import make_plan
from dind.settings import Settings, from_sources
from dind.steps import STEPS
from tests.conftest import DIND, IS_ROOT, clean_env, hugetlb_group, root_only, run_dind

CAPTURES = Path(__file__).parent / "fixtures" / "check"
ENVIRONMENTS = sorted(p.name for p in CAPTURES.iterdir() if (p / "probes.json").exists())
HOST_CAPS = "000001fffeffffff"
DOCKER_DEFAULT_CAPS = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_RAW",
    "CAP_SYS_CHROOT",
    "CAP_MKNOD",
    "CAP_AUDIT_WRITE",
    "CAP_SETFCAP",
]
"""``capsh --decode=a80425fb``: docker's default set, as captured in container-unprivileged."""


def snap(name: str) -> Snapshot:
    return load(str(CAPTURES / name))


def changed(name: str, files: dict[str, str | None] | None = None, **fields: object) -> Snapshot:
    """A capture with some files replaced (None removes one) or probe fields changed."""
    s = copy.deepcopy(snap(name))
    for path, text in (files or {}).items():
        if text is None:
            s.files.pop(path, None)
        else:
            s.files[path] = text
    for key, value in fields.items():
        setattr(s.evidence if key in Evidence.__slots__ else s, key, value)
    return s


def analyse_as(
    s: Snapshot, skip: frozenset[str] = frozenset(), strict: bool = False, allow_host: bool = False
) -> Report:
    """The report ``dind --check`` prints for ``s`` with these options."""
    settings = Settings(command=[], check=True, skip=skip, strict=strict, allow_host=allow_host)
    return analyse(s, settings)


def levels(report: Report) -> dict[tuple[str, str], str]:
    """(area, name) → level, for every finding that is not ok (each of which says a fix)."""
    for f in report.findings:
        assert f.meaning and (f.fix or f.level == "ok"), f
    return {(f.area, f.name): f.level for f in report.findings if f.level != "ok"}


def rows(report: Report) -> list[dict[str, object]]:
    plan = report.sections["plan"]
    assert isinstance(plan, list)
    return plan


def outcomes(report: Report) -> dict[str, list[str]]:
    """Step → outcomes of its actions, in plan order."""
    out: dict[str, list[str]] = {}
    for row in rows(report):
        out.setdefault(str(row["step"]), []).append(str(row["outcome"]))
    return out


def section(report: Report, area: str) -> dict[str, object]:
    value = report.sections[area]
    assert isinstance(value, dict)
    return value


# --- parsers ---------------------------------------------------------------------


def test_capabilities_are_decoded_by_bit() -> None:
    host = procfs.cap_names(int(HOST_CAPS, 16))
    assert len(host) == 40
    assert "CAP_SYS_RESOURCE" not in host
    assert host[-1] == "CAP_CHECKPOINT_RESTORE"
    assert procfs.cap_names(0xA80425FB) == DOCKER_DEFAULT_CAPS
    assert procfs.cap_names(1 << 41 | 1 << 21) == ["CAP_SYS_ADMIN", "cap_41"]
    assert procfs.has_cap(0xA80425FB, "CAP_SYS_ADMIN") is False
    assert procfs.has_cap(None, "CAP_SYS_ADMIN") is None
    assert procfs.cap_mask("zz") is None


def test_status_fields_of_a_real_status() -> None:
    fields = procfs.status_fields(snap("container-unprivileged").files["/proc/self/status"])
    assert fields["CapEff"] == "00000000a80425fb"
    assert fields["CapBnd"] == "00000000a80425fb"


def test_id_maps() -> None:
    assert procfs.id_map("         0          0 4294967295\n") == procfs.FULL_ID_MAP
    rootless = procfs.id_map("0 1000 1\n1 100000 65536\n")
    assert rootless == [(0, 1000, 1), (1, 100000, 65536)]
    assert procfs.outside_id(rootless, 0) == 1000
    assert procfs.outside_id(rootless, 5) == 100004
    assert procfs.outside_id(rootless, 70000) is None
    assert procfs.id_map("0 0\n") is None


def test_initial_namespaces_have_fixed_numbers() -> None:
    assert is_initial("cgroup", "cgroup:[4026531835]") is True
    assert is_initial("pid", "pid:[4026531836]") is True
    assert is_initial("user", "user:[4026531837]") is True
    assert is_initial("cgroup", "cgroup:[4026532253]") is False
    assert is_initial("mnt", "mnt:[4026531832]") is None  # no fixed number on old kernels
    assert is_initial("cgroup", None) is None
    assert is_initial("cgroup", "cgroup:[x]") is None


def test_kernel_config_and_module_lists() -> None:
    config = procfs.kernel_config(snap("host-hybrid").files["/proc/config"])
    assert config["CONFIG_NF_TABLES"] == "y"
    assert config["CONFIG_MODULES"] == "n"
    assert config["CONFIG_LSM"].startswith("landlock,")
    listed = procfs.listed_modules(
        "kernel/net/netfilter/nf_tables.ko.xz: kernel/net/netfilter/nfnetlink.ko.xz\n"
        "kernel/net/ipv4/netfilter/ip_tables.ko\n"
        "kernel/net/netfilter/nft-compat.ko.zst:\n"
    )
    assert listed == {"nf_tables", "ip_tables", "nft_compat"}
    assert procfs.loaded_modules("nf_tables 266240 0 - Live 0x0\nx_tables 53248 1\n") == {
        "nf_tables",
        "x_tables",
    }


def test_filesystems_and_labels() -> None:
    types = procfs.filesystems(snap("host-hybrid").files["/proc/filesystems"])
    assert {"cgroup", "cgroup2", "tmpfs", "securityfs", "ext4"} <= types
    assert procfs.security_label("docker-default (enforce)\n") == "docker-default (enforce)"
    assert procfs.security_label("system_u:system_r:spc_t:s0\0") == "system_u:system_r:spc_t:s0"
    assert procfs.security_label("\0") is None


# --- captures --------------------------------------------------------------------


@pytest.mark.parametrize("name", ENVIRONMENTS)
def test_a_capture_survives_save_and_load(name: str, tmp_path: Path) -> None:
    original = snap(name)
    save(original, str(tmp_path))
    assert load(str(tmp_path)) == original


@pytest.mark.parametrize("name", ENVIRONMENTS)
def test_the_json_document_has_the_documented_keys(name: str) -> None:
    report = analyse_as(snap(name))
    doc = json.loads(render_json(report))
    assert list(doc) == ["ok", "blockers", "warnings", *AREAS, "findings"]
    assert doc["ok"] is (doc["blockers"] == 0) is report.ok
    assert set(doc["cgroup"]) == {
        "mode",
        "sys_fs_cgroup",
        "unified",
        "hierarchies",
        "controllers",
        "writable",
    }
    assert set(doc["namespaces"]) == {
        "cgroup",
        "cgroup_evidence",
        "pid",
        "user",
        "links",
        "owners",
        "nested_cgroups",
        "nested_cgroups_evidence",
    }
    assert doc["namespaces"]["nested_cgroups"] in ("inside", "outside", "unknown")
    assert set(doc["privilege"]) == {
        "level",
        "level_evidence",
        "nested",
        "euid",
        "cap_sys_admin",
        "effective",
        "bounding",
        "seccomp",
        "seccomp_filters",
        "no_new_privs",
        "label",
        "masked",
        "read_only",
        "devices",
        "user_namespace",
        "root_outside",
        "net_namespace",
        "tun",
        "fuse",
        "keyring",
        "pivot_root",
        "cgroup_owner",
        "uid_map",
        "rootless",
        "sysbox",
        "can_mount",
    }
    assert doc["privilege"]["level"] in ("privileged", "capabilities", "user-namespace", "none")
    assert list(doc["privilege"]["nested"]) == ["run", "build", "ports", "limits", "privileged"]
    for ability in doc["privilege"]["nested"].values():
        assert set(ability) == {"can", "why", "missing", "host"} and ability["why"]
    assert set(doc["mounts"]) == {"root_propagation", "securityfs", "securityfs_dir", "tmp"}
    assert set(doc["processes"]) == {"pid1", "root_group"}
    assert set(doc["network"]) == {
        "backend",
        "nf_tables",
        "ip_tables",
        "legacy_tables",
        "ip_forward",
        "ip_forward_writable",
        "cap_net_admin",
    }
    assert set(doc["lsm"]) == {"active", "apparmor", "selinux"}
    for row in doc["plan"]:
        assert {"step", "action", "status", "describe", "outcome", "why"} <= set(row)
        assert row["outcome"] in OUTCOMES
    for finding in doc["findings"]:
        assert list(finding) == ["area", "name", "level", "value", "meaning", "fix"]
        assert finding["area"] in AREAS and finding["level"] in LEVELS
        assert finding["meaning"]
        assert finding["fix"] or finding["level"] == "ok"
    assert doc["blockers"] == sum(f["level"] == "blocker" for f in doc["findings"])
    names = [(f["area"], f["name"]) for f in doc["findings"]]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("name", ENVIRONMENTS)
def test_the_text_report_ends_with_the_verdict(name: str) -> None:
    report = analyse_as(snap(name))
    text = render_text(report)
    last = text.splitlines()[-1]
    assert last.startswith("result: nested Docker " + ("can" if report.ok else "cannot"))
    for f in report.findings:
        assert f"  {f.level:<9} {f.name}: {f.value}" in text
    for f in report.blockers:
        assert f.area in last


V1_VIEWS = [
    n
    for n in ENVIRONMENTS
    if snap(n).evidence.statfs["/sys/fs/cgroup"] != "cgroup2" and snap(n).evidence.container is None
]
"""Captures whose $container (read live by a dry run) was unset, as it is here."""


@pytest.mark.parametrize("name", V1_VIEWS)
def test_the_plan_is_what_dry_run_plans_from_the_same_tables(name: str, tmp_path: Path) -> None:
    """``dind --dry-run --mountinfo --proc-cgroup`` on the capture's files plans the same actions.

    Only where the rest of what dind.detect reads live (/sys/kernel/security, $container)
    is as it was in the capture, and /sys/fs/cgroup was not cgroup2 (its controllers would
    be read live). The cgroup root is one no run has made (the machine's own /cgroup may
    exist), and confinement is skipped: a dry run of capture files has PID 1's cgroup to
    go by, a capture the capturing process's own; nor can it tell the host (the check's
    host refusal is left out).
    """
    root = str(tmp_path / "never-made")
    s = changed(name, cgroup_root=root)
    ev = s.evidence
    assert (ev.root_entries, ev.securityfs_dir, ev.container) == (None, True, None)
    dry = run_dind(
        "--dry-run",
        "--log-format",
        "json",
        "--cgroup-root",
        root,
        "--skip",
        "cgroup-confine",
        "--mountinfo",
        str(CAPTURES / name / "proc/self/mountinfo"),
        "--proc-cgroup",
        str(CAPTURES / name / "proc/1/cgroup"),
    )
    assert dry.returncode == 0, dry.stderr
    expected = [json.loads(line) for line in dry.stdout.splitlines()]
    # What the capture knows of its privilege (a user namespace, no CAP_SYS_ADMIN) capture
    # files given to --dry-run do not say: --check plans those steps skipped, with the
    # reason; the dry run of the bare tables, pending.
    planned_rows = rows(analyse_as(s, frozenset({"cgroup-confine"})))
    by_target = {(r["step"], r.get("target"), r["action"]): r for r in planned_rows}
    for i, row in enumerate(expected):
        known = by_target.get((row["step"], row.get("target"), row["action"]))
        if known is not None and known["status"] == "skipped" and row["status"] == "pending":
            assert "user namespace" in str(known["note"]) or "CAP_SYS_ADMIN" in str(known["note"])
            expected[i] = {**row, "status": "skipped", "note": known["note"]}
    extra = {"describe", "outcome", "why", "errno"}
    planned = [r for r in rows(analyse_as(s, frozenset({"cgroup-confine"}))) if r["step"] != "host"]
    assert [{k: v for k, v in r.items() if k not in extra} for r in planned] == expected


def test_check_returns_1_exactly_when_the_report_has_a_blocker(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from dind.check import check
    from dind.log import Log

    text, status = check(from_sources([], {"check": True, "log_format": "json"}), Log())
    doc = json.loads(text)
    assert status == (0 if doc["ok"] else 1)
    assert doc["ok"] is (not [f for f in doc["findings"] if f["level"] == "blocker"])


def test_host_hybrid() -> None:
    """On the host itself, a real run would refuse (a blocker); with --allow-host it works."""
    refused = analyse_as(snap("host-hybrid"))
    assert [(f.area, f.name) for f in refused.blockers] == [("plan", "host")]
    assert "the host's own mount namespace" in refused.blockers[0].meaning
    steps = outcomes(refused)
    assert steps.pop("host") == ["fails"]
    assert all(o == ["not-reached"] * len(o) for o in steps.values())
    report = analyse_as(snap("host-hybrid"), allow_host=True)
    assert report.ok
    cgroup = section(report, "cgroup")
    assert (cgroup["mode"], cgroup["sys_fs_cgroup"], cgroup["unified"]) == (
        "hybrid",
        "tmpfs",
        "cgroup2",
    )
    assert cgroup["controllers"] == {
        "v1": [
            "name=systemd",
            "pids",
            "blkio",
            "freezer",
            "devices",
            "memory",
            "cpuset",
            "cpuacct",
            "cpu",
        ],
        "v2": ["hugetlb"],
    }
    ns = section(report, "namespaces")
    assert (ns["cgroup"], ns["pid"], ns["user"]) == ("host", "host", "initial")
    assert "the host itself" in str(ns["cgroup_evidence"])
    assert levels(report) == {
        ("privilege", "nested_privileged"): "warning",
        ("plan", "tmp-warning"): "warning",
    }
    assert set(outcomes(report)) == {
        "host",
        "environment",
        "securityfs",
        "tmp",
        "cgroup-confine",
        "cgroup-mounts",
        "rshared",
    }
    planned = outcomes(report)
    assert planned.pop("host") == ["done"]  # --allow-host, said out loud
    assert all(o == "will-do" for steps in planned.values() for o in steps)
    assert section(report, "processes")["root_group"] is None
    moved = report.find("processes", "root_group")
    assert moved is not None and "only when /sys/fs/cgroup is cgroup2" in moved.meaning
    network = section(report, "network")
    assert (network["backend"], network["nf_tables"], network["ip_tables"]) == (
        "nf_tables",
        "built-in",
        "loaded",
    )


def test_host_v1_view() -> None:
    report = analyse_as(snap("host-v1-view"))
    assert report.ok
    cgroup = section(report, "cgroup")
    # Unmounted, .../unified stays a directory of the tmpfs.
    assert (cgroup["mode"], cgroup["unified"]) == ("v1", "tmpfs")


def test_v2_in_the_host_cgroup_namespace_at_its_root_warns_about_the_hosts_processes() -> None:
    """The capturing process sits in the unified root group: nested groups land inside it,
    but nesting would move the host's processes (the hidden v1 mounts are left alone)."""
    s = snap("host-v2-hostns")
    report = analyse_as(s)
    assert report.ok
    assert section(report, "cgroup")["mode"] == "v2"
    assert section(report, "namespaces")["nested_cgroups"] == "inside"
    assert outcomes(report)["cgroup-confine"] == ["will-do"]  # unshare: memory is not at /
    # hugetlb is already delegated at this root: nesting is done and moves nothing.
    assert outcomes(report)["cgroup-nesting"] == ["done"]
    group = section(report, "processes")["root_group"]
    assert isinstance(group, dict)
    assert group["count"] == len(s.files["/sys/fs/cgroup/cgroup.procs"].split())
    assert group["outside_pid_namespace"] == 0
    assert ("processes", "root_group") not in levels(report)
    # A capture's cgroup.procs is input: digits by Unicode only ('²') are no PID.
    procs = s.files["/sys/fs/cgroup/cgroup.procs"]
    odd = analyse_as(changed("host-v2-hostns", {"/sys/fs/cgroup/cgroup.procs": procs + "\u00b2\n"}))
    assert section(odd, "processes")["root_group"] == group
    # Not yet delegated: nesting would move the host's processes.
    pending = changed("host-v2-hostns", {"/sys/fs/cgroup/cgroup.subtree_control": ""})
    report = analyse_as(pending)
    assert outcomes(report)["cgroup-nesting"] == ["will-do"]
    assert levels(report)[("processes", "root_group")] == "warning"
    assert "host's root group" in str(rows(report)[-2]["why"])


def test_v2_with_a_process_outside_the_pid_namespace() -> None:
    report = analyse_as(snap("v2-pid-outside"))
    assert report.ok  # nesting is best effort
    nest = next(r for r in rows(report) if r["step"] == "cgroup-nesting")
    assert (nest["outcome"], nest["errno"]) == ("fails", "EBUSY")
    assert levels(report)[("plan", "cgroup-nesting")] == "warning"
    assert levels(report)[("processes", "root_group")] == "warning"
    group = section(report, "processes")["root_group"]
    assert isinstance(group, dict) and group["outside_pid_namespace"] == 1
    assert section(report, "namespaces")["cgroup"] == "private"
    strict = analyse_as(snap("v2-pid-outside"), strict=True)
    assert not strict.ok
    assert levels(strict)[("plan", "cgroup-nesting")] == "blocker"
    assert outcomes(strict)["rshared"] == ["not-reached"]


def test_privileged_container_in_the_host_cgroup_namespace() -> None:
    report = analyse_as(snap("container-v1-hostns"))
    assert report.ok
    assert section(report, "cgroup")["mode"] == "v1"
    assert section(report, "cgroup")["writable"] is True
    ns = section(report, "namespaces")
    assert (ns["cgroup"], ns["pid"]) == ("host", "private")
    assert "host itself" not in str(ns["cgroup_evidence"])
    # docker bind-mounts each hierarchy from the container's own group: nested ones land inside.
    assert ns["nested_cgroups"] == "inside"
    assert not [k for k in levels(report) if k[0] == "namespaces"]


def test_privileged_container_with_a_private_cgroup_namespace() -> None:
    report = analyse_as(snap("container-v1-privatens"))
    assert report.ok
    assert section(report, "namespaces")["cgroup"] == "private"
    assert levels(report) == {("privilege", "nested_privileged"): "warning"}
    assert section(report, "privilege")["bounding"] == procfs.cap_names(0x3FFEFFFFFF)


def test_privileged_container_with_a_cgroup_v2_view() -> None:
    report = analyse_as(snap("container-v2-view"))
    assert report.ok
    assert section(report, "cgroup")["mode"] == "v2"
    assert section(report, "namespaces")["cgroup"] == "private"
    nest = next(r for r in rows(report) if r["step"] == "cgroup-nesting")
    assert nest["outcome"] == "will-do"
    assert nest["why"] == "moves 2 process(es) into init/"
    group = section(report, "processes")["root_group"]
    assert isinstance(group, dict)
    assert [p["name"] for p in group["processes"]] == ["sleep", "python3"]


def test_unprivileged_container_is_blocked_by_the_missing_cap_sys_admin() -> None:
    # /.dockerenv, which the capture predates recording: the runtime is docker.
    report = analyse_as(changed("container-unprivileged", runtime={"markers": ["/.dockerenv"]}))
    assert not report.ok
    assert {(f.area, f.name) for f in report.blockers} == {
        ("privilege", "cap_sys_admin"),
        ("privilege", "cap_net_admin"),
        ("plan", "securityfs"),
        ("network", "ip_forward"),
    }
    # Each fix is the least option, in docker's words (docker's markers are in the capture).
    fixes = {f.name: f.fix for f in report.blockers}
    assert fixes["cap_sys_admin"] == "docker run --cap-add SYS_ADMIN"
    assert fixes["cap_net_admin"] == "docker run --cap-add NET_ADMIN"
    assert fixes["securityfs"] == "docker run --cap-add SYS_ADMIN"
    assert not [f for f in report.findings if "--privileged" in f.fix]
    cap = report.find("privilege", "cap_sys_admin")
    assert cap is not None and cap.value == "CAP_SYS_ADMIN missing"
    assert section(report, "privilege")["level"] == "none"
    # Without the marker, its cgroup path reads as containerd's: the fix in ctr's words.
    as_ctr = analyse_as(snap("container-unprivileged")).find("privilege", "cap_sys_admin")
    assert as_ctr is not None and as_ctr.fix == "ctr run --cap-add CAP_SYS_ADMIN"
    securityfs = report.find("plan", "securityfs")
    assert securityfs is not None and "--skip" not in securityfs.fix  # every mount fails
    assert section(report, "privilege")["effective"] == DOCKER_DEFAULT_CAPS
    assert section(report, "cgroup")["writable"] is False
    assert outcomes(report)["cgroup-mounts"][0] == "not-reached"
    assert "privilege: CAP_SYS_ADMIN missing" in render_text(report).splitlines()[-1]


def test_user_namespace_without_its_own_mount_namespace() -> None:
    report = analyse_as(snap("userns"))
    assert not report.ok
    assert section(report, "namespaces")["user"] == "child"
    assert section(report, "namespaces")["owners"] == {
        "cgroup": "ancestor",
        "mnt": "ancestor",
        "net": "ancestor",
        "pid": "ancestor",
    }
    assert section(report, "privilege")["uid_map"] == "0 0 1"
    assert {(f.area, f.name) for f in report.blockers} == {
        ("privilege", "mount_namespace"),
        ("plan", "host"),  # the host's mount namespace: dind refuses before trying a mount
    }


def test_user_namespace_owning_its_mount_and_cgroup_namespaces() -> None:
    """Every mount works there but securityfs, which dind plans skipped (not attempted)."""
    report = analyse_as(snap("userns-mntns-cgroupns"))
    assert report.ok
    securityfs = next(r for r in rows(report) if r["step"] == "securityfs")
    assert (securityfs["status"], securityfs["outcome"]) == ("skipped", "skipped")
    assert "cannot be mounted in a user namespace" in str(securityfs["why"])
    assert set(outcomes(report)["cgroup-mounts"]) == {"will-do"}
    assert section(report, "privilege")["level"] == "user-namespace"
    assert levels(report)[("privilege", "user_namespace")] == "warning"
    assert section(report, "namespaces")["cgroup"] == "private"


def test_legacy_tables_in_use_are_left_to_dinds_iptables_step() -> None:
    """Legacy tables here: dind dockerd picks the backend; skipped, the old advice stands."""
    report = analyse_as(snap("netns-legacy-tables"))
    network = section(report, "network")
    assert network["backend"] == "legacy"
    assert network["legacy_tables"] == {"ip": ["nat"], "ip6": [], "arp": []}
    assert ("network", "iptables") not in levels(report)
    skipped = analyse_as(snap("netns-legacy-tables"), frozenset({"iptables"}))
    assert levels(skipped)[("network", "iptables")] == "warning"
    assert "iptables-legacy" in str(skipped.find("network", "iptables").fix)  # type: ignore[union-attr]


def test_read_only_root_blocks_the_required_step() -> None:
    report = analyse_as(snap("readonly-root"))
    assert not report.ok
    (blocker,) = report.blockers
    assert (blocker.area, blocker.name) == ("plan", "cgroup-mounts")
    assert blocker.value.startswith("mkdir /cgroup: EROFS")
    assert "--cgroup-root" in blocker.fix
    mounts = outcomes(report)["cgroup-mounts"]
    assert mounts == ["fails"] + ["not-reached"] * (len(mounts) - 1)
    assert outcomes(report)["rshared"] == ["not-reached"]
    # A cgroup root on a writable filesystem avoids it.
    writable = changed("readonly-root", cgroup_root="/mnt/rw/cgroup", writable={"/mnt/rw": True})
    assert analyse_as(writable).ok


def test_skipped_steps_leave_the_plan_as_dry_run_leaves_it() -> None:
    report = analyse_as(snap("container-unprivileged"), frozenset(STEPS))
    assert outcomes(report) == {"environment": ["will-do"]}
    # CAP_SYS_ADMIN and CAP_NET_ADMIN missing; and with net-sysctls skipped, nothing makes
    # the read-only ip_forward (0 here) writable for a nested dockerd.
    assert {(f.area, f.name) for f in report.blockers} == {
        ("privilege", "cap_sys_admin"),
        ("privilege", "cap_net_admin"),
        ("network", "ip_forward"),
    }
    forward = report.find("network", "ip_forward")
    assert forward is not None and forward.fix == "do not --skip net-sysctls"
    assert levels(report)[("mounts", "root_propagation")] == "warning"


# --- documented formats on real captures -------------------------------------------


def test_apparmor_docker_default_denies_every_mount() -> None:
    """``docker run --cap-add SYS_ADMIN`` on an AppArmor host: the profile's ``deny mount``."""
    s = changed(
        "container-v1-privatens",
        {
            "/sys/module/apparmor/parameters/enabled": "Y\n",
            "/proc/self/attr/current": "docker-default (enforce)\n",
        },
    )
    report = analyse_as(s)
    assert {(f.area, f.name) for f in report.blockers} == {
        ("lsm", "apparmor"),
        ("plan", "securityfs"),
    }
    row = rows(report)[1]
    assert (row["outcome"], row["errno"]) == ("fails", "EACCES")
    assert section(report, "lsm")["apparmor"] == {
        "enabled": True,
        "profile": "docker-default (enforce)",
    }


def test_apparmor_unconfined_needs_securityfs() -> None:
    files: dict[str, str | None] = {
        "/sys/module/apparmor/parameters/enabled": "Y\n",
        "/proc/self/attr/current": "unconfined\n",
    }
    report = analyse_as(changed("container-v1-privatens", files))
    assert report.ok and ("lsm", "apparmor") not in levels(report)
    skipped = analyse_as(changed("container-v1-privatens", files), frozenset({"securityfs"}))
    assert levels(skipped)[("mounts", "securityfs")] == "warning"
    assert levels(analyse_as(snap("container-v1-privatens"), frozenset({"securityfs"}))) == {
        ("privilege", "nested_privileged"): "warning"
    }


def test_selinux_container_t_is_a_warning() -> None:
    s = changed(
        "container-v1-privatens",
        {
            "/sys/fs/selinux/enforce": "1",
            "/proc/self/attr/current": "system_u:system_r:container_t:s0:c12,c34\0",
        },
    )
    s.errors.pop("/proc/self/attr/current", None)
    report = analyse_as(s)
    assert levels(report)[("lsm", "selinux")] == "warning"
    assert section(report, "lsm")["selinux"] == {
        "enabled": True,
        "enforcing": True,
        "label": "system_u:system_r:container_t:s0:c12,c34",
    }


def test_sysbox_is_recognised_by_its_sysboxfs_mounts() -> None:
    """The mount shape of `findmnt` in a Sysbox container (nestybox/sysbox issue reports)."""
    s = snap("container-v1-privatens")
    line = (
        "300 137 0:60 /sys/kernel /sys/kernel rw,nosuid,nodev,relatime - fuse sysboxfs "
        "rw,user_id=0,group_id=0,default_permissions,allow_other\n"
    )
    s.files["/proc/self/mountinfo"] += line
    report = analyse_as(s)
    assert section(report, "privilege")["sysbox"] is True
    assert levels(report)[("privilege", "sysbox")] == "warning"


def test_root_of_a_user_namespace_is_the_user_namespace_level_and_rootless_is_the_euid() -> None:
    """Root mapped to UID 1000 (rootlesskit's namespace): root here, a user namespace's."""
    s = changed("userns-mntns-cgroupns", {"/proc/self/uid_map": "0 1000 1\n1 100000 65536\n"})
    report = analyse_as(s)
    privilege = section(report, "privilege")
    assert (privilege["level"], privilege["root_outside"], privilege["rootless"]) == (
        "user-namespace",
        1000,
        False,
    )
    assert "UID 1000 outside" in str(privilege["level_evidence"])
    unprivileged = analyse_as(changed("userns-mntns-cgroupns", euid=1000))
    rootless = unprivileged.find("privilege", "rootless")
    assert rootless is not None and rootless.value == "yes (euid 1000, root is UID 0 outside)"


def test_read_only_cgroup2_blocks_nesting_and_dockerd() -> None:
    s = snap("container-v2-view")
    s.writable["/sys/fs/cgroup"] = False
    report = analyse_as(s)
    assert levels(report)[("cgroup", "writable")] == "blocker"
    nest = next(r for r in rows(report) if r["step"] == "cgroup-nesting")
    assert (nest["outcome"], nest["errno"]) == ("fails", "EROFS")


def test_no_controllers_delegated_is_a_warning() -> None:
    report = analyse_as(changed("container-v2-view", {"/sys/fs/cgroup/cgroup.controllers": "\n"}))
    assert levels(report)[("cgroup", "controllers")] == "warning"


def test_conflict_in_the_cgroup_root_is_reported() -> None:
    """--cgroup-root on a cgroup mount: the plan's conflict, which apply leaves with a warning."""
    conflict = changed("host-hybrid", cgroup_root="/sys/fs/cgroup/cpu", root_entries={})
    report = analyse_as(conflict, allow_host=True)
    assert report.ok
    assert levels(report)[("plan", "cgroup-mounts")] == "warning"
    assert "conflict" in outcomes(report)["cgroup-mounts"]


def test_what_cannot_be_predicted_is_a_warning_that_says_so() -> None:
    s = snap("userns-mntns-cgroupns")
    s.namespaces["mnt"] = Namespace(s.namespaces["mnt"].link, None)
    report = analyse_as(s, frozenset({"securityfs"}))
    assert report.ok
    assert levels(report)[("privilege", "can_mount")] == "warning"
    tmp = report.find("plan", "tmp")
    assert tmp is not None and tmp.level == "warning"
    assert "if it fails, dind stops (exit 125)" in tmp.meaning  # the first mount
    assert set(outcomes(report)["cgroup-mounts"]) == {"may-fail", "will-do"}
    assert [f.name for f in report.findings].count("cgroup-mounts") == 1
    # securityfs is skipped in any user namespace, known owner or not.
    assert outcomes(analyse_as(s))["securityfs"] == ["skipped"]
    # The cgroup root's parent was not probed.
    unprobed = changed("readonly-root", writable={})
    mkdir = analyse_as(unprobed).find("plan", "cgroup-mounts")
    assert mkdir is not None and mkdir.level == "warning"
    assert mkdir.value == "mkdir /cgroup: may fail: whether / is writable is unknown"


# --- the cgroup namespace verdict ----------------------------------------------------


def _namespace_of(name: str, link: str | None) -> tuple[str, str]:
    env = Env(snap(name))
    return cgroup_namespace(link, env.own_cgroups, env.mounts, env.init_at_root)


def test_cgroup_namespace_from_mount_roots_when_its_number_is_unknown() -> None:
    # Docker's host namespace: hierarchies bind-mounted from the container's own group.
    kind, evidence = _namespace_of("container-v1-hostns", None)
    assert kind == "host" and "/sys/fs/cgroup/cpu is mounted from /dind-test-" in evidence
    # A tree mounted from outside the namespace shows a root of /..
    kind, evidence = _namespace_of("v2-pid-outside", None)
    assert kind == "private" and "/.." in evidence
    # Every root and path is /: the host's root group looks just the same.
    assert _namespace_of("container-v1-privatens", None)[0] == "unknown"


def test_cgroup_namespace_number_decides() -> None:
    assert _namespace_of("container-v1-privatens", "cgroup:[4026532253]")[0] == "private"
    assert _namespace_of("container-v1-hostns", "cgroup:[4026531835]")[0] == "host"
    # Not the initial namespace, yet mounted from this process's own group: a parent's.
    kind, evidence = _namespace_of("container-v1-hostns", "cgroup:[4026532999]")
    assert kind == "host" and "whoever started this container" in evidence


def test_unknown_cgroup_namespace_is_reported_and_landing_decided_from_the_mounts() -> None:
    s = snap("container-v2-view")
    s.namespaces["cgroup"] = Namespace(None)
    s.files["/proc/self/cgroup"] = "0::/\n"
    report = analyse_as(s)
    assert section(report, "namespaces")["cgroup"] == "unknown"
    assert section(report, "namespaces")["nested_cgroups"] == "inside"
    assert not [k for k in levels(report) if k[0] == "namespaces"]
    del s.files["/proc/self/cgroup"]
    unknown = analyse_as(s)
    assert section(unknown, "namespaces")["nested_cgroups"] == "unknown"
    assert levels(unknown)[("namespaces", "nested_cgroups")] == "warning"


# --- unreadable inputs ---------------------------------------------------------------


def test_missing_proc_files_are_blockers_not_crashes() -> None:
    s = changed("host-hybrid", {"/proc/1/cgroup": None, "/proc/self/mountinfo": None})
    report = analyse_as(s)
    assert {(f.area, f.name) for f in report.blockers} == {
        ("cgroup", "mode"),
        ("mounts", "mountinfo"),
    }
    assert report.sections["plan"] is None
    json.loads(render_json(report))
    assert render_text(report).splitlines()[-1].startswith("result: nested Docker cannot")


def test_a_malformed_mountinfo_names_the_line() -> None:
    report = analyse_as(changed("host-hybrid", {"/proc/self/mountinfo": "1 2 3\n"}))
    finding = report.find("mounts", "mountinfo")
    assert finding is not None and finding.level == "blocker"
    assert "/proc/self/mountinfo:1" in finding.meaning


def test_nothing_readable_gives_unknowns() -> None:
    report = analyse_as(Snapshot(evidence=Evidence(files={})))
    assert levels(report)[("privilege", "user_namespace")] == "warning"
    assert not report.ok
    assert section(report, "namespaces")["cgroup"] == "unknown"
    assert section(report, "privilege")["cap_sys_admin"] is None
    assert section(report, "network")["backend"] == "unknown"
    assert section(report, "lsm")["apparmor"] == {"enabled": None, "profile": None}


# --- the live system -------------------------------------------------------------------


@pytest.mark.parametrize(
    "skip",
    [
        frozenset(),
        frozenset({"tmp"}),
        frozenset({"securityfs", "rshared"}),
        frozenset({"cgroup-mounts"}),
        frozenset({"securityfs", "tmp", "cgroup-mounts", "rshared"}),
        frozenset(STEPS),
    ],
)
def test_check_plans_what_dry_run_plans_on_this_machine(skip: frozenset[str]) -> None:
    """``--check`` builds its Facts from a snapshot; they must give dind.detect's plan."""
    settings = from_sources([], {"dry_run": True, "skip": tuple(skip)})
    facts = from_evidence(detect.read(settings), settings)
    expected = make_plan(facts, settings)
    s = gather(settings)
    ours = from_evidence(s.evidence, settings)
    actual = make_plan(ours, settings)
    assert actual.actions == expected.actions
    if ours.tmp_entries == facts.tmp_entries:  # else /tmp changed between the two looks
        assert actual.warnings == expected.warnings


def test_gather_reads_this_machine() -> None:
    s = gather(from_sources([], {"check": True}))
    assert s.pid == os.getpid() and s.euid == os.geteuid()
    assert {"/proc/self/status", "/proc/self/mountinfo", "/proc/1/cgroup"} <= set(s.files)
    assert s.namespaces["cgroup"].link is not None
    assert 1 in s.processes
    assert s.release == os.uname().release
    if IS_ROOT:
        assert s.namespaces["mnt"].owner == "ours"


def test_the_capture_module_writes_a_loadable_capture(tmp_path: Path) -> None:
    out = tmp_path / "capture"
    subprocess.run(
        [str(Path(DIND).with_name("python")), "-m", "dind.check.capture", str(out)],
        check=True,
        cwd=Path(__file__).parent.parent,
    )
    report = analyse_as(load(str(out)))
    assert report.sections["plan"] is not None


def test_check_with_a_command_is_a_usage_error() -> None:
    result = run_dind("--check", "true")
    assert result.returncode == 2
    assert "--check takes no command" in result.stderr


# --- for real, as root, in namespaces -------------------------------------------------


@root_only
def test_check_in_a_private_mount_and_cgroup_namespace_exits_0() -> None:
    result = run_dind("--check", sandbox=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[-1].startswith("result: nested Docker can work here")
    assert "plan (as --dry-run prints it), with the outcome expected here:" in result.stdout
    by_env = run_dind(env={"DIND_CHECK": "1"}, sandbox=True)
    assert by_env.returncode == 0
    assert by_env.stdout.splitlines()[-1] == result.stdout.splitlines()[-1]


@root_only
def test_check_json_is_one_document_on_stdout() -> None:
    result = run_dind("--check", "--log-format", "json", "-vv", sandbox=True)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["ok"] is True and doc["blockers"] == 0
    assert doc["privilege"]["cap_sys_admin"] is True
    assert [r["outcome"] for r in doc["plan"]].count("fails") == 0
    for line in result.stderr.splitlines():  # logs stay on stderr, one JSON object each
        assert isinstance(json.loads(line), dict)


@root_only
def test_without_cap_sys_admin_check_exits_1_naming_it(capsh: str) -> None:
    argv = [capsh, "--drop=cap_sys_admin", "--", "-c", 'exec "$0" "$@"', DIND, "--check"]
    text = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert text.returncode == 1, text.stdout + text.stderr
    assert "blocker   cap_sys_admin: CAP_SYS_ADMIN missing" in text.stdout
    assert "privilege: CAP_SYS_ADMIN missing" in text.stdout.splitlines()[-1]
    as_json = subprocess.run(
        [*argv, "--log-format", "json"], capture_output=True, text=True, check=False
    )
    assert as_json.returncode == 1
    doc = json.loads(as_json.stdout)
    assert doc["ok"] is False and doc["privilege"]["cap_sys_admin"] is False
    assert {"area": "privilege", "name": "cap_sys_admin", "level": "blocker"}.items() <= next(
        f for f in doc["findings"] if f["name"] == "cap_sys_admin"
    ).items()


def _sandboxed(script: str, prefix: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*prefix, "sh", "-euc", script],
        env=clean_env(DIND=DIND),
        capture_output=True,
        text=True,
        check=False,
    )


UNSHARE = ["unshare", "--mount", "--cgroup", "--propagation", "private"]


@root_only
def test_check_changes_nothing(scratch: Path) -> None:
    root = scratch / "cgroup"
    result = _sandboxed(
        f"""cat /proc/self/mountinfo > {scratch}/before
        "$DIND" --check --cgroup-root {root} > /dev/null
        cat /proc/self/mountinfo > {scratch}/after
        echo "container=${{container:-unset}}" """,
        UNSHARE,
    )
    assert result.returncode == 0, result.stderr
    assert (scratch / "before").read_text() == (scratch / "after").read_text()
    assert not root.exists()
    assert result.stdout.strip() == "container=unset"


@root_only
def test_prediction_matches_reality_in_a_user_namespace(scratch: Path) -> None:
    """Owning its mount and cgroup namespaces, root can mount all but securityfs."""
    # --skip tmp throughout: the first real run's tmpfs on /tmp would hide a checkout that
    # lives there (and the dind the next lines start) from the rest of this sandbox.
    opts = f"--cgroup-root {scratch / 'cgroup'} --skip tmp"
    script = f"""
        set +e
        "$DIND" --check {opts} > {scratch}/check.txt; echo "check $?"
        "$DIND" {opts} -- true 2> {scratch}/real.err; echo "real $?"
        "$DIND" --check --skip securityfs {opts} > /dev/null; echo "check-skip $?"
        "$DIND" --skip securityfs {opts} -- true; echo "real-skip $?"
    """
    prefix = ["unshare", "--user", "--map-root-user", *UNSHARE[1:]]
    result = _sandboxed(script, prefix)
    codes = dict(line.split() for line in result.stdout.splitlines())
    # securityfs is planned skipped there (the kernel refuses it in a user namespace): the
    # run no longer stops at it, and --check says so; with --skip, the same.
    assert codes == {"check": "0", "real": "0", "check-skip": "0", "real-skip": "0"}, (
        result.stdout + result.stderr
    )
    check = (scratch / "check.txt").read_text()
    assert "securityfs      skipped     mount -t securityfs securityfs" in check
    assert "level: user-namespace" in check
    assert "mount -t securityfs" not in (scratch / "real.err").read_text()


@root_only
def test_user_namespace_without_a_mount_namespace_of_its_own_is_blocked() -> None:
    result = _sandboxed('exec "$DIND" --check', ["unshare", "--user", "--map-root-user"])
    assert result.returncode == 1, result.stdout + result.stderr
    assert "blocker   mount_namespace: owned by an ancestor user namespace" in result.stdout


@root_only
def test_prediction_matches_reality_on_a_read_only_root() -> None:
    """A cgroup root no run has made (the machine may hold a /cgroup from earlier runs)."""
    root = f"/dind-never-made-{os.getpid()}"
    result = _sandboxed(
        f"""mount -o remount,bind,ro /
        set +e
        "$DIND" --check --cgroup-root {root} > /dev/null; echo "check $?"
        "$DIND" --cgroup-root {root} -- true 2>&1 | tail -1; echo "real $?"
        """,
        UNSHARE,
    )
    lines = result.stdout.splitlines()
    assert lines[0] == "check 1", result.stdout + result.stderr
    assert f"mkdir {root}: Read-only file system [EROFS]" in lines[1]


@root_only
@pytest.mark.skipif(
    not Path("/sys/fs/cgroup/unified/cgroup.procs").exists(), reason="needs a hybrid host"
)
def test_prediction_matches_reality_for_nesting_with_a_process_outside(scratch: Path) -> None:
    """The unshare process stays outside the new PID namespace, in the group: EBUSY."""
    with hugetlb_group() as group:  # a controller to enable, else nesting has nothing to do
        inner = f"""mount -t cgroup2 cgroup2 /sys/fs/cgroup
            "$DIND" --check --log-format json --cgroup-root {scratch}/cg > {scratch}/check.json
            "$DIND" --cgroup-root {scratch}/cg -- true"""
        outer = (
            f"echo $$ > {group}/cgroup.procs && exec unshare --pid --fork --mount-proc "
            f"--cgroup --mount --propagation private sh -euc {shlex.quote(inner)}"
        )
        result = _sandboxed(outer, [])
    assert result.returncode == 0, result.stderr
    doc = json.loads((scratch / "check.json").read_text())
    nest = next(r for r in doc["plan"] if r["step"] == "cgroup-nesting")
    assert (nest["outcome"], nest["errno"]) == ("fails", "EBUSY")
    assert doc["processes"]["root_group"]["outside_pid_namespace"] == 1
    assert "pid 0 in cgroup.procs" in result.stderr  # the real run's warning agrees


def test_decoders_are_bounded_on_what_fuzzing_found() -> None:
    """Each of these looped forever, took quadratic time or raised before (atheris)."""
    from dind.namespaces import ns_inode

    assert procfs.cap_mask("-1") is None
    assert procfs.cap_mask("f" * (1 << 20)) is None
    assert len(procfs.cap_names((1 << 64) - 1)) == 64
    assert procfs.id_map("0 \u00b2 1\n") is None
    assert procfs.id_map("0 0 " + "9" * 5000) is None
    assert ns_inode("cgroup:[" + "9" * 5000 + "]") is None
    assert procfs.cap_last("99999999999") is None and procfs.cap_last("40") == 40
