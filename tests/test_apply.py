"""apply's failure policy and error messages, driven through a recording kernel."""

from __future__ import annotations

import errno
import subprocess
import sys
from pathlib import Path

import pytest

from dind import mountinfo, proccgroup
from dind.actions import MakeDir, Mount
from dind.apply import apply
from dind.errors import SetupError
from dind.facts import Facts
from dind.log import INFO, Log
from dind.plan import Plan, make_plan
from dind.settings import Settings
from tests.conftest import fixture_text
from tests.fakes import FakeKernel


def container_plan(**overrides: object) -> Plan:
    hierarchies = proccgroup.parse(fixture_text("container-v1-hostns", "proc_1_cgroup"))
    values: dict[str, object] = {
        "hierarchies": hierarchies,
        "own_cgroups": hierarchies,
        "mounts": mountinfo.MountTable(
            mountinfo.parse(fixture_text("container-v1-hostns", "mountinfo"))
        ),
    }
    values.update(overrides)
    return make_plan(Facts(**values), Settings(command=["true"]))  # type: ignore[arg-type]


def mounts_of(kernel: FakeKernel) -> list[str]:
    return [c[1] for c in kernel.calls if c[0] == "mount"]


def test_everything_pending_is_executed_in_plan_order() -> None:
    kernel = FakeKernel()
    apply(container_plan(), kernel, Log())
    assert mounts_of(kernel) == [
        "/sys/kernel/security",
        "/tmp",
        "/cgroup",
        "/cgroup/systemd",
        "/cgroup/pids",
        "/cgroup/blkio",
        "/cgroup/freezer",
        "/cgroup/devices",
        "/cgroup/memory",
        "/cgroup/cpuset",
        "/cgroup/cpuacct",
        "/cgroup/cpu",
        "/cgroup/unified",
        "/",
    ]
    assert ("mount", "/", "", "", str(0x4000 | 1 << 20)) in kernel.calls
    assert ("mount", "/cgroup/systemd", "cgroup", "name=systemd", "0") in kernel.calls
    assert ("mount", "/tmp", "tmpfs", "mode=1777", "0") in kernel.calls  # no MS_NODEV


@pytest.mark.parametrize("code", [errno.EPERM, errno.EACCES])
def test_not_privileged_stops_at_the_first_mount_whatever_its_step(
    code: int, capsys: pytest.CaptureFixture[str]
) -> None:
    kernel = FakeKernel({("mount", "/sys/kernel/security"): code})
    with pytest.raises(SetupError) as err:
        apply(container_plan(), kernel, Log())
    assert mounts_of(kernel) == ["/sys/kernel/security"]
    message = str(err.value)
    assert message.startswith("mount -t securityfs securityfs /sys/kernel/security: ")
    assert "give the container CAP_SYS_ADMIN (docker run --cap-add SYS_ADMIN" in message
    assert err.value.errno == code and err.value.step == "securityfs"
    assert capsys.readouterr().err == ""  # main prints the error, once


def test_later_best_effort_failure_warns_and_goes_on(capsys: pytest.CaptureFixture[str]) -> None:
    kernel = FakeKernel({("mount", "/tmp"): errno.EINVAL})
    apply(container_plan(), kernel, Log())
    assert "/cgroup/unified" in mounts_of(kernel) and mounts_of(kernel)[-1] == "/"
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "dind: warning: mount -t tmpfs -o mode=1777 tmpfs /tmp: Invalid argument [EINVAL]: "
        "the kernel rejected these mount options (best effort, continuing; --strict makes "
        "this fatal)"
    ]


def test_strict_makes_best_effort_failures_fatal() -> None:
    kernel = FakeKernel({("mount", "/"): errno.EPERM})
    with pytest.raises(SetupError, match=r"make-rshared /: Operation not permitted \[EPERM\]"):
        apply(container_plan(), kernel, Log(), strict=True)
    kernel = FakeKernel({("mount", "/"): errno.EPERM})
    apply(container_plan(), kernel, Log(level=50))  # not strict: a warning only


def test_required_step_failure_says_what_stays_applied() -> None:
    kernel = FakeKernel({("mount", "/cgroup/blkio"): errno.EBUSY})
    with pytest.raises(SetupError) as err:
        apply(container_plan(), kernel, Log())
    assert mounts_of(kernel)[-1] == "/cgroup/blkio"
    assert str(err.value) == (
        "mount -t cgroup -o blkio cgroup /cgroup/blkio: Device or resource busy [EBUSY]: "
        "the target is busy (for cgroup v1: that hierarchy exists with other options) "
        "(7 earlier action(s) of cgroup-mounts stay applied)"
    )


def test_read_only_sys_and_unknown_filesystem_have_their_hints() -> None:
    kernel = FakeKernel({("mount", "/tmp"): errno.ENODEV})
    with pytest.raises(SetupError, match="does not support that filesystem type"):
        apply(container_plan(), kernel, Log(), strict=True)
    kernel = FakeKernel({("mkdir", "/cgroup/unified"): errno.EROFS})
    with pytest.raises(SetupError) as err:
        apply(container_plan(), kernel, Log())
    assert str(err.value) == (
        "mkdir /cgroup/unified: Read-only file system [EROFS]: a read-only filesystem: "
        "choose a --cgroup-root on a writable one (e.g. under /run) or --skip cgroup-mounts "
        "(20 earlier action(s) of cgroup-mounts stay applied)"
    )
    kernel = FakeKernel({("mount", "/sys/kernel/security"): errno.EROFS})
    with pytest.raises(
        SetupError, match=r"\[EROFS\]: /sys is read-only: give the container CAP_SYS_ADMIN"
    ):
        apply(container_plan(), kernel, Log(), strict=True)


