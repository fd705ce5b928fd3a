"""The rootless daemon's root-only actions for real (root): directories, files, the tun
device and a cgroup2 subtree given to the user, each through descriptors, and each
refusing what a user could have planted (a symlink, a hard link, a directory others
may write). And the launch: a child that joins the daemon's cgroup and becomes the
user before its exec.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from dind.errors import SetupError
from dind.launch import Launch
from dind.log import Log
from dind.rootless.actions import DelegateCgroup, GiveDevice, GiveFiles, UserDirs
from dind.syscalls import LinuxKernel
from tests.conftest import IS_ROOT, hugetlb_group

pytestmark = pytest.mark.skipif(not IS_ROOT, reason="needs root (CI runs as root)")

UID = GID = 1000
STEP = "rootless"


@pytest.fixture
def home(scratch: Path) -> Iterator[Path]:
    """A user's home as the image makes it: a directory the user owns."""
    path = scratch / "home"
    path.mkdir()
    os.chown(path, UID, GID)
    yield path


def owner(path: Path) -> tuple[int, int, int]:
    st = os.lstat(path)
    return st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)


def test_user_dirs_made_and_given(home: Path) -> None:
    """Missing directories are made with exactly their mode, existing ones (a volume's
    mount point, root's) are given to the user; parents with uid -1 are left as they are."""
    (home / ".local").mkdir(mode=0o700)  # exists, root's: given, mode kept
    entries = (
        (str(home / ".local"), UID, GID, 0o755),
        (str(home / ".local/share"), UID, GID, 0o755),
        (str(home / ".local/share/docker"), UID, GID, 0o700),
    )
    UserDirs(STEP, entries, as_root=True).execute(LinuxKernel())
    assert owner(home / ".local") == (UID, GID, 0o700)
    assert owner(home / ".local/share") == (UID, GID, 0o755)
    assert owner(home / ".local/share/docker") == (UID, GID, 0o700)
    parent = (str(home / "run"), -1, -1, 0o755)
    UserDirs(STEP, (parent, (str(home / "run/1000"), UID, GID, 0o700)), True).execute(LinuxKernel())
    assert owner(home / "run") == (0, 0, 0o755)
    assert owner(home / "run/1000") == (UID, GID, 0o700)


def test_user_dirs_never_follow_a_planted_symlink(home: Path, scratch: Path) -> None:
    """The user swapped ~/.local for a link to a root directory: dind refuses (ELOOP) and
    the link's target stays root's."""
    target = scratch / "etc-like"
    target.mkdir()
    (home / ".local").symlink_to(target)
    entries = ((str(home / ".local"), UID, GID, 0o755),)
    with pytest.raises(OSError, match="symlink") as err:
        UserDirs(STEP, entries, as_root=True).execute(LinuxKernel())
    assert err.value.errno is not None
    assert owner(target)[:2] == (0, 0)


def test_user_dirs_as_the_user_give_nothing(home: Path) -> None:
    entries = ((str(home / "mine"), UID, GID, 0o700),)
    UserDirs(STEP, entries, as_root=False).execute(LinuxKernel())
    assert owner(home / "mine") == (0, 0, 0o700)  # made by this (root) test: no chown asked


@pytest.fixture
def server(scratch: Path) -> Path:
    path = scratch / "server"
    path.mkdir(mode=0o755)
    for name in ("ca.pem", "cert.pem", "key.pem"):
        (path / name).write_text(name)
    (path / "key.pem").chmod(0o600)
    return path


def test_give_files_gives_the_servers_files(server: Path) -> None:
    names = ("ca.pem", "cert.pem", "key.pem")
    GiveFiles(STEP, str(server), names, UID, GID).execute(LinuxKernel())
    assert [owner(server / n) for n in names] == [
        (UID, GID, 0o644),
        (UID, GID, 0o644),
        (UID, GID, 0o600),
    ]


def test_give_files_refuses_a_directory_others_may_write(server: Path) -> None:
    server.chmod(0o777)
    with pytest.raises(SetupError, match="dind gives no file from a directory others can write"):
        GiveFiles(STEP, str(server), ("key.pem",), UID, GID).execute(LinuxKernel())
    assert owner(server / "key.pem")[:2] == (0, 0)


@pytest.mark.parametrize("planted", ["hardlink", "symlink"])
def test_give_files_refuses_a_planted_link(server: Path, scratch: Path, planted: str) -> None:
    """A hard or symbolic link to another file where the key belongs: that file is not given."""
    secret = scratch / "shadow"
    secret.write_text("secret")
    (server / "key.pem").unlink()
    if planted == "hardlink":
        os.link(secret, server / "key.pem")
    else:
        (server / "key.pem").symlink_to(secret)
    with pytest.raises(OSError, match="hard links" if planted == "hardlink" else "symlink"):
        GiveFiles(STEP, str(server), ("key.pem",), UID, GID).execute(LinuxKernel())
    assert owner(secret)[:2] == (0, 0)


