"""dind for real, as root, in throwaway mount and cgroup namespaces.

Each test starts ``unshare --mount --cgroup --propagation private``; mounts made
there vanish with it. Directories dind creates on the real filesystem live under
a scratch directory that the fixture removes.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from dind import mountinfo, proccgroup
from dind.mountinfo import MountTable
from tests.conftest import DIND, UNIFIED, clean_env, hugetlb_group, root_only

pytestmark = root_only

UNSHARE = ["unshare", "--mount", "--cgroup", "--propagation", "private"]
MARK = "=== mountinfo ==="


def sandbox(
    script: str,
    *,
    env: dict[str, str] | None = None,
    timeout: float = 60,
    prefix: list[str] | None = None,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*(prefix or UNSHARE), "sh", "-euc", script],
        env=clean_env(**(env or {}), DIND=DIND),
        capture_output=True,
        text=True,
        errors="surrogateescape",
        timeout=timeout,
        check=False,
    )


def table_after(stdout: str) -> mountinfo.MountTable:
    text = stdout.split(MARK, 1)[1]
    return mountinfo.MountTable(mountinfo.parse(text, "sandbox mountinfo"))


def host_hierarchies() -> list[proccgroup.Hierarchy]:
    with open("/proc/1/cgroup") as f:
        return proccgroup.parse(f.read())


@pytest.fixture
def tmp_marker() -> Iterator[Path]:
    """A file in the real /tmp, so the tmp step always has something to hide."""
    marker = Path("/tmp") / f"dind-test-marker-{os.getpid()}"
    marker.write_text("")
    yield marker
    marker.unlink()


def test_every_step_for_real(scratch: Path, tmp_marker: Path) -> None:
    root = scratch / "cgroup"
    result = sandbox(
        f'''echo "$$"; exec "$DIND" --cgroup-root {root} -- sh -c '
            echo "$$ $container"
            mknod /tmp/null c 1 3 && head -c 0 /tmp/null
            stat -c %a /tmp {root}
            echo "{MARK}"; cat /proc/self/mountinfo' '''
    )
    assert result.returncode == 0, result.stderr
    # Silent on success but for the warning about what the new /tmp hides (the
    # marker fixture guarantees /tmp is not empty).
    (warning,) = result.stderr.splitlines()
    assert warning.startswith("dind: warning: the tmpfs on /tmp hides what /tmp holds now (")
    lines = result.stdout.split(MARK)[0].split("\n")
    shell_pid = lines[0]
    assert lines[1] == f"{shell_pid} docker"  # exec'd: same PID; container exported
    assert lines[2:4] == ["1777", "755"]
    table = table_after(result.stdout)
    sec, tmp, top = table.at("/sys/kernel/security"), table.at("/tmp"), table.at(str(root))
    assert sec is not None and sec.fstype == "securityfs"
    assert tmp is not None and tmp.fstype == "tmpfs" and "nodev" not in tmp.mount_options
    assert top is not None and top.fstype == "tmpfs" and "mode=755" in top.super_options
    for h in host_hierarchies():
        target = f"{root}/unified" if h.unified else f"{root}/{h.directory}"
        m = table.at(target)
        assert m is not None, target
        if h.unified:
            assert m.fstype == "cgroup2"
        else:
            assert m.fstype == "cgroup"
            assert set(h.options.split(",")) <= set(m.super_options.split(","))
    assert all(m.shared for m in table.mounts), "rshared: every mount is shared"


def test_running_twice_stacks_nothing(scratch: Path, standalone_dind: str) -> None:
    """``dind -- dind -- CMD``: the second run finds everything done and mounts nothing.

    Only what dind mounts is compared, in one sandbox: the machine's own mount table
    changes underneath (its Docker adds and removes mounts) and is none of this test's.
    """
    root = scratch / "cgroup"
    once, twice = scratch / "once", scratch / "twice"
    # The inner dind starts after the outer one's tmpfs covers /tmp, so it is the copy
    # under /run (this checkout may be under /tmp).
    inner = f"{standalone_dind} -vv --cgroup-root {root} -- cat /proc/self/mountinfo > {twice}"
    result = sandbox(
        f'"$DIND" --cgroup-root {root} -- sh -c "cat /proc/self/mountinfo > {once} && {inner}"'
    )
    assert result.returncode == 0, result.stderr
    assert [line for line in result.stderr.splitlines() if "warning" in line] == [
        line for line in result.stderr.splitlines() if "/tmp hides" in line
    ]  # the first run's /tmp warning at most: no conflict, nothing failing
    assert "already done: mount -t tmpfs -o mode=1777 tmpfs /tmp" in result.stderr

    def dinds(table: MountTable) -> Counter[str]:
        ours = ("/tmp", "/sys/kernel/security")
        return Counter(
            m.mountpoint
            for m in table.mounts
            if m.mountpoint in ours or m.mountpoint.startswith(f"{root}")
        )

    first, second = (MountTable(mountinfo.parse(f.read_text())) for f in (once, twice))
    assert dinds(first) == dinds(second)
    assert dinds(first)[str(root)] == 1 and dinds(first)["/tmp"] >= 1


def test_dry_run_changes_nothing(scratch: Path) -> None:
    root = scratch / "never"
    result = sandbox(
        f"""cat /proc/self/mountinfo > {scratch}/before
            "$DIND" --dry-run --cgroup-root {root} -- false > {scratch}/plan
            cat /proc/self/mountinfo > {scratch}/after"""
    )
    assert result.returncode == 0, result.stderr
    assert (scratch / "before").read_text() == (scratch / "after").read_text()
    assert not root.exists()
    assert (
        f"mount -t tmpfs -o uid=0,gid=0,mode=0755 cgroup {root}" in (scratch / "plan").read_text()
    )


def test_comounted_and_named_hierarchies_for_real(scratch: Path) -> None:
    """net_cls and net_prio are free on this kernel, so a co-mounted hierarchy can be made."""
    with open("/proc/cgroups") as f:
        free = {line.split()[0] for line in f if line.split()[1:2] == ["0"]}
    if not {"net_cls", "net_prio"} <= free:
        pytest.skip("net_cls/net_prio are bound to a hierarchy on this kernel")
    cgroup_file = scratch / "proc_1_cgroup"
    cgroup_file.write_text("3:name=dindtest:/\n2:net_prio,net_cls:/\n1:devices:/\n0::/\n")
    root = scratch / "cg"
    # A new named hierarchy needs "none"; dind mounts the ones that exist, so make it first.
    # New v1 hierarchies can only be made from the initial cgroup namespace: no --cgroup here.
    premount = (
        f"mkdir -p {scratch}/pre && mount -t cgroup -o none,name=dindtest dindtest {scratch}/pre"
    )
    no_cgroupns = ["unshare", "--mount", "--propagation", "private"]
    result = sandbox(
        f'''{premount}
            "$DIND" --skip securityfs,tmp,rshared --cgroup-root {root} \
               --proc-cgroup {cgroup_file} -- sh -c '
            readlink {root}/net_cls {root}/net_prio; ls {root}/net_cls/ | grep -c net_prio.ifpriomap
            echo "{MARK}"; cat /proc/self/mountinfo' ''',
        prefix=no_cgroupns,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    head = result.stdout.split(MARK)[0].split()
    assert head == ["net_prio,net_cls", "net_prio,net_cls", "1"]
    table = table_after(result.stdout)
    named = table.at(f"{root}/dindtest")
    assert named is not None and "name=dindtest" in named.super_options.split(",")
    co = table.at(f"{root}/net_prio,net_cls")
    assert co is not None and {"net_cls", "net_prio"} <= set(co.super_options.split(","))
    # Run again inside: the links exist, nothing fails, nothing stacks.
    again = sandbox(
        f"""{premount}
            "$DIND" --skip securityfs,tmp,rshared --cgroup-root {root} \
               --proc-cgroup {cgroup_file} -- "$DIND" -vv --skip securityfs,tmp,rshared \
               --cgroup-root {root} --proc-cgroup {cgroup_file} -- true""",
        prefix=no_cgroupns,
    )
    assert again.returncode == 0, again.stderr
    assert (
        f"already done: ln -s net_prio,net_cls {root}/net_cls (link already there)" in again.stderr
    )
    assert "warning" not in again.stderr
    # The kernel destroys the hierarchies made here once their last mount is gone, but
    # lazily: until then /proc/1/cgroup lists them, and the next run would try to mount
    # them (EPERM from a cgroup namespace). Leave the machine as found before going on.
    deadline = time.monotonic() + 10
    while any(x in Path("/proc/1/cgroup").read_text() for x in ("net_cls", "dindtest")):
        assert time.monotonic() < deadline, "the test's hierarchies outlived it"
        time.sleep(0.05)


def test_something_mounted_on_a_target_is_left_alone_with_a_warning(scratch: Path) -> None:
    root = scratch / "cg"
    result = sandbox(
        f'''mkdir -p {root} && mount -t tmpfs pre {root} && mkdir {root}/memory
            mount -t tmpfs squatter {root}/memory
            "$DIND" --skip securityfs,tmp,rshared --cgroup-root {root} -- sh -c '
            echo "{MARK}"; cat /proc/self/mountinfo' '''
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        f"dind: warning: not done: mount -t cgroup -o memory cgroup {root}/memory: "
        "tmpfs already mounted there; not stacking on top"
    ]
    table = table_after(result.stdout)
    assert sum(m.mountpoint == f"{root}/memory" for m in table.mounts) == 1
    assert sum(m.mountpoint == str(root) for m in table.mounts) == 1


def test_symlink_inside_the_root_is_never_followed(scratch: Path) -> None:
    root, elsewhere = scratch / "cg", scratch / "elsewhere"
    result = sandbox(
        f'''mkdir -p {root} {elsewhere} && mount -t tmpfs pre {root}
            ln -s {elsewhere} {root}/memory
            "$DIND" --skip securityfs,tmp,rshared --cgroup-root {root} -- sh -c '
            echo "{MARK}"; cat /proc/self/mountinfo' '''
    )
    assert result.returncode == 0, result.stderr
    assert f"mkdir {root}/memory: exists and is a symlink" in result.stderr
    table = table_after(result.stdout)
    assert table.at(str(elsewhere)) is None and table.at(f"{root}/memory") is None


def test_not_privileged_fails_with_125_and_the_hint(capsh: str) -> None:
    result = sandbox(f"exec {capsh} --drop=cap_sys_admin -- -c 'exec \"$DIND\" -- echo ran'")
    assert result.returncode == 125
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line == (
        "dind: error: mount -t securityfs securityfs /sys/kernel/security: "
        "Operation not permitted [EPERM]: give the container CAP_SYS_ADMIN (docker run "
        "--cap-add SYS_ADMIN; dind --recipe RUNTIME prints all nested Docker needs)"
    )


def test_unprivileged_tmp_first_when_securityfs_is_skipped(capsh: str) -> None:
    result = sandbox(
        f"exec {capsh} --drop=cap_sys_admin -- -c "
        "'exec \"$DIND\" --skip securityfs --log-format json -- echo ran'"
    )
    assert result.returncode == 125
    import json

    records = [json.loads(line) for line in result.stderr.splitlines()]
    record = records[-1]  # a warning about what /tmp holds may come first
    assert [r["level"] for r in records[:-1]] == ["WARNING"] * (len(records) - 1)
    assert record["level"] == "ERROR"
    assert record["errno"] == errno.EPERM and record["step"] == "tmp"
    assert record["message"].endswith("dind --recipe RUNTIME prints all nested Docker needs)")


# --- cgroup v2 nesting -----------------------------------------------------------------


def in_group(group: Path, prefix: list[str]) -> list[str]:
    """A sandbox prefix that first moves itself into ``group``, so the cgroup namespace it
    then unshares has ``group`` as its root."""
    return ["sh", "-c", f'echo $$ > {group}/cgroup.procs && exec "$@"', "sh", *prefix]


def nest_best_effort_then_strict(
    group: Path, scratch: Path, mount_options: str, prefix: list[str]
) -> subprocess.CompletedProcess[str]:
    """In ``group``, with cgroup2 on /sys/fs/cgroup: dind once best effort (its status is
    printed), then once with --strict (the sandbox's own status)."""
    run = f"--skip securityfs,tmp,rshared,cgroup-remount --cgroup-root {scratch}/cg -- true"
    script = (
        f"umount -R /sys/fs/cgroup && mount -t cgroup2 {mount_options} cgroup2 /sys/fs/cgroup"
        f' && "$DIND" {run}; echo "best-effort=$?"; exec "$DIND" --strict {run}'
    )
    return sandbox(script, prefix=in_group(group, prefix), timeout=120)


def test_v2_nesting_for_real(scratch: Path) -> None:
    with hugetlb_group() as group:
        script = (
            f"umount -R /sys/fs/cgroup && mount -t cgroup2 cgroup2 /sys/fs/cgroup && "
            f'exec "$DIND" --skip securityfs,tmp,rshared --cgroup-root {scratch}/cg -- '
            "sh -c 'cat /sys/fs/cgroup/cgroup.subtree_control; "
            "echo procs:$(cat /sys/fs/cgroup/cgroup.procs); "
            "grep -c . /sys/fs/cgroup/init/cgroup.procs; echo $$; cat /proc/self/cgroup'"
        )
        result = sandbox(script, prefix=in_group(group, UNSHARE))
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""
        out = result.stdout.split("\n")
        assert out[0] == "hugetlb"
        assert out[1] == "procs:"  # the root group holds no process any more
        assert int(out[2]) >= 1
        assert "0::/init" in out[4:]
        assert "hugetlb" in (group / "cgroup.subtree_control").read_text().split()
        assert (group / "init" / "hugetlb.2MB.max").exists() or any(
            p.name.startswith("hugetlb.") for p in (group / "init").iterdir()
        )


def test_v2_nesting_reports_pid_zero_outside_the_pid_namespace(scratch: Path) -> None:
    with hugetlb_group() as group:
        pid_ns = ["unshare", "--pid", "--fork", "--mount-proc", *UNSHARE[1:]]
        result = nest_best_effort_then_strict(group, scratch, "", pid_ns)
        assert result.stdout.strip() == "best-effort=0"
        assert result.returncode == 125
        warning, error = result.stderr.splitlines()
        assert warning.startswith(
            "dind: warning: cannot enable hugetlb in "
            "/sys/fs/cgroup/cgroup.subtree_control: still EBUSY after"
        )
        assert "outside this PID namespace (pid 0 in cgroup.procs)" in warning
        assert warning.endswith("(best effort, continuing; --strict makes this fatal)")
        assert error.startswith("dind: error: cannot enable hugetlb")
        assert "hugetlb" not in (group / "cgroup.subtree_control").read_text().split()


def test_hybrid_mode_leaves_the_unified_hierarchy_alone(scratch: Path) -> None:
    """On this hybrid host /sys/fs/cgroup is a tmpfs: no init group may appear anywhere."""
    before = sorted(p.name for p in UNIFIED.iterdir() if p.is_dir())
    result = sandbox(
        f'"$DIND" -vv --skip securityfs,tmp,rshared --cgroup-root {scratch}/cg -- true'
    )
    assert result.returncode == 0, result.stderr
    assert "cgroup-nesting" not in result.stderr and "move processes" not in result.stderr
    assert sorted(p.name for p in UNIFIED.iterdir() if p.is_dir()) == before
    assert stat.S_ISDIR(os.stat("/sys/fs/cgroup").st_mode)
    shutil.rmtree(scratch / "cg", ignore_errors=True)


def test_read_only_cgroup2_is_explained(scratch: Path) -> None:
    with hugetlb_group() as group:
        result = nest_best_effort_then_strict(group, scratch, "-o ro", UNSHARE)
        assert result.stdout.strip() == "best-effort=0"
        assert result.returncode == 125
        warning, error = result.stderr.splitlines()
        expected = (
            "(/sys/fs/cgroup/init): Read-only file system [EROFS]: /sys is read-only: "
            "give the container CAP_SYS_ADMIN (docker run --cap-add SYS_ADMIN; "
            "dind --recipe RUNTIME prints all nested Docker needs)"
        )
        assert warning.startswith("dind: warning: move processes of /sys/fs/cgroup into init/")
        assert expected in warning
        assert error.startswith("dind: error: move processes of /sys/fs/cgroup into init/")
        assert error.endswith(expected)
        assert not (group / "init").exists()


@pytest.mark.parametrize("options", [[], ["--log-format", "json", "-v"], ["--init"]])
def test_dind_imported_from_under_tmp_survives_its_own_tmpfs(
    scratch: Path, tmp_marker: Path, options: list[str]
) -> None:
    """All code is loaded before the first mount: a checkout in /tmp (as CI's clone may be)
    is hidden by the tmpfs dind mounts there, and imports after that would fail."""
    import sysconfig

    package = Path(tempfile.mkdtemp(prefix="dind-pkg-", dir="/tmp"))
    try:
        shutil.copytree(Path(__file__).parent.parent / "dind", package / "dind")
        # -S: no site, so no editable-install finder; the copy comes first on the path.
        path = f"{package}:{sysconfig.get_paths()['purelib']}"
        result = sandbox(
            f'cd / && PYTHONPATH={path} exec {sys.executable} -S -c "$CODE" '
            f"{' '.join(options)} --skip securityfs --cgroup-root {scratch}/cg -- echo ran",
            env={
                "CODE": "import sys, dind.main; print(dind.__file__, file=sys.stderr); "
                "sys.argv[0] = 'dind'; dind.main.main()"
            },
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout == "ran\n"
        assert result.stderr.startswith(f"{package}/dind/__init__.py\n")
        assert "error" not in result.stderr
    finally:
        shutil.rmtree(package)


def test_read_only_cgroups_are_remounted_read_write(scratch: Path) -> None:
    """systemd-nspawn's layout: v1 controllers read-only under /sys/fs/cgroup, which a
    nested runc uses first. dind remounts them read-write, keeping their other flags."""
    targets = ("memory", "pids")
    make_ro = " && ".join(f"mount -o remount,bind,ro /sys/fs/cgroup/{t}" for t in targets)
    run = f"--skip securityfs,tmp,rshared --cgroup-root {scratch}/cg"
    result = sandbox(
        f'''{make_ro}
            "$DIND" -v {run} -- sh -c 'echo "{MARK}"; cat /proc/self/mountinfo' '''
    )
    assert result.returncode == 0, result.stderr
    with open("/proc/self/mountinfo") as f:
        before = mountinfo.MountTable(mountinfo.parse(f.read()))
    table = table_after(result.stdout)
    for t in targets:
        m, was = table.at(f"/sys/fs/cgroup/{t}"), before.at(f"/sys/fs/cgroup/{t}")
        assert m is not None and was is not None
        options = set(m.mount_options.split(","))
        assert "rw" in options and options - {"rw"} == set(was.mount_options.split(",")) - {"rw"}
        kept = [o for o in was.mount_options.split(",") if o in ("nosuid", "nodev", "noexec")]
        flags = ",".join(["remount", "bind", "rw", *kept])
        assert f"mount -o {flags} /sys/fs/cgroup/{t}" in result.stderr
    show = f"""sh -c 'echo "{MARK}"; cat /proc/self/mountinfo'"""
    skipped = sandbox(f'{make_ro} && "$DIND" {run} --skip cgroup-remount -- {show}')
    m = table_after(skipped.stdout).at("/sys/fs/cgroup/memory")
    assert m is not None and "ro" in m.mount_options.split(",")