def test_satisfied_and_conflicting_actions_are_not_executed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    plan = Plan(
        [
            Mount(
                "tmp", "tmpfs", "/tmp", "tmpfs", status="satisfied", note="tmpfs already mounted"
            ),
            Mount(
                "cgroup-mounts",
                "cgroup",
                "/cgroup/cpu",
                "cgroup",
                "cpu",
                status="conflict",
                note="tmpfs already mounted there; not stacking on top",
            ),
        ],
        [("tmp", "a planning warning"), ("rshared", "never shown: no rshared action")],
    )
    kernel = FakeKernel()
    apply(plan, kernel, Log())
    assert kernel.calls == []
    assert capsys.readouterr().err.splitlines() == [
        "dind: warning: a planning warning",
        "dind: warning: not done: mount -t cgroup -o cpu cgroup /cgroup/cpu: "
        "tmpfs already mounted there; not stacking on top",
    ]


def test_a_symlink_in_place_of_a_mount_point_is_refused() -> None:
    kernel = FakeKernel()
    kernel.kinds.update({"/cgroup": "dir", "/cgroup/cpu": "link"})
    plan = Plan([Mount("cgroup-mounts", "cgroup", "/cgroup/cpu", "cgroup", "cpu")], [])
    with pytest.raises(SetupError, match=r"\[ELOOP\]: a symlink is in the way: dind never mounts"):
        apply(plan, kernel, Log())
    assert kernel.mounted == []
    plan = Plan([MakeDir("cgroup-mounts", "/cgroup/cpu")], [])
    with pytest.raises(SetupError, match="/cgroup/cpu is a symlink"):
        apply(plan, kernel, Log())


def test_mkdir_makes_missing_parents() -> None:
    kernel = FakeKernel()
    apply(Plan([MakeDir("cgroup-mounts", "/a/b/c")], []), kernel, Log())
    assert kernel.calls == [("mkdir", "/a"), ("mkdir", "/a/b"), ("mkdir", "/a/b/c")]


def test_verbose_logs_each_action_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    apply(container_plan(), FakeKernel(), Log(INFO, "json"))
    records = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    mount = next(r for r in records if r.get("target") == "/cgroup/cpu" and r["action"] == "mount")
    assert mount["level"] == "INFO" and mount["step"] == "cgroup-mounts"
    assert mount["fstype"] == "cgroup" and mount["options"] == "cpu"
    assert mount["message"] == "mount -t cgroup -o cpu cgroup /cgroup/cpu"
    env = records[0]
    assert env["action"] == "setenv" and env["variable"] == "container"


def test_no_action_imports_anything_once_prepared(tmp_path: Path) -> None:
    """dind's mounts (the tmpfs on /tmp) may cover where its modules live: whatever an
    action's ``execute`` imports must already be loaded by its ``prepare`` (found by CI,
    whose checkout is under /tmp: nesting failed with ModuleNotFoundError)."""
    code = f"""
import sys
from dind.actions import NestCgroup2, MakeDir, Mount
from dind.daemon.actions import LinkTools, MakeCertificates
from tests.fakes import FakeCgroup2, FakeKernel
cases = [
    (NestCgroup2("cgroup-nesting", "/cg", "init", None), FakeCgroup2([1], ["pids"])),
    (MakeCertificates("tls", {str(tmp_path / "certs")!r}, ("DNS:docker",)), FakeKernel()),
    (LinkTools("iptables", "/run/dind/iptables", (("iptables", "/x"),)), FakeKernel()),
    (MakeDir("cgroup-mounts", "/a/b"), FakeKernel()),
    (Mount("tmp", "tmpfs", "/tmp", "tmpfs"), FakeKernel()),
]
for action, kernel in cases:
    action.prepare()
    before = set(sys.modules)
    action.execute(kernel)
    late = sorted(set(sys.modules) - before)
    assert not late, (type(action).__name__, late)

# --with-dockerd pings its daemon after the mounts: a successful ping too.
import http.server, socketserver, threading
from dind.daemon import ready
class Ping(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b"OK")
    def log_message(self, *args):
        pass
class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    def get_request(self):
        request, _ = self.socket.accept()
        return request, ("local", 0)
server = Server({str(tmp_path / "ping.sock")!r}, Ping)
threading.Thread(target=server.serve_forever, daemon=True).start()
ready.preload()
before = set(sys.modules)
target = ready.Endpoint("http://docker", socket={str(tmp_path / "ping.sock")!r})
assert ready.ping(target, 5) is None
late = sorted(set(sys.modules) - before)
assert not late, ("ping", late)
server.shutdown()
print("ok")
"""
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(__file__).parent.parent,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.stdout == "ok\n", done.stderr