def test_give_device_gives_the_tun_device_only(scratch: Path) -> None:
    tun = scratch / "tun"
    os.mknod(tun, 0o600 | stat.S_IFCHR, os.makedev(10, 200))
    GiveDevice(STEP, str(tun), UID, GID).execute(LinuxKernel())
    assert owner(tun) == (UID, GID, 0o600)
    null = scratch / "null"
    os.mknod(null, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    with pytest.raises(SetupError, match="is not the tun device"):
        GiveDevice(STEP, str(null), UID, GID).execute(LinuxKernel())
    assert owner(null)[:2] == (0, 0)
    os.chown(tun, 0, 0)
    (scratch / "link").symlink_to(tun)
    with pytest.raises(OSError):
        GiveDevice(STEP, str(scratch / "link"), UID, GID).execute(LinuxKernel())
    assert owner(tun)[:2] == (0, 0)


def test_delegate_cgroup_for_real_then_a_launch_joins_it_as_the_user() -> None:
    """A subtree of this machine's cgroup2 (hugetlb only): made, its controllers enabled,
    the directories and the delegation files given to uid 1000. A child launched with it
    joins daemon/ first, then drops to uid 1000 (and its groups) before the exec."""
    from dind.init import spawn

    with hugetlb_group() as group:
        (group / "cgroup.subtree_control").write_text("+hugetlb")
        subtree = group / "dind-rootless"
        action = DelegateCgroup("cgroup-delegate", str(subtree), UID, GID, ("daemon",))
        said = action.execute(LinuxKernel())
        assert said is not None and said.endswith("(controllers: hugetlb)")
        assert (subtree / "cgroup.subtree_control").read_text().split() == ["hugetlb"]
        for path in (subtree, subtree / "daemon"):
            assert owner(path)[:2] == (UID, GID)
            for name in ("cgroup.procs", "cgroup.threads", "cgroup.subtree_control"):
                assert owner(path / name)[:2] == (UID, GID), path / name
        assert owner(subtree / "hugetlb.2MB.max")[:2] == (0, 0)  # the parent's knob stays root's
        assert action.execute(LinuxKernel()) == said  # idempotent: a restart does it again

        launch = Launch(
            user="rootless", uid=UID, gid=GID, groups=(GID, 101), env={},
            cgroup=str(subtree / "daemon"), socket="unix:///run/user/1000/docker.sock",
        )  # fmt: skip
        read, write = os.pipe()
        pid = spawn(
            ["sh", "-c", "id -u; id -G; cat /proc/self/cgroup"], set(), Log(),
            output=write, launch=launch,
        )  # fmt: skip
        os.close(write)
        _, status = os.waitpid(pid, 0)
        out = os.read(read, 65536).decode()
        os.close(read)
        assert os.waitstatus_to_exitcode(status) == 0, out
        uid, gids, *cgroups = out.splitlines()
        assert uid == str(UID)
        assert gids.split() == [str(GID), "101"]
        own = next(line for line in cgroups if line.startswith("0::"))
        assert own.endswith("/dind-rootless/daemon"), own


def test_a_launch_that_cannot_join_its_cgroup_is_125_and_nothing_runs(scratch: Path) -> None:
    from dind.errors import CommandError
    from dind.init import spawn

    launch = Launch(
        user="rootless", uid=UID, gid=GID, groups=(GID,), env={},
        cgroup=str(scratch / "no-such-group"), socket="unix:///x",
    )  # fmt: skip
    marker = scratch / "ran"
    with pytest.raises(CommandError) as err:
        spawn(["touch", str(marker)], set(), Log(), launch=launch)
    assert err.value.status == 125
    assert str(err.value).startswith("touch: cannot start as rootless: No such file or directory")
    assert not marker.exists()


def test_the_proxy_wrapper_restores_the_state_directory(scratch: Path) -> None:
    """dind-rootlesskit-docker-proxy becomes rootlesskit-docker-proxy with
    ROOTLESSKIT_STATE_DIR set from DIND_ROOTLESSKIT_STATE_DIR; without it, it reports on
    descriptor 3 as the real helper would ("1\\n<error>")."""
    bindir = scratch / "bin"
    bindir.mkdir()
    fake = bindir / "rootlesskit-docker-proxy"
    fake.write_text('#!/bin/sh\necho "state=$ROOTLESSKIT_STATE_DIR args=$*"\n')
    fake.chmod(0o755)
    env = {"PATH": f"{bindir}:/usr/bin:/bin", "DIND_ROOTLESSKIT_STATE_DIR": "/run/user/1000/kit"}
    wrapper = str(Path(sys.executable).parent / "dind-rootlesskit-docker-proxy")  # the venv's
    argv = [wrapper, "-proto", "tcp", "-host-port", "8080"]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    assert done.stdout == "state=/run/user/1000/kit args=-proto tcp -host-port 8080\n"
    read, write = os.pipe()
    env.pop("DIND_ROOTLESSKIT_STATE_DIR")
    done = subprocess.run(
        [wrapper, "-proto", "tcp"], env=env, capture_output=True, text=True, close_fds=False,
        preexec_fn=lambda: os.dup2(write, 3),  # dockerd's "signal-parent" descriptor
        check=False,
    )  # fmt: skip
    os.close(write)
    said = os.read(read, 4096).decode()
    os.close(read)
    assert done.returncode == 1
    assert said.startswith("1\nDIND_ROOTLESSKIT_STATE_DIR is not set"), said


def test_exec_without_init_becomes_the_user_too() -> None:
    """DIND_INIT=0: dind execs the daemon itself, after the same drop to the user."""
    script = (
        "from dind.command import exec_command\n"
        "from dind.launch import Launch\n"
        "exec_command(['sh', '-c', 'id -u; id -g; echo $HOME'], None,"
        " {'PATH': '/usr/bin:/bin', 'HOME': '/home/rootless'},"
        " Launch(user='rootless', uid=1000, gid=1000, groups=(1000,), env={}, cgroup=None,"
        " socket='unix:///x'))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1000", "1000", "/home/rootless"]
